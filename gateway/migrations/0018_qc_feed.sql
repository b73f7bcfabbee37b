-- QC state shared by every gateway on this database (after 0017).
--
-- QC-LOCKOUT reads each gateway's in-memory QC state (gateway/instruments/
-- registry.py), loaded at start-up and updated after each QC commit in the
-- gateway that stored it. An instrument whose QC failed through one gateway
-- and which then reconnected to another (a load balancer, a restart of the
-- first) was judged there by the last QC that gateway knew: patient results
-- from a locked instrument went through.
--
-- Every statement that stores judged QC runs now notifies 'labgate_history'
-- too, at commit, in chunks of 50 runs:
--   {"i": <instance>, "q": [[instrument, analysis, passed, performed_at µs], ...]}
-- Runs that were not judged (no target) or have no analysis do not change
-- the state and are left out, as at start-up.
CREATE FUNCTION labgate_qc_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('labgate_history', json_build_object(
                'i', COALESCE(current_setting('labgate.instance', true), ''),
                'q', json_agg(json_build_array(instrument, analysis, passed,
                              (extract(epoch FROM performed_at) * 1000000)::bigint)))::text)
    FROM (SELECT *, (row_number() OVER () - 1) / 50 AS chunk FROM new_rows
          WHERE passed IS NOT NULL AND analysis IS NOT NULL) AS q
    GROUP BY chunk;
    RETURN NULL;
END $$;

CREATE TRIGGER qc_result_feed AFTER INSERT ON qc_result
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION labgate_qc_notify();
