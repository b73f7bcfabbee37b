-- Append-only audit trail: who did what to which resource (and which
-- patient, searchable by the auditor but never logged), when, from where,
-- with what outcome. A trigger refuses UPDATE and DELETE for every role.

CREATE TABLE audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor_kind      text NOT NULL,            -- system | user | gateway
    actor           text NOT NULL,
    action          text NOT NULL,            -- e.g. results.pull, message.replay
    resource_type   text,
    resource_id     text,
    patient         text,                     -- person number; never logged
    peer            text,
    outcome         text NOT NULL,            -- success | denied | error
    detail          text
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
CREATE INDEX audit_log_patient_idx ON audit_log (patient) WHERE patient IS NOT NULL;

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
