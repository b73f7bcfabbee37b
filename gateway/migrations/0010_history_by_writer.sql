-- The validation history rows of a message are written by whoever stores
-- it, in the same transaction (as before: committed means indexed).
--
-- The MLLP pipeline's validator has already worked out the rows (patient
-- key, analysis, time, value in the canonical unit) when it judged the
-- message, so MessageWriter inserts them directly and marks its transaction
-- with labgate.history_by_writer; the row trigger then does not fire.
-- Reading them back out of the stored jsonb cost PostgreSQL ~0.2 CPU-s per
-- 1,000 messages, about 40 % of storing them (bench/results). Records
-- without precomputed rows are indexed from their bundle by
-- validation_index_messages, and every other writer (FHIR API, replay)
-- still gets the trigger.
DROP TRIGGER message_validation_index ON message;
CREATE TRIGGER message_validation_index
    AFTER INSERT ON message
    FOR EACH ROW
    WHEN (current_setting('labgate.history_by_writer', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION validation_index_message();

-- The trigger's work for a set of stored messages (same conditions, same
-- never-fail rule: a bundle the index cannot read only loses its history).
CREATE FUNCTION validation_index_messages(ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT id, bundle FROM message
              WHERE id = ANY(ids) AND status <> 'rejected' AND bundle IS NOT NULL
                AND duplicate_of IS NULL
              ORDER BY id
    LOOP
        BEGIN
            PERFORM validation_index_bundle(m.id, m.bundle);
        EXCEPTION WHEN others THEN
            RAISE WARNING 'validation history: message % not indexed: %', m.id, SQLERRM;
        END;
    END LOOP;
END $$;
