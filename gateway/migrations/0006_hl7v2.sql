-- HL7 v2 enhanced acknowledgement mode (issue 10): an outbox row is either the
-- message itself for a destination (kind 'message', built from the stored
-- bundle at delivery time) or the application acknowledgement (AA/AE/AR) of
-- the message, sent to the source system's ack_destination (kind 'app_ack',
-- built at delivery time from the stored raw message and verdict). Both are
-- written in the message's own transaction, so neither can be lost.
ALTER TABLE outbox ADD COLUMN kind text NOT NULL DEFAULT 'message'
    CHECK (kind IN ('message', 'app_ack'));
