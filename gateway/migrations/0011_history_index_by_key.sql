-- MessageWriter called validation_index_messages on every group commit,
-- mostly with no ids, and PostgreSQL's CPU per stored message rose from 3.6
-- to 6.0 ms at one sender (0.9 -> 1.75 per 1,000 at 32; bench/results).
-- The writer now calls it only with ids; here the ids are joined as a set
-- (one primary-key probe each) instead of id = ANY(ids) inside PL/pgSQL,
-- whose cached generic plan cannot see how few there are. Which of the two
-- cost the time was not isolated: a seq_scan counter test on a 20,000-row
-- table did not show a scan; the benchmark shows the cost gone.
CREATE OR REPLACE FUNCTION validation_index_messages(ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT msg.id, msg.bundle
               FROM unnest(ids) AS k(id) JOIN message msg ON msg.id = k.id
              WHERE msg.status <> 'rejected' AND msg.bundle IS NOT NULL
                AND msg.duplicate_of IS NULL
              ORDER BY msg.id
    LOOP
        BEGIN
            PERFORM validation_index_bundle(m.id, m.bundle);
        EXCEPTION WHEN others THEN
            RAISE WARNING 'validation history: message % not indexed: %', m.id, SQLERRM;
        END;
    END LOOP;
END $$;
