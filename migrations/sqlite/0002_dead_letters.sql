-- Dead letters recorded by the dlq-logger stage: the failed message as the host sent it to
-- the dead-letter topic, with the host's context properties split into columns.
--
-- The unique index makes recording idempotent: a dead letter that Pulsar delivers again
-- (same stage, same source topic, same source message id) is not stored twice.
-- Timestamps are RFC 3339 text in UTC, the same format on every backend.
CREATE TABLE dead_letters (
    id                INTEGER NOT NULL PRIMARY KEY,
    stage             TEXT    NOT NULL CHECK (length(stage) <= 128),
    -- permanent, retries-exhausted, timeout, trap, memory-limit, too-large, or unknown.
    failure_kind      TEXT    NOT NULL CHECK (length(failure_kind) <= 32),
    reason            TEXT    NOT NULL,
    attempts          INTEGER,
    source_topic      TEXT    NOT NULL CHECK (length(source_topic) <= 512),
    source_message_id TEXT    NOT NULL CHECK (length(source_message_id) <= 64),
    -- As the host wrote it in magnetar.failed-at; null when the property is missing.
    failed_at         TEXT    CHECK (length(failed_at) <= 64),
    message_key       TEXT,
    -- Every property of the dead letter, context properties included, as a JSON object.
    properties        TEXT    NOT NULL,
    payload           BLOB    NOT NULL,
    recorded_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

CREATE UNIQUE INDEX dead_letters_source
    ON dead_letters (stage, source_topic, source_message_id);
