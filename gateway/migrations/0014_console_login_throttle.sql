-- [security] Console login throttle per client address and per
-- (client address, account name), shared by every gateway process on this
-- database (docs/console.md, "Login throttle and lockout").
--
-- One row per key:
--   'a|<address>'            failed logins from one client address
--                            (IPv4 address, or the IPv6 /64 prefix)
--   'p|<address>|<sha256>'   failed logins for one account name from that
--                            address; the name is stored only as the hex
--                            SHA-256 of what was typed, so a password typed
--                            into the name field does not land here.
-- ``failures`` counts within a fixed window that starts at the first
-- failure; reaching the configured limit sets ``blocked_until`` (now + one
-- window), and until then the key's logins are answered 429 without
-- checking the password. ``expires_at`` is when the row is no longer
-- needed; users.prune_sessions (the console retention job) and every login
-- delete such rows, so the table stays bounded.

CREATE TABLE console_login_throttle (
    key             text PRIMARY KEY,
    failures        integer NOT NULL,
    window_start    timestamptz NOT NULL,
    blocked_until   timestamptz,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX console_login_throttle_expires_idx ON console_login_throttle (expires_at);
