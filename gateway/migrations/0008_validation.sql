-- Clinical validation history (issue 5): the results and orders of accepted
-- messages, for DELTA-CHECK and ORDER-DUPLICATE. Filled by a trigger on
-- `message`, so a row exists exactly when an accepted message is committed
-- (same transaction; nothing to lose between validation and commit, no
-- pipeline hook needed). The gateway reads the recent rows into memory at
-- start-up (gateway/validator.py); validation itself never queries.
--
-- Patients are keyed by hex SHA-256 of the person number (the first person
-- identifier of the first Patient, else the first logical subject identifier),
-- the same as gateway.validation.history.patient_key; no number is stored here.

CREATE TABLE validation_result (
    patient_key     text NOT NULL,
    code            text NOT NULL,            -- NLK or LOINC code as sent (system normalised)
    observed_at     timestamptz NOT NULL,     -- Observation.effective (collection)
    value           double precision NOT NULL,-- after the validator's unit conversion
    unit            text NOT NULL DEFAULT '',
    message_id      bigint NOT NULL
);
CREATE INDEX validation_result_time_idx ON validation_result (observed_at);

CREATE TABLE validation_order (
    patient_key     text NOT NULL,
    code            text NOT NULL,
    ordered_at      timestamptz NOT NULL,     -- ServiceRequest.authoredOn, else commit time
    message_id      bigint NOT NULL
);
CREATE INDEX validation_order_time_idx ON validation_order (ordered_at);

-- A FHIR dateTime with time of day as timestamptz; no offset = Europe/Oslo.
-- NULL for anything else (never raises).
CREATE FUNCTION labgate_fhir_time(t text) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF t IS NULL OR t !~ '^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)?$' THEN
        RETURN NULL;
    END IF;
    IF t ~ '(Z|[+-]\d\d:\d\d)$' THEN
        RETURN t::timestamptz;
    END IF;
    RETURN t::timestamp AT TIME ZONE 'Europe/Oslo';
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

CREATE FUNCTION labgate_jsonb_list(j jsonb) RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT e FROM jsonb_array_elements(CASE WHEN jsonb_typeof(j) = 'array' THEN j ELSE '[]' END) e
$$;

CREATE FUNCTION validation_index_bundle(msg_id bigint, b jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    person_systems text[] := ARRAY[
        'urn:oid:2.16.578.1.12.4.1.4.1', 'http://hl7.no/fhir/NamingSystem/FNR',
        'urn:oid:2.16.578.1.12.4.1.4.2', 'http://hl7.no/fhir/NamingSystem/DNR',
        'urn:oid:2.16.578.1.12.4.1.4.3', 'http://hl7.no/fhir/NamingSystem/FHNR', 'HNR'];
    code_systems text[] := ARRAY[
        'urn:oid:2.16.578.1.12.4.1.1.7280',
        'http://ehelse.no/fhir/CodeSystem/no-kodeverk-7280-nlk',
        'http://helsedir.no/fhir/CodeSystem/no-kodeverk-7280-nlk',
        'http://ehelse.no/fhir/CodeSystem/7280', 'http://helsedir.no/fhir/CodeSystem/7280',
        'http://loinc.org'];
    pnr text;
    pkey text;
BEGIN
    SELECT i->>'value' INTO pnr
      FROM labgate_jsonb_list(b->'entry') WITH ORDINALITY AS e(entry, n),
           labgate_jsonb_list(e.entry->'resource'->'identifier') WITH ORDINALITY AS x(i, m)
     WHERE e.entry->'resource'->>'resourceType' = 'Patient'
       AND i->>'system' = ANY(person_systems) AND jsonb_typeof(i->'value') = 'string'
     ORDER BY e.n, x.m LIMIT 1;
    IF pnr IS NULL THEN
        SELECT e.entry->'resource'->'subject'->'identifier'->>'value' INTO pnr
          FROM labgate_jsonb_list(b->'entry') WITH ORDINALITY AS e(entry, n)
         WHERE e.entry->'resource'->'subject'->'identifier'->>'system' = ANY(person_systems)
           AND jsonb_typeof(e.entry->'resource'->'subject'->'identifier'->'value') = 'string'
         ORDER BY e.n LIMIT 1;
    END IF;
    IF pnr IS NULL THEN
        RETURN;
    END IF;
    pkey := encode(sha256(convert_to(btrim(pnr), 'UTF8')), 'hex');

    INSERT INTO validation_result (patient_key, code, observed_at, value, unit, message_id)
    SELECT pkey, c->>'code',
           labgate_fhir_time(coalesce(r->>'effectiveDateTime', r->'effectivePeriod'->>'start')),
           (r->'valueQuantity'->>'value')::double precision,
           coalesce(r->'valueQuantity'->>'code', r->'valueQuantity'->>'unit', ''), msg_id
      FROM labgate_jsonb_list(b->'entry') AS e(entry),
           LATERAL (SELECT e.entry->'resource' AS r) res,
           labgate_jsonb_list(r->'code'->'coding') AS c
     WHERE r->>'resourceType' = 'Observation'
       AND jsonb_typeof(r->'valueQuantity'->'value') = 'number'
       AND NOT (r->'valueQuantity' ? 'comparator')
       AND c->>'system' = ANY(code_systems) AND jsonb_typeof(c->'code') = 'string'
       AND labgate_fhir_time(coalesce(r->>'effectiveDateTime', r->'effectivePeriod'->>'start'))
           IS NOT NULL;

    -- Orders: ServiceRequests of bundles without Observations (result
    -- messages carry ServiceRequests too; those are not new orders).
    IF NOT EXISTS (SELECT 1 FROM labgate_jsonb_list(b->'entry') e
                    WHERE e->'resource'->>'resourceType' = 'Observation') THEN
        INSERT INTO validation_order (patient_key, code, ordered_at, message_id)
        SELECT pkey, c->>'code', coalesce(labgate_fhir_time(r->>'authoredOn'), now()), msg_id
          FROM labgate_jsonb_list(b->'entry') AS e(entry),
               LATERAL (SELECT e.entry->'resource' AS r) res,
               labgate_jsonb_list(r->'code'->'coding') AS c
         WHERE r->>'resourceType' = 'ServiceRequest'
           AND c->>'system' = ANY(code_systems) AND jsonb_typeof(c->'code') = 'string';
    END IF;
END $$;

-- Never fails the message's transaction: a bundle the index cannot read is
-- stored all the same, only without history rows (and a server WARNING).
CREATE FUNCTION validation_index_message() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'rejected' OR NEW.bundle IS NULL OR NEW.duplicate_of IS NOT NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        PERFORM validation_index_bundle(NEW.id, NEW.bundle);
    EXCEPTION WHEN others THEN
        RAISE WARNING 'validation history: message % not indexed: %', NEW.id, SQLERRM;
    END;
    RETURN NULL;
END $$;

CREATE TRIGGER message_validation_index
    AFTER INSERT ON message
    FOR EACH ROW EXECUTE FUNCTION validation_index_message();
