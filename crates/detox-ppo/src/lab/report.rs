//! The side-by-side comparison of the policy before and after training: its rows, and
//! `comparison.{csv,json,txt}`; and the pretty-JSON write of the run's reports.

use std::path::Path;

use detox_hub::atomic::write_file_atomic;
use serde::{Deserialize, Serialize};

use super::data::Query;
use super::error::{io_err, LabError};

/// One row of the comparison table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComparisonRow {
    pub query: String,
    pub response_before: String,
    pub response_after: String,
    pub reward_before: f32,
    pub reward_after: f32,
    pub reward_diff: f32,
}

/// The rows of the table for `queries`, the responses before / after and their rewards, sorted
/// by `reward_diff`, descending.
pub fn comparison_rows(
    queries: &[Query],
    before: &[String],
    after: &[String],
    reward_before: &[f32],
    reward_after: &[f32],
) -> Vec<ComparisonRow> {
    let mut rows: Vec<ComparisonRow> = queries
        .iter()
        .zip(before.iter().zip(after))
        .zip(reward_before.iter().zip(reward_after))
        .map(|((q, (b, a)), (&rb, &ra))| ComparisonRow {
            query: q.text.clone(),
            response_before: b.clone(),
            response_after: a.clone(),
            reward_before: rb,
            reward_after: ra,
            reward_diff: ra - rb,
        })
        .collect();
    rows.sort_by(|a, b| b.reward_diff.total_cmp(&a.reward_diff));
    rows
}

fn one_line(s: &str, width: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= width {
        flat
    } else {
        let mut t: String = flat.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Writes `value` to `path` atomically as pretty JSON with a final newline.
pub(crate) fn write_pretty_json<T: Serialize>(path: &Path, value: &T) -> Result<(), LabError> {
    detox_train::checkpoint::write_json_pretty(path, value).map_err(io_err(path))
}

/// The table as CSV: a header row of the field names, then one row per query; a field is
/// quoted only when it holds a comma, a quote or a line break; rewards as Rust prints them.
fn comparison_csv(rows: &[ComparisonRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record([
        "query",
        "response_before",
        "response_after",
        "reward_before",
        "reward_after",
        "reward_diff",
    ])?;
    for r in rows {
        w.write_record([
            r.query.clone(),
            r.response_before.clone(),
            r.response_after.clone(),
            r.reward_before.to_string(),
            r.reward_after.to_string(),
            r.reward_diff.to_string(),
        ])?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

/// Writes `comparison.{csv,json,txt}` (rows sorted by `reward_diff`, descending).
pub fn write_comparison(out: &Path, rows: &[ComparisonRow]) -> Result<(), LabError> {
    let csv = comparison_csv(rows).map_err(|e| LabError::File {
        path: out.join("comparison.csv"),
        msg: e.to_string(),
    })?;
    let path = out.join("comparison.csv");
    write_file_atomic(&path, &csv).map_err(io_err(&path))?;
    write_pretty_json(&out.join("comparison.json"), &rows)?;
    let mut txt = format!(
        "{:>3}  {:<40}  {:<30}  {:<30}  {:>9}  {:>9}  {:>9}\n",
        "#", "query", "response_before", "response_after", "before", "after", "diff"
    );
    for (i, r) in rows.iter().enumerate() {
        txt.push_str(&format!(
            "{:>3}  {:<40}  {:<30}  {:<30}  {:>9.4}  {:>9.4}  {:>9.4}\n",
            i,
            one_line(&r.query, 40),
            one_line(&r.response_before, 30),
            one_line(&r.response_after, 30),
            r.reward_before,
            r.reward_after,
            r.reward_diff
        ));
    }
    let path = out.join("comparison.txt");
    write_file_atomic(&path, txt.as_bytes()).map_err(io_err(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_csv_quotes_only_fields_that_need_it() {
        let row = ComparisonRow {
            query: "a,b".into(),
            response_before: "say \"hi\"".into(),
            response_after: "two\nlines".into(),
            reward_before: 1.0,
            reward_after: 0.25,
            reward_diff: -0.75,
        };
        let plain = ComparisonRow {
            query: "plain".into(),
            ..row.clone()
        };
        let csv = String::from_utf8(comparison_csv(&[row, plain]).unwrap()).unwrap();
        assert_eq!(
            csv,
            "query,response_before,response_after,reward_before,reward_after,reward_diff\n\
             \"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",1,0.25,-0.75\n\
             plain,\"say \"\"hi\"\"\",\"two\nlines\",1,0.25,-0.75\n"
        );
        assert_eq!(one_line("a\n  b", 10), "a b");
        assert_eq!(one_line("abcdefghijk", 5).chars().count(), 5);
    }

    #[test]
    fn rows_sort_by_reward_gain() {
        let q = |t: &str| Query {
            input_ids: vec![1],
            text: t.into(),
        };
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let rows = comparison_rows(
            &[q("a"), q("b")],
            &s(&["a0", "b0"]),
            &s(&["a1", "b1"]),
            &[0.0, 1.0],
            &[0.5, 3.0],
        );
        assert_eq!(rows[0].query, "b");
        assert_eq!((rows[0].reward_diff, rows[1].reward_diff), (2.0, 0.5));
    }
}
