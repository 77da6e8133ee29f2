-- One row per film release, filled by the db-writer stage from data/movies.json.
--
-- The dataset has no id column, and its titles are not unique: remakes reuse a title in
-- another year ("Ben-Hur", "King Kong"). Title plus release date is what identifies a
-- release, so db-writer derives `id` from those two columns as "<title> (<release_date>)",
-- for example "The Land Girls (1998-06-12)".
--
-- SQLite does not enforce VARCHAR lengths, so the CHECK constraints give the same limits
-- as the MySQL and PostgreSQL migrations.
CREATE TABLE movies (
    id                     TEXT    NOT NULL PRIMARY KEY CHECK (length(id) <= 255),
    title                  TEXT    NOT NULL CHECK (length(title) <= 200),
    us_gross               INTEGER,
    worldwide_gross        INTEGER,
    us_dvd_sales           INTEGER,
    production_budget      INTEGER,
    -- ISO 8601 date text (YYYY-MM-DD), so that it compares and sorts the same on every backend.
    release_date           TEXT    NOT NULL
        CHECK (release_date GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    mpaa_rating            TEXT    CHECK (length(mpaa_rating) <= 20),
    running_time_min       INTEGER,
    distributor            TEXT    CHECK (length(distributor) <= 100),
    source                 TEXT    CHECK (length(source) <= 100),
    major_genre            TEXT    CHECK (length(major_genre) <= 100),
    creative_type          TEXT    CHECK (length(creative_type) <= 100),
    director               TEXT    CHECK (length(director) <= 100),
    rotten_tomatoes_rating INTEGER,
    imdb_rating            REAL,
    imdb_votes             INTEGER
);
