-- Core tables: every message received (accepted or rejected), the outbox of
-- deliveries, every delivery attempt, and API tokens (hashes only).

CREATE TABLE message (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    source          text NOT NULL,            -- system name from configuration
    protocol        text NOT NULL,            -- mllp | astm | poct1a | fhir
    peer            text,                     -- address the message came from
    message_type    text,                     -- e.g. ORU^R01
    control_id      text,                     -- MSH-10 (or protocol equivalent)
    content_sha256  bytea NOT NULL,
    raw             bytea,                    -- NULL once pruned by retention
    bundle          jsonb,                    -- canonical FHIR R4 transaction Bundle
    verdict         jsonb NOT NULL DEFAULT '[]'::jsonb,  -- list of issues
    status          text NOT NULL CHECK (status IN ('accepted', 'rejected', 'unrouted')),
    ack             bytea,                    -- the acknowledgement sent (replayed to duplicates)
    duplicate_of    bigint REFERENCES message(id),
    duplicates      integer NOT NULL DEFAULT 0  -- identical copies received and acknowledged again
);
-- One original per source and control id; a conflicting copy is stored as a
-- rejected row pointing at the original (duplicate_of), never dropped.
CREATE UNIQUE INDEX message_source_control_id_key
    ON message (source, control_id) WHERE duplicate_of IS NULL;
CREATE INDEX message_received_at_idx ON message (received_at DESC, id DESC);
CREATE INDEX message_status_idx ON message (status, id DESC);

CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id      bigint NOT NULL REFERENCES message(id),
    destination     text NOT NULL,
    state           text NOT NULL CHECK (state IN ('pending', 'delivered', 'dead', 'held', 'taken', 'discarded')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz
);
CREATE INDEX outbox_due_idx ON outbox (destination, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX outbox_held_idx ON outbox (destination, id) WHERE state = 'held';
CREATE INDEX outbox_message_idx ON outbox (message_id);

CREATE TABLE delivery_attempt (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id       bigint NOT NULL REFERENCES outbox(id),
    attempted_at    timestamptz NOT NULL DEFAULT now(),
    outcome         text NOT NULL,            -- delivered | rejected | error | timeout | dead
    detail          text,
    duration_ms     integer
);
CREATE INDEX delivery_attempt_outbox_idx ON delivery_attempt (outbox_id);

CREATE TABLE api_token (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system          text NOT NULL,
    token_sha256    bytea NOT NULL UNIQUE,
    label           text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz
);
