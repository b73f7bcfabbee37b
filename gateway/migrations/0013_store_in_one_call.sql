-- A group commit in one round trip.
--
-- MessageWriter used to send BEGIN, set_config, the message INSERT, the
-- history INSERT, the outbox INSERT, one pg_notify per destination and
-- COMMIT: seven round trips per batch. With the few messages a batch holds
-- at 500 msg/s (two or three), that fixed cost was most of PostgreSQL's CPU
-- per message (1.18 CPU-s per 1,000 at 500 msg/s against 0.59 at 880 msg/s
-- with fuller batches; bench/results) and several milliseconds of every ACK.
-- labgate_store_messages does the same work as one statement, in its own
-- implicit transaction: a message is committed with its history and outbox
-- rows, or not at all, exactly as before.
--
-- Arrays are positional: element i of every message array is the batch's
-- i-th record; the history and outbox arrays name their record by that
-- position (1-based) in their *_ord array.

-- What storing a message brings along: validation history rows (given by
-- the validator, or derived from the bundle for records listed in
-- index_ord), outbox rows, and a wake-up per destination with pending rows.
-- ids[i] is the stored message id of record i, NULL when it was not stored.
CREATE FUNCTION labgate_write_followups(
    ids bigint[],
    hr_ord int[], hr_patient text[], hr_code text[], hr_at timestamptz[], hr_value float8[],
    hr_unit text[],
    ho_ord int[], ho_patient text[], ho_code text[], ho_at timestamptz[],
    index_ord int[],
    ob_ord int[], ob_dest text[], ob_state text[], ob_kind text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(hr_ord) > 0 THEN
        INSERT INTO validation_result (patient_key, code, observed_at, value, unit, message_id)
        SELECT h.p, h.c, h.a, h.v, h.u, ids[h.o]
        FROM unnest(hr_ord, hr_patient, hr_code, hr_at, hr_value, hr_unit) AS h(o, p, c, a, v, u)
        WHERE ids[h.o] IS NOT NULL;
    END IF;
    IF cardinality(ho_ord) > 0 THEN
        INSERT INTO validation_order (patient_key, code, ordered_at, message_id)
        SELECT h.p, h.c, h.a, ids[h.o]
        FROM unnest(ho_ord, ho_patient, ho_code, ho_at) AS h(o, p, c, a)
        WHERE ids[h.o] IS NOT NULL;
    END IF;
    IF cardinality(index_ord) > 0 THEN
        PERFORM validation_index_messages(
            ARRAY(SELECT ids[o] FROM unnest(index_ord) AS o WHERE ids[o] IS NOT NULL));
    END IF;
    IF cardinality(ob_ord) > 0 THEN
        INSERT INTO outbox (message_id, destination, state, kind)
        SELECT ids[x.o], x.d, x.s, x.k
        FROM unnest(ob_ord, ob_dest, ob_state, ob_kind) WITH ORDINALITY AS x(o, d, s, k, n)
        WHERE ids[x.o] IS NOT NULL
        ORDER BY x.n;
        PERFORM pg_notify('labgate_outbox', d)
        FROM (SELECT DISTINCT x.d FROM unnest(ob_ord, ob_dest, ob_state) AS x(o, d, s)
              WHERE ids[x.o] IS NOT NULL AND x.s = 'pending' ORDER BY x.d) AS pending;
    END IF;
END $$;

-- Stores a batch of received messages with their followups. Returns one row
-- per record: its position, the id it has (its own, or the original's when
-- it repeats a stored source + control id), whether it was stored now, and
-- for a repeat whether the bytes are the same and the ACK sent the first
-- time. A repeat with the same bytes counts on the original's duplicates.
CREATE FUNCTION labgate_store_messages(
    m_source text[], m_protocol text[], m_peer text[], m_type text[], m_control_id text[],
    m_sha bytea[], m_raw bytea[], m_bundle text[], m_verdict text[], m_status text[],
    m_ack bytea[], m_received_at timestamptz[], m_duplicate_of bigint[],
    hr_ord int[], hr_patient text[], hr_code text[], hr_at timestamptz[], hr_value float8[],
    hr_unit text[],
    ho_ord int[], ho_patient text[], ho_code text[], ho_at timestamptz[],
    index_ord int[],
    ob_ord int[], ob_dest text[], ob_state text[], ob_kind text[])
RETURNS TABLE (ord int, id bigint, inserted boolean, same_content boolean, stored_ack bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    stored bigint[];    -- the id of each record stored now, else NULL
BEGIN
    -- the history rows come with the batch: the row trigger stands down (0010)
    PERFORM set_config('labgate.history_by_writer', 'on', true);
    WITH input AS (
        SELECT nextval(pg_get_serial_sequence('message', 'id')) AS id, t.*
        FROM unnest(m_source, m_protocol, m_peer, m_type, m_control_id, m_sha, m_raw, m_bundle,
                    m_verdict, m_status, m_ack, m_received_at, m_duplicate_of)
             WITH ORDINALITY AS t(source, protocol, peer, message_type, control_id, sha, raw,
                                  bundle, verdict, status, ack, received_at, duplicate_of, n)
    ), ins AS (
        INSERT INTO message (id, source, protocol, peer, message_type, control_id, content_sha256,
                             raw, bundle, verdict, status, ack, received_at, duplicate_of)
        OVERRIDING SYSTEM VALUE
        SELECT i.id, i.source, i.protocol, i.peer, i.message_type, i.control_id, i.sha, i.raw,
               i.bundle::jsonb, i.verdict::jsonb, i.status, i.ack, i.received_at, i.duplicate_of
        FROM input AS i ORDER BY i.n
        ON CONFLICT (source, control_id) WHERE duplicate_of IS NULL DO NOTHING
        RETURNING message.id
    )
    SELECT array_agg(ins.id ORDER BY input.n) INTO stored
      FROM input LEFT JOIN ins ON ins.id = input.id;

    PERFORM labgate_write_followups(stored, hr_ord, hr_patient, hr_code, hr_at, hr_value,
                                    hr_unit, ho_ord, ho_patient, ho_code, ho_at, index_ord,
                                    ob_ord, ob_dest, ob_state, ob_kind);

    RETURN QUERY SELECT k.o::int, stored[k.o], true, true, NULL::bytea
                 FROM generate_subscripts(stored, 1) AS k(o) WHERE stored[k.o] IS NOT NULL;
    IF array_position(stored, NULL) IS NULL THEN
        RETURN;
    END IF;
    -- repeats: the original of each (it may have been stored by this very batch)
    RETURN QUERY
        SELECT k.o::int, m.id, false, m.content_sha256 = m_sha[k.o], m.ack
        FROM generate_subscripts(stored, 1) AS k(o)
        JOIN message AS m ON m.source = m_source[k.o] AND m.control_id = m_control_id[k.o]
                         AND m.duplicate_of IS NULL
        WHERE stored[k.o] IS NULL;
    UPDATE message AS m SET duplicates = m.duplicates + c.n
    FROM (SELECT orig.id, count(*) AS n
          FROM generate_subscripts(stored, 1) AS k(o)
          JOIN message AS orig ON orig.source = m_source[k.o]
                              AND orig.control_id = m_control_id[k.o]
                              AND orig.duplicate_of IS NULL
          WHERE stored[k.o] IS NULL AND orig.content_sha256 = m_sha[k.o]
          GROUP BY orig.id) AS c
    WHERE m.id = c.id;
END $$;
