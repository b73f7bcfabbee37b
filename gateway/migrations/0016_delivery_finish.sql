-- One delivery round's outcomes in one call: the outbox rows' new state and
-- their attempt rows (whose trigger audits the deliveries), one round trip
-- instead of two.
--
-- The round's commit does not wait for its WAL flush (synchronous_commit off
-- for this transaction only). A crash or a failover before the flush (at
-- most wal_writer_delay x 3, ~600 ms) loses the outcome of rows that were
-- already sent, so they are sent again after restart with the same control id
-- LG<outbox id>: exactly what at-least-once delivery already does when a
-- gateway dies between the destination's ACK and the commit. WAL is flushed
-- in order, so any later synchronous commit (an intake, a prune, a replay)
-- flushes these outcomes with it. Intake commits stay synchronous: a sender
-- is acknowledged only when its message is on disk.
CREATE FUNCTION labgate_finish_deliveries(
    ids bigint[], states text[], attempt_counts int[], errors text[], next_at timestamptz[],
    outcomes text[], details text[], durations int[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE outbox o SET state = u.state, attempts = u.attempts, last_error = u.error,
           next_attempt_at = u.next_at, done_at = CASE WHEN u.state <> 'pending' THEN now() END
    FROM unnest(ids, states, attempt_counts, errors, next_at) AS u(id, state, attempts, error, next_at)
    WHERE o.id = u.id;
    INSERT INTO delivery_attempt (outbox_id, outcome, detail, duration_ms)
    SELECT * FROM unnest(ids, outcomes, details, durations);
END $$;
