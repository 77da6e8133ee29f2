//! The list of problems that loading `pipeline.yaml` reports all at once.

use std::fmt;

/// A position in the YAML source, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: u64,
    pub column: u64,
}

/// One thing wrong with the pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the invalid key or value, as `stages[1].grants[0]`. Empty for the whole file.
    pub path: String,
    /// Description of the problem, naming the invalid value.
    pub message: String,
    /// Suggested fix, when one is more specific than the message.
    pub hint: Option<String>,
    /// Position of the value in the YAML source. `None` for problems found outside the file,
    /// such as a missing file or an import that the stage was not granted.
    pub location: Option<Location>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        if let Some(location) = self.location {
            write!(f, " (line {}, column {})", location.line, location.column)?;
        }
        Ok(())
    }
}

/// Every problem found in a pipeline file. [`super::parse`] lists them in file order, and
/// [`ConfigErrors::push`] appends.
///
/// `Display` prints one problem per line, as
///
/// ```text
/// stages[1].grants[0]: unknown grant `mial`; valid grants: database, mail, publish, log, config (line 12, column 9)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors {
    pub problems: Vec<Problem>,
}

impl ConfigErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a problem found outside the YAML source, for example by `magnetar check` when a
    /// component imports an interface that its stage was not granted.
    pub fn push(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
            hint,
            location: None,
        });
    }

    /// Adds a problem at a known place in the YAML source.
    pub(crate) fn push_at(
        &mut self,
        path: &str,
        location: Location,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.problems.push(Problem {
            path: path.to_owned(),
            message: message.into(),
            hint,
            location: Some(location),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn len(&self) -> usize {
        self.problems.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Problem> {
        self.problems.iter()
    }

    /// Returns the problems with this path, for tests and for tools that annotate one key.
    pub fn at(&self, path: &str) -> Vec<&Problem> {
        self.problems
            .iter()
            .filter(|problem| problem.path == path)
            .collect()
    }

    /// Returns `Ok(value)` when no problem was recorded, and the problems otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a Problem;
    type IntoIter = std::slice::Iter<'a, Problem>;

    fn into_iter(self) -> Self::IntoIter {
        self.problems.iter()
    }
}

/// Returns the candidate closest to `input` if it is close enough to be a likely typo.
///
/// Closeness is the optimal string alignment distance (Levenshtein plus swapped neighbours),
/// accepted up to a third of the candidate's length and at least 1.
pub(crate) fn closest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (edit_distance(input, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1) || shares_stem(input, candidate))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Returns "did you mean `x`?" when a candidate is close, or "valid <plural>: a, b, c" otherwise.
pub(crate) fn suggestion(input: &str, candidates: &[&str], plural: &str) -> String {
    match closest(input, candidates) {
        Some(candidate) => format!("did you mean `{candidate}`?"),
        None => format!("valid {plural}: {}", candidates.join(", ")),
    }
}

/// Returns whether `a` and `b` differ only after a common start of at least four characters
/// that covers the shorter one but its last character, as `retries` and `retry` or
/// `parallel` and `parallelism` do.
fn shares_stem(a: &str, b: &str) -> bool {
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let shorter = a.chars().count().min(b.chars().count());
    common >= 4 && common + 1 >= shorter
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();

    // d[i][j] is the distance between the first i characters of a and the first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }

    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_misspelled_key() {
        let keys = ["subscription", "subscription_type", "initial_position"];
        assert_eq!(closest("subscripton", &keys), Some("subscription"));
        assert_eq!(
            closest("subscription_typ", &keys),
            Some("subscription_type")
        );
        assert_eq!(closest("parallel", &keys), None);
        assert_eq!(closest("retries", &["retry", "retry_topic", "limits"]), Some("retry"));
        assert_eq!(closest("parallel", &["parallelism", "plugin"]), Some("parallelism"));
        assert_eq!(closest("retain", &["retry", "retry_topic"]), None);
    }

    #[test]
    fn closest_counts_swapped_letters_once() {
        assert_eq!(edit_distance("mial", "mail"), 1);
        assert_eq!(
            closest("mial", &["database", "mail", "publish"]),
            Some("mail")
        );
    }

    #[test]
    fn display_joins_path_message_hint_and_location() {
        let mut errors = ConfigErrors::new();
        errors.push_at(
            "stages[1].grants[0]",
            Location {
                line: 12,
                column: 9,
            },
            "unknown grant `mial`",
            Some("valid grants: database, mail, publish, log, config".into()),
        );
        errors.push("", "file not found", None);
        assert_eq!(
            errors.to_string(),
            "stages[1].grants[0]: unknown grant `mial`; valid grants: database, mail, publish, \
             log, config (line 12, column 9)\nfile not found"
        );
    }
}
