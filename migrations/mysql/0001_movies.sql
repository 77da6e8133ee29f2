-- One row per film release, filled by the db-writer stage from data/movies.json.
--
-- The dataset has no id column, and its titles are not unique: remakes reuse a title in
-- another year ("Ben-Hur", "King Kong"). Title plus release date is what identifies a
-- release, so db-writer derives `id` from those two columns as "<title> (<release_date>)",
-- for example "The Land Girls (1998-06-12)".
--
-- utf8mb4_bin compares strings byte for byte, as SQLite and PostgreSQL do. With a
-- case-insensitive collation, "Heat (1995-12-15)" and "HEAT (1995-12-15)" would collide
-- as the same primary key on this backend only.
--
-- VARCHAR limits count characters. They are enforced only in strict SQL mode
-- (STRICT_TRANS_TABLES, the default since MySQL 5.7 and MariaDB 10.2.4); without it, a
-- value that is too long is silently truncated.
CREATE TABLE movies (
    id                     VARCHAR(255)  NOT NULL PRIMARY KEY,
    title                  VARCHAR(200)  NOT NULL,
    us_gross               BIGINT,
    worldwide_gross        BIGINT,
    us_dvd_sales           BIGINT,
    production_budget      BIGINT,
    -- ISO 8601 date text (YYYY-MM-DD), so that it compares and sorts the same on every backend.
    release_date           VARCHAR(10)   NOT NULL
        CHECK (release_date REGEXP '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
    mpaa_rating            VARCHAR(20),
    running_time_min       BIGINT,
    distributor            VARCHAR(100),
    source                 VARCHAR(100),
    major_genre            VARCHAR(100),
    creative_type          VARCHAR(100),
    director               VARCHAR(100),
    rotten_tomatoes_rating BIGINT,
    imdb_rating            DOUBLE,
    imdb_votes             BIGINT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
