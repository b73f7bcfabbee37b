-- Validation history shared by every gateway on this database.
--
-- DELTA-CHECK and ORDER-DUPLICATE read a history held in each gateway's
-- memory (docs/rules.md). A gateway used to learn only the messages it
-- stored itself, plus what it read at start-up, so with two gateways behind
-- a load balancer a patient's previous potassium stored by one was unknown
-- to the other until its next restart, and a mix-up went unflagged.
--
-- Now every statement that adds history rows (the group commit's
-- labgate_write_followups, the FHIR API's row trigger, a replay) also
-- notifies 'labgate_history' with the rows themselves, as JSON, at commit:
--   {"i": <instance of the writing gateway>, "r": [[patient_key, code,
--    observed_at µs since 1970, value, unit], ...]}   (validation_result)
--   {"i": ..., "o": [[patient_key, code, ordered_at µs], ...]}  (validation_order)
-- in chunks of 50 rows (a payload must stay under 8,000 bytes). "i" is the
-- session setting labgate.instance, which a gateway's pool sets on every
-- connection, so a gateway can skip what it already remembered; a row
-- written from elsewhere (psql, an import) carries "" and every gateway
-- learns it. Patient keys are the SHA-256 already stored in these tables.
CREATE FUNCTION labgate_history_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    inst text := COALESCE(current_setting('labgate.instance', true), '');
BEGIN
    IF TG_TABLE_NAME = 'validation_result' THEN
        PERFORM pg_notify('labgate_history', json_build_object('i', inst, 'r', json_agg(
                    json_build_array(patient_key, code,
                                     (extract(epoch FROM observed_at) * 1000000)::bigint,
                                     value, unit)))::text)
        FROM (SELECT *, (row_number() OVER () - 1) / 50 AS chunk FROM new_rows) AS r
        WHERE value NOT IN ('NaN', 'Infinity', '-Infinity')   -- not representable in JSON
        GROUP BY chunk;
    ELSE
        PERFORM pg_notify('labgate_history', json_build_object('i', inst, 'o', json_agg(
                    json_build_array(patient_key, code,
                                     (extract(epoch FROM ordered_at) * 1000000)::bigint)))::text)
        FROM (SELECT *, (row_number() OVER () - 1) / 50 AS chunk FROM new_rows) AS o
        GROUP BY chunk;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER validation_result_feed AFTER INSERT ON validation_result
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION labgate_history_notify();

CREATE TRIGGER validation_order_feed AFTER INSERT ON validation_order
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION labgate_history_notify();
