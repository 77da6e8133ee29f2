-- The mailer stage's record of the emails it sent, one row per stored record, so that a
-- redelivered "stored" event does not send a second email.
--
-- A row is 'pending' from just before the send until the send succeeded, then 'sent'.
-- A row left 'pending' means the email may or may not have gone out: the mailer sends it
-- again with the same Message-ID, so that a reader can recognise the copy.
CREATE TABLE notifications (
    record_key VARCHAR(255) NOT NULL PRIMARY KEY,
    state      VARCHAR(16)  NOT NULL CHECK (state IN ('pending', 'sent')),
    message_id VARCHAR(255) NOT NULL,
    -- Number of sends started for this record, the current one included.
    attempts   BIGINT       NOT NULL DEFAULT 0,
    -- RFC 3339 text in UTC; null until the send succeeded.
    sent_at    VARCHAR(20)
);
