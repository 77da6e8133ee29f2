-- Dead letters recorded by the dlq-logger stage: the failed message as the host sent it to
-- the dead-letter topic, with the host's context properties split into columns.
--
-- The unique index makes recording idempotent: a dead letter that Pulsar delivers again
-- (same stage, same source topic, same source message id) is not stored twice. Its three
-- columns total 704 characters, within InnoDB's 3072-byte index key limit at 4 bytes per
-- utf8mb4 character. Timestamps are RFC 3339 text in UTC, the same format on every backend.
CREATE TABLE dead_letters (
    id                BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    stage             VARCHAR(128) NOT NULL,
    -- permanent, retries-exhausted, timeout, trap, memory-limit, too-large, or unknown.
    failure_kind      VARCHAR(32)  NOT NULL,
    reason            MEDIUMTEXT   NOT NULL,
    attempts          BIGINT,
    source_topic      VARCHAR(512) NOT NULL,
    source_message_id VARCHAR(64)  NOT NULL,
    -- As the host wrote it in magnetar.failed-at; null when the property is missing.
    failed_at         VARCHAR(64),
    message_key       MEDIUMTEXT,
    -- Every property of the dead letter, context properties included, as a JSON object.
    properties        MEDIUMTEXT   NOT NULL,
    payload           LONGBLOB     NOT NULL,
    recorded_at       VARCHAR(20)  NOT NULL
        DEFAULT (DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%dT%H:%i:%sZ')),
    UNIQUE KEY dead_letters_source (stage, source_topic, source_message_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
