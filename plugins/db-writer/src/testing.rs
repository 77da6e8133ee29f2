//! Fixtures shared by the unit tests.

use crate::config::Config;

/// The config section that maps every field of data/movies.json, as in README.md.
pub const MOVIES_CONFIG: &str = r#"{
    "table": "movies",
    "key": { "column": "id", "from": ["title", "release_date"] },
    "columns": {
        "title": { "field": "Title", "type": "text", "required": true, "max_length": 200 },
        "us_gross": { "field": "US Gross", "type": "integer" },
        "worldwide_gross": { "field": "Worldwide Gross", "type": "integer" },
        "us_dvd_sales": { "field": "US DVD Sales", "type": "integer" },
        "production_budget": { "field": "Production Budget", "type": "integer" },
        "release_date": { "field": "Release Date", "type": "date", "required": true },
        "mpaa_rating": { "field": "MPAA Rating", "type": "text", "max_length": 20 },
        "running_time_min": { "field": "Running Time min", "type": "integer" },
        "distributor": { "field": "Distributor", "type": "text", "max_length": 100 },
        "source": { "field": "Source", "type": "text", "max_length": 100 },
        "major_genre": { "field": "Major Genre", "type": "text", "max_length": 100 },
        "creative_type": { "field": "Creative Type", "type": "text", "max_length": 100 },
        "director": { "field": "Director", "type": "text", "max_length": 100 },
        "rotten_tomatoes_rating": { "field": "Rotten Tomatoes Rating", "type": "integer" },
        "imdb_rating": { "field": "IMDB Rating", "type": "real" },
        "imdb_votes": { "field": "IMDB Votes", "type": "integer" }
    }
}"#;

pub fn movies_config() -> Config {
    Config::parse(MOVIES_CONFIG).expect("MOVIES_CONFIG is valid")
}

/// Index of a column in `Config::columns`, which are sorted by name.
pub fn column_index(config: &Config, name: &str) -> usize {
    config
        .columns
        .iter()
        .position(|column| column.name == name)
        .expect("column is mapped")
}
