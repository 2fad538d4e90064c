//! `make bench`'s closing table: every `bench-result` line of every benchmark
//! of the workspace, one row each (see `datastorage::testing::bench`).

use datastorage::testing::bench::BenchResult;

/// The results as an aligned table.
pub fn render(results: &[BenchResult]) -> String {
    let header = [
        "benchmark",
        "measure",
        "value",
        "baseline (same run)",
        "ratio",
    ];
    let rows: Vec<[String; 5]> = results
        .iter()
        .map(|r| {
            [
                r.bench.clone(),
                r.measure.clone(),
                format!("{} {}", figure(r.value), r.unit),
                r.baseline.clone().unwrap_or_else(|| "-".into()),
                r.ratio.map_or_else(|| "-".into(), |x| format!("{x:.2}")),
            ]
        })
        .collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: [&str; 5]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            // Figures right-aligned, words left-aligned.
            if i == 2 || i == 4 {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            }
            out.push_str("  ");
        }
        out.trim_end().to_owned()
    };
    let mut text = line(header);
    text.push('\n');
    text.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
    for r in &rows {
        text.push('\n');
        text.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    text
}

/// Large figures without decimals, small ones with two.
fn figure(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_align_and_missing_baselines_show_a_dash() {
        let results = vec![
            BenchResult {
                bench: "datastorage ingest (SQLite)".into(),
                measure: "http".into(),
                value: 30275.4,
                unit: "events/s".into(),
                baseline: Some("direct rusqlite".into()),
                ratio: Some(0.6),
            },
            BenchResult {
                bench: "audit-sdk".into(),
                measure: "record()".into(),
                value: 1.234,
                unit: "ms".into(),
                baseline: None,
                ratio: None,
            },
        ];
        let table = render(&results);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[2].contains("30275 events/s  direct rusqlite"),
            "{table}"
        );
        assert!(lines[2].ends_with("0.60"), "{table}");
        assert!(lines[3].contains("1.23 ms"), "{table}");
        assert!(lines[3].ends_with('-'), "{table}");
        // The value column is right-aligned: both cells end at the same column.
        let end = |l: &str, unit: &str| l.find(unit).unwrap() + unit.len();
        assert_eq!(end(lines[2], "events/s"), end(lines[3], " ms"), "{table}");
    }
}
