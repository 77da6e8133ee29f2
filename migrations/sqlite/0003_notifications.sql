-- The mailer stage's record of the emails it sent, one row per stored record, so that a
-- redelivered "stored" event does not send a second email.
--
-- A row is 'pending' from just before the send until the send succeeded, then 'sent'.
-- A row left 'pending' means the email may or may not have gone out: the mailer sends it
-- again with the same Message-ID, so that a reader can recognise the copy.
CREATE TABLE notifications (
    record_key TEXT    NOT NULL PRIMARY KEY CHECK (length(record_key) <= 255),
    state      TEXT    NOT NULL CHECK (state IN ('pending', 'sent')),
    message_id TEXT    NOT NULL CHECK (length(message_id) <= 255),
    -- Number of sends started for this record, the current one included.
    attempts   INTEGER NOT NULL DEFAULT 0,
    -- RFC 3339 text in UTC; null until the send succeeded.
    sent_at    TEXT    CHECK (length(sent_at) <= 20)
);
