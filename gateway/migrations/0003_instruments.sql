-- Point-of-care instruments (docs/instruments.md): the registry an
-- administrator declares in [[instruments]] / [[operators]] (synced at
-- start-up), QC runs per instrument and analysis, and the lock state the
-- QC-LOCKOUT rule reads through an in-process cache.

CREATE TABLE instrument (
    serial          text PRIMARY KEY,          -- DEV.serial_id / H-5.3 / R-14.2
    model           text NOT NULL DEFAULT '',
    site            text NOT NULL DEFAULT '',
    protocol        text NOT NULL CHECK (protocol IN ('astm', 'poct1a')),
    system          text NOT NULL,             -- the system identity allowed to post for it
    code_map        text NOT NULL,             -- name of a mappings/codemaps CSV
    analyses        text[] NOT NULL DEFAULT '{}',   -- NLK codes it may report
    qc_interval_minutes jsonb NOT NULL DEFAULT '{}'::jsonb, -- {analysis: minutes} overrides
    enabled         boolean NOT NULL DEFAULT true,
    last_seen       timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE instrument_operator (
    operator_id     text PRIMARY KEY,
    name            text NOT NULL DEFAULT '',
    hpr             text,                      -- HPR number, if any
    analyses        text[] NOT NULL DEFAULT '{}',   -- NLK codes, or '*'
    sites           text[] NOT NULL DEFAULT '{}',   -- empty = every site
    permission_level text NOT NULL DEFAULT '1',
    expires         date,                      -- certificate expiry; NULL = no expiry
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per QC result (a QC run of several analyses gives several rows).
CREATE TABLE qc_result (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id      bigint REFERENCES message(id),
    seq             integer NOT NULL DEFAULT 1,   -- position within the message
    instrument      text NOT NULL,
    analysis        text,                      -- NLK code (NULL: not in the code map)
    material        text,
    lot             text,
    level           text,
    value           double precision,
    value_text      text,
    unit            text,
    target_low      double precision,
    target_high     double precision,
    passed          boolean,                   -- NULL: no target known, not judged
    operator        text,
    performed_at    timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX qc_result_message_seq_key ON qc_result (message_id, seq);
CREATE INDEX qc_result_instrument_idx ON qc_result (instrument, analysis, performed_at DESC);
