-- FHIR orders (issue 4): patients, service requests, specimens, claims
-- (Task), and results linked to their orders. Each table keeps the resource
-- as jsonb plus the columns the searches and access checks need.

-- One Patient per ordering system and person: what one EHR sent about a
-- person (name, address) is never shown to another EHR.
CREATE TABLE fhir_patient (
    id              uuid PRIMARY KEY,
    owner_system    text NOT NULL,            -- the EHR whose orders brought it
    ident_system    text NOT NULL,
    ident_value     text NOT NULL,            -- person number; never logged
    resource        jsonb NOT NULL,
    last_updated    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_system, ident_system, ident_value)
);

CREATE TABLE fhir_service_request (
    id              uuid PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,   -- stable paging order
    requester_system text NOT NULL,           -- the EHR (system name) that ordered
    requisition_key text NOT NULL,            -- "system|value" of the requester-defined identifier
    ident_values    text[] NOT NULL DEFAULT '{}',  -- every identifier value (placer numbers ...)
    patient_id      uuid REFERENCES fhir_patient(id),
    patient_ident   text,                     -- subject identifier value, for subject searches
    routing         text NOT NULL CHECK (routing IN ('poc', 'referred')),
    performer       text,                     -- laboratory system name for referred orders
    status          text NOT NULL,
    code            text,                     -- first coding's code (NLK/LOINC)
    message_id      bigint REFERENCES message(id),
    resource        jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_updated    timestamptz NOT NULL DEFAULT now(),
    -- conditional create: a retried POST never makes a second order
    UNIQUE (requester_system, requisition_key)
);
CREATE INDEX fhir_sr_performer_idx ON fhir_service_request (performer, status, seq) WHERE routing = 'referred';
CREATE INDEX fhir_sr_requester_idx ON fhir_service_request (requester_system, last_updated);
CREATE INDEX fhir_sr_ident_idx ON fhir_service_request USING gin (ident_values);
CREATE INDEX fhir_sr_patient_idx ON fhir_service_request (patient_ident);

CREATE TABLE fhir_specimen (
    id              uuid PRIMARY KEY,
    ident_values    text[] NOT NULL DEFAULT '{}',
    service_request_ids uuid[] NOT NULL DEFAULT '{}',
    requester_system text NOT NULL,
    performers      text[] NOT NULL DEFAULT '{}',  -- laboratories its orders are referred to
    site            text,                     -- where it was collected
    collected_at    timestamptz,
    received_at     timestamptz,
    on_hold         boolean NOT NULL DEFAULT false,  -- failed the stability check at receipt
    resource        jsonb NOT NULL,
    last_updated    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fhir_specimen_site_idx ON fhir_specimen (site, collected_at) WHERE received_at IS NULL;
CREATE INDEX fhir_specimen_ident_idx ON fhir_specimen USING gin (ident_values);
CREATE INDEX fhir_specimen_sr_idx ON fhir_specimen USING gin (service_request_ids);

-- A claim: one Task per referral. The unique index is what guarantees that
-- a referral (and its specimen) is handed to one laboratory client only.
CREATE TABLE fhir_task (
    id              uuid PRIMARY KEY,
    focus           uuid NOT NULL REFERENCES fhir_service_request(id),
    owner           text NOT NULL,            -- laboratory system name
    status          text NOT NULL,
    resource        jsonb NOT NULL,
    last_updated    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX fhir_task_focus_key ON fhir_task (focus);

-- Results (DiagnosticReport, Observation) as linked by the orders handler.
CREATE TABLE fhir_result (
    id              uuid PRIMARY KEY,
    resource_type   text NOT NULL CHECK (resource_type IN ('DiagnosticReport', 'Observation')),
    message_id      bigint NOT NULL REFERENCES message(id),
    service_request_ids uuid[] NOT NULL DEFAULT '{}',
    requester_system text,                    -- NULL: unsolicited (no order found)
    performer       text,                     -- the system that sent the result
    patient_ident   text,
    resource        jsonb NOT NULL,
    last_updated    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fhir_result_requester_idx ON fhir_result (requester_system, resource_type, last_updated);
CREATE INDEX fhir_result_patient_idx ON fhir_result (patient_ident);
CREATE INDEX fhir_result_sr_idx ON fhir_result USING gin (service_request_ids);

-- One row per result message the orders handler processed (idempotent under
-- at-least-once delivery). unsolicited = no order matched; the console lists them.
CREATE TABLE order_result_link (
    message_id      bigint PRIMARY KEY REFERENCES message(id),
    service_request_ids uuid[] NOT NULL DEFAULT '{}',
    unsolicited     boolean NOT NULL,
    linked_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_result_unsolicited_idx ON order_result_link (linked_at DESC) WHERE unsolicited;
