-- [security] The audit trail cannot be altered by the gateway's own role.
--
-- 0002's triggers refuse UPDATE, DELETE and TRUNCATE on audit_log for every
-- role, but the table's owner could still drop the triggers. Production
-- therefore runs the gateway as a member of ``labgate_app`` (not the owner):
-- it may read and write the operational tables, but on audit_log only SELECT
-- and INSERT, and as a non-owner it can neither disable the triggers nor drop
-- or alter the table. Migrations run as the owner (docs/security.md).
--
-- If the migrating role may create roles, labgate_app is created here; if a
-- DBA created it beforehand, it is granted here; otherwise a NOTICE says so
-- and nothing else changes.

REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;

DO $$
DECLARE
    schema_name text := current_schema();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'labgate_app') THEN
        IF NOT (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            RAISE NOTICE 'labgate: % may not create roles; create role labgate_app and re-grant (docs/security.md)',
                current_user;
            RETURN;
        END IF;
        CREATE ROLE labgate_app NOLOGIN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO labgate_app', schema_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO labgate_app',
                   schema_name);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO labgate_app', schema_name);
    -- Tables and sequences that later migrations create (as this role) get the same grants.
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES'
                   ' TO labgate_app', schema_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT, UPDATE ON SEQUENCES'
                   ' TO labgate_app', schema_name);
    REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_log FROM labgate_app;
    GRANT SELECT, INSERT ON audit_log TO labgate_app;
END $$;

-- Receipts and deliveries are audited in the database, in the transaction
-- that stores them, whatever edge they came through (MLLP, ASTM, POCT1-A):
-- one audit row per patient in the canonical bundle (or one without a
-- patient). The FHIR API audits its own writes in code, so 'fhir' rows are
-- skipped here. jsonb_path_query in lax mode never raises on odd bundles,
-- so auditing cannot make a receipt fail.

CREATE FUNCTION audit_patients(bundle jsonb) RETURNS SETOF text LANGUAGE sql IMMUTABLE AS $$
    SELECT p.value FROM (
        SELECT DISTINCT v #>> '{}' AS value
        FROM jsonb_path_query(COALESCE(bundle, 'null'::jsonb),
             'lax $.entry[*].resource ? (@.resourceType == "Patient").identifier[*].value') AS v
        WHERE jsonb_typeof(v) = 'string') p
    RIGHT JOIN (SELECT 1) AS one ON true
$$;

-- Statement-level triggers with transition tables: one set-based INSERT per
-- group commit, not one per row (the per-row version cost ~40 % of the
-- message insert rate; see docs/security.md).
CREATE FUNCTION audit_messages_received() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (actor_kind, actor, action, resource_type, resource_id, patient, peer, outcome, detail)
    SELECT 'system', n.source, 'message.receive', 'message', n.id::text, p, n.peer,
           CASE n.status WHEN 'rejected' THEN 'error' ELSE 'success' END,
           concat_ws(' ', n.protocol, n.message_type, n.status)
    FROM received AS n, audit_patients(n.bundle) AS p
    WHERE n.protocol <> 'fhir'
    ORDER BY n.id;
    RETURN NULL;
END $$;
CREATE TRIGGER message_audit_received AFTER INSERT ON message
    REFERENCING NEW TABLE AS received
    FOR EACH STATEMENT EXECUTE FUNCTION audit_messages_received();

CREATE FUNCTION audit_delivered() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (actor_kind, actor, action, resource_type, resource_id, patient, peer, outcome, detail)
    SELECT 'gateway', 'labgate', 'results.deliver', 'message', o.message_id::text, p, NULL, 'success',
           'to ' || o.destination
    FROM attempts AS a JOIN outbox o ON o.id = a.outbox_id JOIN message m ON m.id = o.message_id,
         audit_patients(m.bundle) AS p
    WHERE a.outcome = 'delivered'
    ORDER BY a.id;
    RETURN NULL;
END $$;
CREATE TRIGGER delivery_attempt_audit_delivered AFTER INSERT ON delivery_attempt
    REFERENCING NEW TABLE AS attempts
    FOR EACH STATEMENT EXECUTE FUNCTION audit_delivered();
