-- The administrator's console: user accounts and sessions, search keys on
-- message (filled by a trigger from the canonical bundle, so they survive
-- retention pruning of the content), critical-result acknowledgements,
-- admin-action bookkeeping, alert de-duplication, and the indexes that keep
-- the console fast with millions of stored messages.

CREATE TABLE console_user (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    password_hash   text NOT NULL,            -- argon2id (PHC string)
    roles           text[] NOT NULL,
    failed_logins   integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz
);

CREATE TABLE console_session (
    token_sha256    bytea PRIMARY KEY,        -- only the hash of the cookie value is stored
    user_id         bigint NOT NULL REFERENCES console_user(id) ON DELETE CASCADE,
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    peer            text
);
CREATE INDEX console_session_expires_idx ON console_session (expires_at);

ALTER TABLE message
    ADD COLUMN patient          text,        -- first Patient identifier (national id); never logged
    ADD COLUMN order_number     text,        -- first ServiceRequest identifier
    ADD COLUMN specimen_number  text,        -- first Specimen identifier
    ADD COLUMN critical         boolean NOT NULL DEFAULT false,  -- an Observation tagged notification#phone
    ADD COLUMN discarded_at     timestamptz,
    ADD COLUMN discard_reason   text,
    ADD COLUMN replays          integer NOT NULL DEFAULT 0,
    ADD COLUMN pruned_at        timestamptz; -- raw and bundle removed by retention

CREATE FUNCTION message_console_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.bundle IS NOT NULL THEN
        NEW.patient := jsonb_path_query_first(NEW.bundle,
            '$.entry[*].resource ? (@.resourceType == "Patient").identifier[0].value') #>> '{}';
        NEW.order_number := jsonb_path_query_first(NEW.bundle,
            '$.entry[*].resource ? (@.resourceType == "ServiceRequest").identifier[0].value') #>> '{}';
        NEW.specimen_number := jsonb_path_query_first(NEW.bundle,
            '$.entry[*].resource ? (@.resourceType == "Specimen").identifier[0].value') #>> '{}';
        NEW.critical := jsonb_path_exists(NEW.bundle,
            '$.entry[*].resource ? (@.resourceType == "Observation").meta.tag[*] ? (@.system == "urn:labgate:notification" && @.code == "phone")');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER message_console_keys BEFORE INSERT OR UPDATE OF bundle ON message
    FOR EACH ROW EXECUTE FUNCTION message_console_keys();

CREATE INDEX message_control_id_idx ON message (control_id);
-- the overview's "received in the last 24 hours" per source and status, index-only
CREATE INDEX message_received_cover_idx ON message (received_at) INCLUDE (source, status);
CREATE INDEX message_source_id_idx ON message (source, id DESC);
CREATE INDEX message_type_id_idx ON message (message_type, id DESC);
CREATE INDEX message_patient_idx ON message (patient) WHERE patient IS NOT NULL;
CREATE INDEX message_order_idx ON message (order_number) WHERE order_number IS NOT NULL;
CREATE INDEX message_specimen_idx ON message (specimen_number) WHERE specimen_number IS NOT NULL;
CREATE INDEX message_critical_idx ON message (id DESC) WHERE critical;
CREATE INDEX message_unpruned_idx ON message (received_at, id) WHERE pruned_at IS NULL;
CREATE INDEX outbox_dead_idx ON outbox (destination, id) WHERE state = 'dead';
CREATE INDEX outbox_waiting_idx ON outbox (destination, created_at) WHERE state IN ('pending', 'held');
CREATE INDEX outbox_destination_id_idx ON outbox (destination, message_id);
CREATE INDEX delivery_attempt_at_idx ON delivery_attempt (attempted_at);

-- "Phoned to …, at …": a person acknowledged a critical result.
CREATE TABLE critical_ack (
    message_id      bigint PRIMARY KEY REFERENCES message(id),
    acknowledged_by text NOT NULL,
    phoned_to       text NOT NULL,
    phoned_at       timestamptz NOT NULL,
    note            text,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per alert condition while it lasts, so the webhook fires once.
CREATE TABLE alert_state (
    key             text PRIMARY KEY,
    raised_at       timestamptz NOT NULL DEFAULT now(),
    detail          text
);
