-- One row per film release, filled by the db-writer stage from data/movies.json.
--
-- The dataset has no id column, and its titles are not unique: remakes reuse a title in
-- another year ("Ben-Hur", "King Kong"). Title plus release date is what identifies a
-- release, so db-writer derives `id` from those two columns as "<title> (<release_date>)",
-- for example "The Land Girls (1998-06-12)".
CREATE TABLE movies (
    id                     VARCHAR(255)     NOT NULL PRIMARY KEY,
    title                  VARCHAR(200)     NOT NULL,
    us_gross               BIGINT,
    worldwide_gross        BIGINT,
    us_dvd_sales           BIGINT,
    production_budget      BIGINT,
    -- ISO 8601 date text (YYYY-MM-DD), so that it compares and sorts the same on every
    -- backend. A DATE column would reject the text parameters that db-writer binds.
    release_date           VARCHAR(10)      NOT NULL
        CHECK (release_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
    mpaa_rating            VARCHAR(20),
    running_time_min       BIGINT,
    distributor            VARCHAR(100),
    source                 VARCHAR(100),
    major_genre            VARCHAR(100),
    creative_type          VARCHAR(100),
    director               VARCHAR(100),
    rotten_tomatoes_rating BIGINT,
    -- DOUBLE PRECISION, because REAL is a 4-byte float in PostgreSQL.
    imdb_rating            DOUBLE PRECISION,
    imdb_votes             BIGINT
);
