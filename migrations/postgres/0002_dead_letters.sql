-- Dead letters recorded by the dlq-logger stage: the failed message as the host sent it to
-- the dead-letter topic, with the host's context properties split into columns.
--
-- The unique index makes recording idempotent: a dead letter that Pulsar delivers again
-- (same stage, same source topic, same source message id) is not stored twice.
-- Timestamps are RFC 3339 text in UTC, the same format on every backend.
CREATE TABLE dead_letters (
    id                BIGINT       NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stage             VARCHAR(128) NOT NULL,
    -- permanent, retries-exhausted, timeout, trap, memory-limit, too-large, or unknown.
    failure_kind      VARCHAR(32)  NOT NULL,
    reason            TEXT         NOT NULL,
    attempts          BIGINT,
    source_topic      VARCHAR(512) NOT NULL,
    source_message_id VARCHAR(64)  NOT NULL,
    -- As the host wrote it in magnetar.failed-at; null when the property is missing.
    failed_at         VARCHAR(64),
    message_key       TEXT,
    -- Every property of the dead letter, context properties included, as a JSON object.
    properties        TEXT         NOT NULL,
    payload           BYTEA        NOT NULL,
    recorded_at       VARCHAR(20)  NOT NULL
        DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    CONSTRAINT dead_letters_source UNIQUE (stage, source_topic, source_message_id)
);
