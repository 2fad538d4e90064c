//! One machine-readable line per benchmark figure, so `make bench` can print
//! every benchmark of the workspace as one table (`e2e bench-table`).
//!
//! Each bench keeps its own human-readable output and adds, for every figure
//! worth comparing, a line `bench-result {json}` written by [`report`] and read
//! back by [`parse`].

use serde::{Deserialize, Serialize};

/// The prefix that marks a result line in a bench's output.
pub const PREFIX: &str = "bench-result ";

/// One figure of one benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// Which benchmark (`datastorage ingest`).
    pub bench: String,
    /// What was measured (`http`, `p99`).
    pub measure: String,
    /// The figure.
    pub value: f64,
    /// Its unit (`events/s`, `ms`).
    pub unit: String,
    /// The baseline measured in the same run, if the figure is compared to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// `value / baseline value`, when there is a baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

/// Prints one result line to stdout.
pub fn report(bench: &str, measure: &str, value: f64, unit: &str, baseline: Option<(&str, f64)>) {
    let result = BenchResult {
        bench: bench.to_owned(),
        measure: measure.to_owned(),
        value,
        unit: unit.to_owned(),
        baseline: baseline.map(|(name, _)| name.to_owned()),
        ratio: baseline.map(|(_, base)| value / base),
    };
    println!(
        "{PREFIX}{}",
        serde_json::to_string(&result).expect("a result serializes")
    );
}

/// Every result line in `output` (other lines are ignored).
pub fn parse(output: &str) -> Vec<BenchResult> {
    output
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(PREFIX))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_found_among_other_output() {
        let line = serde_json::to_string(&BenchResult {
            bench: "b".into(),
            measure: "http".into(),
            value: 30.0,
            unit: "events/s".into(),
            baseline: Some("direct".into()),
            ratio: Some(0.5),
        })
        .unwrap();
        let output = format!("noise\n{PREFIX}{line}\n{PREFIX}not json\nmore noise\n");
        let results = parse(&output);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].ratio, Some(0.5));
    }
}
