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

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
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
    let json = serde_json::to_string_pretty(value).map_err(|e| LabError::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })? + "\n";
    write_file_atomic(path, json.as_bytes()).map_err(io_err(path))
}

/// Writes `comparison.{csv,json,txt}` (rows sorted by `reward_diff`, descending).
pub fn write_comparison(out: &Path, rows: &[ComparisonRow]) -> Result<(), LabError> {
    let mut csv = String::from(
        "query,response_before,response_after,reward_before,reward_after,reward_diff\n",
    );
    for r in rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{}\n",
            csv_field(&r.query),
            csv_field(&r.response_before),
            csv_field(&r.response_after),
            r.reward_before,
            r.reward_after,
            r.reward_diff
        ));
    }
    let path = out.join("comparison.csv");
    write_file_atomic(&path, csv.as_bytes()).map_err(io_err(&path))?;
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
    fn comparison_csv_quotes_fields() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
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
