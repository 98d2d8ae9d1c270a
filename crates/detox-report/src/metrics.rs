//! JSONL logs of numbers per step — fine-tuning's `metrics.jsonl`, PPO's `stats.jsonl` — read
//! into columns whatever keys they hold: nested objects (the classifier's `eval`) become dotted
//! names (`eval.accuracy`), numbers are kept, `null` (a NaN the writer could not store), strings
//! and arrays are left out.
//!
//! A final line without its newline that does not parse is the row a live run is writing (its
//! writer appends the line, then the newline) or one cut short by a kill (the next `--resume`
//! drops it): it is left out and recorded in [`MetricsLog::incomplete_line`], not an error. Any
//! other malformed line is an error naming the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::ReportError;

/// One JSONL log: a row per non-blank line, each with its `step`.
#[derive(Debug, Clone)]
pub struct MetricsLog {
    pub path: PathBuf,
    /// Every numeric column of any row but `step`, sorted by name.
    pub columns: Vec<String>,
    pub rows: Vec<MetricsRow>,
    /// The 1-based number of an unfinished last line that was left out.
    pub incomplete_line: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct MetricsRow {
    /// 1-based line number in the file.
    pub line: usize,
    pub step: f64,
    pub values: BTreeMap<String, f64>,
}

impl MetricsLog {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(path).map_err(ReportError::io(path))?;
        Self::parse(path, &text)
    }

    /// Parses the JSONL `text` of `path` (named in errors, with the line).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ReportError> {
        let mut rows = Vec::new();
        let mut columns = std::collections::BTreeSet::new();
        let mut incomplete_line = None;
        let n_lines = text.lines().count();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let err = |msg: String| ReportError::JsonlLine {
                path: path.to_path_buf(),
                line: i + 1,
                msg,
            };
            let value: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(_) if i + 1 == n_lines && !text.ends_with('\n') => {
                    incomplete_line = Some(i + 1);
                    break;
                }
                Err(e) => return Err(err(format!("invalid JSON: {e}"))),
            };
            let map = match value {
                Value::Object(map) => map,
                other => {
                    return Err(err(format!(
                        "expected a JSON object, found {}",
                        kind(&other)
                    )))
                }
            };
            let step = match map.get("step") {
                Some(Value::Number(n)) => n.as_f64().filter(|s| s.is_finite() && *s >= 0.0),
                _ => None,
            }
            .ok_or_else(|| err("no `step` (a number of at least 0)".into()))?;
            let mut values = BTreeMap::new();
            flatten("", &map, &mut values);
            values.remove("step");
            columns.extend(values.keys().cloned());
            rows.push(MetricsRow {
                line: i + 1,
                step,
                values,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            columns: columns.into_iter().collect(),
            rows,
            incomplete_line,
        })
    }

    pub fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }

    /// `(step, value)` of every row that has `column`, in file order.
    pub fn series(&self, column: &str) -> Vec<(f64, f64)> {
        self.rows
            .iter()
            .filter_map(|r| r.values.get(column).map(|&v| (r.step, v)))
            .collect()
    }

    /// The last value of `column`, with its step.
    pub fn last(&self, column: &str) -> Option<(f64, f64)> {
        self.series(column).last().copied()
    }

    /// The smallest value of `column`, with its step (the first such row on ties).
    pub fn min(&self, column: &str) -> Option<(f64, f64)> {
        self.series(column)
            .into_iter()
            .fold(None, |best: Option<(f64, f64)>, p| match best {
                Some(b) if b.1 <= p.1 => Some(b),
                _ => Some(p),
            })
    }
}

fn flatten(prefix: &str, map: &serde_json::Map<String, Value>, out: &mut BTreeMap<String, f64>) {
    for (k, v) in map {
        let key = format!("{prefix}{k}");
        match v {
            Value::Number(n) => {
                if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                    out.insert(key, x);
                }
            }
            Value::Object(inner) => flatten(&format!("{key}."), inner, out),
            _ => {}
        }
    }
}

/// What a JSON value is, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_nested_objects_and_nulls() {
        let text = "{\"step\": 10, \"loss\": 2.5, \"lr\": 0.001}\n\n\
                    {\"step\": 20, \"loss\": 2.0, \"eval\": {\"loss\": 1.5, \"roc_auc\": null}, \"note\": \"x\"}\n";
        let log = MetricsLog::parse(Path::new("m.jsonl"), text).unwrap();
        assert_eq!(log.columns, ["eval.loss", "loss", "lr"]);
        assert_eq!(log.rows.len(), 2);
        assert_eq!(log.rows[1].line, 3, "blank lines are skipped but counted");
        assert_eq!(log.series("loss"), [(10.0, 2.5), (20.0, 2.0)]);
        assert_eq!(log.series("eval.loss"), [(20.0, 1.5)]);
        assert!(!log.has("eval.roc_auc"), "null is no value");
        assert_eq!(log.min("loss"), Some((20.0, 2.0)));
        assert_eq!(log.last("lr"), Some((10.0, 0.001)));
    }

    #[test]
    fn an_unfinished_last_line_is_left_out() {
        let path = Path::new("stats.jsonl");
        let log = MetricsLog::parse(path, "{\"step\": 1, \"x\": 2}\n{\"step\": 2, \"x").unwrap();
        assert_eq!((log.rows.len(), log.incomplete_line), (1, Some(2)));
        // a whole last line without its newline yet is a row
        let log = MetricsLog::parse(path, "{\"step\": 1}\n{\"step\": 2}").unwrap();
        assert_eq!((log.rows.len(), log.incomplete_line), (2, None));
        // with its newline, a malformed last line is an error
        let e = MetricsLog::parse(path, "{\"step\": 1}\n{\"step\": 2, \"x\n").unwrap_err();
        assert!(
            e.to_string().starts_with("stats.jsonl:2: invalid JSON"),
            "{e}"
        );
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let path = Path::new("/runs/a/metrics.jsonl");
        for (text, line, what) in [
            (
                "{\"step\": 1}\n{\"step\": 2, \"loss\": \n",
                2,
                "invalid JSON",
            ),
            (
                "{\"step\": 1}\n\n[1, 2]\n",
                3,
                "expected a JSON object, found an array",
            ),
            ("{\"loss\": 1.0}\n", 1, "no `step`"),
            ("{\"step\": \"3\"}\n", 1, "no `step`"),
            ("{\"step\": -1}\n", 1, "no `step`"),
        ] {
            let e = MetricsLog::parse(path, text).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("/runs/a/metrics.jsonl:{line}: ")) && e.contains(what),
                "{text:?}: {e}"
            );
        }
    }
}
