-- validation_index_messages looked its messages up with id = ANY(ids) inside
-- PL/pgSQL, whose cached generic plan cannot see how few ids there are: it
-- scanned the message table on every call (PostgreSQL CPU per stored message
-- grew with the table: 3.6 -> 6.0 CPU-ms at one sender, bench/results).
-- Joining the ids as a set makes it one primary-key probe per id.
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
