//! The table printed at the end of a run: one row per scenario (or step).

use std::fmt;
use std::time::Duration;

use crate::progress::seconds;

/// How one row ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed, with what the scenario measured worth a glance (the API
    /// server's 429s under load, say).
    Passed(Option<String>),
    /// Failed, with the reason.
    Failed(String),
    /// Not applicable on this platform, with the reason.
    Skipped(String),
}

/// One row of the summary.
#[derive(Debug, Clone)]
pub struct Row {
    /// What ran (`1 alert → RR → audit trail`).
    pub name: String,
    /// Where it ran (`local-sqlite`, `kind`).
    pub platform: String,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took.
    pub elapsed: Duration,
}

/// The rows of a run, printed as an aligned table.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// The rows in run order.
    pub rows: Vec<Row>,
}

impl Summary {
    /// Whether no row failed.
    pub fn passed(&self) -> bool {
        !self
            .rows
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Failed(_)))
    }

    /// Total time of all rows.
    pub fn total(&self) -> Duration {
        self.rows.iter().map(|r| r.elapsed).sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cells: Vec<[String; 4]> = self
            .rows
            .iter()
            .map(|r| {
                let (status, note) = match &r.outcome {
                    Outcome::Passed(note) => ("pass", note.clone().unwrap_or_default()),
                    Outcome::Failed(why) => ("FAIL", why.lines().next().unwrap_or("").to_owned()),
                    Outcome::Skipped(why) => ("skip", why.clone()),
                };
                [
                    r.platform.clone(),
                    r.name.clone(),
                    format!("{status} {:>7}", seconds(r.elapsed)),
                    note,
                ]
            })
            .collect();
        let header = ["platform", "scenario", "result    time", "note"];
        let width = |i: usize| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (width(0), width(1), width(2));
        writeln!(
            f,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            header[0], header[1], header[2], header[3]
        )?;
        writeln!(f, "{}", "-".repeat(w0 + w1 + w2 + 10))?;
        for c in &cells {
            let row = format!("{:w0$}  {:w1$}  {:w2$}  {}", c[0], c[1], c[2], c[3]);
            writeln!(f, "{}", row.trim_end())?;
        }
        let failed = self
            .rows
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
            .count();
        write!(
            f,
            "{} scenario run(s), {failed} failed, total {}",
            self.rows.len(),
            seconds(self.total())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns_and_counts_failures() {
        let summary = Summary {
            rows: vec![
                Row {
                    name: "1 short".into(),
                    platform: "local-sqlite".into(),
                    outcome: Outcome::Passed(None),
                    elapsed: Duration::from_millis(1500),
                },
                Row {
                    name: "2 a longer name".into(),
                    platform: "kind".into(),
                    outcome: Outcome::Failed("boom\nsecond line".into()),
                    elapsed: Duration::from_secs(3),
                },
            ],
        };
        let text = summary.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[2].starts_with("local-sqlite  1 short        "),
            "{text}"
        );
        assert!(lines[3].contains("FAIL    3.0s    boom"), "{text}");
        assert!(!lines[2].ends_with(' '), "no trailing blanks: {text:?}");
        assert!(!text.contains("second line"));
        assert!(
            text.ends_with("2 scenario run(s), 1 failed, total 4.5s"),
            "{text}"
        );
        assert!(!summary.passed());
    }

    #[test]
    fn a_passing_rows_note_shows_in_the_table() {
        let summary = Summary {
            rows: vec![Row {
                name: "3 DataStorage outage".into(),
                platform: "kind".into(),
                outcome: Outcome::Passed(Some("2000 alerts at 50/s, 0 API 429s".into())),
                elapsed: Duration::from_secs(30),
            }],
        };
        let text = summary.to_string();
        let row = text.lines().nth(2).unwrap();
        assert!(row.contains("pass   30.0s"), "{text}");
        assert!(row.ends_with("  2000 alerts at 50/s, 0 API 429s"), "{text}");
        assert!(summary.passed());
    }
}
