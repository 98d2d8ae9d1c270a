//! Labeled texts for sequence classification: a CSV or JSONL file with a text column and a label
//! column, raw labels mapped onto the model's label names (`0=hate,1=hate,2=nothate`), and the
//! fixed split by file position used for the tweets in `../shared`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One example: the text and the index of its label among the model's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledText {
    pub text: String,
    pub label: usize,
    /// 0-based data row in its file (the header of a CSV is not a row).
    pub position: usize,
}

/// What can be wrong with a labeled data file; each names the file (and row or field).
#[derive(Debug, thiserror::Error)]
pub enum LabeledDataError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("{path}: data row {row}: {msg}")]
    Row {
        path: PathBuf,
        row: usize,
        msg: String,
    },
    #[error("--label-map: {0}")]
    LabelMap(String),
}

/// Raw label values → label names. Empty: the raw value is the label name itself (or its index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelMap(BTreeMap<String, String>);

impl LabelMap {
    /// Parses `raw=name,raw=name,...` (e.g. `0=hate,1=hate,2=nothate`).
    pub fn parse(spec: &str) -> Result<Self, LabeledDataError> {
        let mut map = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (raw, name) = part
                .split_once('=')
                .ok_or_else(|| LabeledDataError::LabelMap(format!("`{part}` is not RAW=LABEL")))?;
            let (raw, name) = (raw.trim(), name.trim());
            if raw.is_empty() || name.is_empty() {
                return Err(LabeledDataError::LabelMap(format!(
                    "`{part}` has an empty side"
                )));
            }
            if map.insert(raw.to_string(), name.to_string()).is_some() {
                return Err(LabeledDataError::LabelMap(format!(
                    "raw label `{raw}` is mapped twice"
                )));
            }
        }
        Ok(Self(map))
    }

    /// Checks that every mapped name is one of `labels`.
    pub fn check(&self, labels: &[String]) -> Result<(), LabeledDataError> {
        for name in self.0.values() {
            if !labels.contains(name) {
                return Err(LabeledDataError::LabelMap(format!(
                    "label `{name}` is not one of the model's labels {labels:?}"
                )));
            }
        }
        Ok(())
    }

    /// The index in `labels` of raw value `raw`.
    pub fn index(&self, raw: &str, labels: &[String]) -> Result<usize, String> {
        let raw = raw.trim();
        let name = if self.0.is_empty() {
            raw
        } else {
            self.0.get(raw).map(String::as_str).ok_or_else(|| {
                format!(
                    "label `{raw}` is not in --label-map (it maps {:?})",
                    self.0.keys().collect::<Vec<_>>()
                )
            })?
        };
        if let Some(i) = labels.iter().position(|l| l == name) {
            return Ok(i);
        }
        match name.parse::<usize>() {
            Ok(i) if self.0.is_empty() && i < labels.len() => Ok(i),
            _ => Err(format!(
                "label `{name}` is not one of the model's labels {labels:?}"
            )),
        }
    }
}

/// The columns to read.
#[derive(Debug, Clone)]
pub struct Columns {
    pub text: String,
    pub label: String,
}

/// Reads `path` (CSV with a header row, or JSONL when the name ends in `.jsonl`/`.json`).
pub fn read_labeled(
    path: &Path,
    columns: &Columns,
    map: &LabelMap,
    labels: &[String],
) -> Result<Vec<LabeledText>, LabeledDataError> {
    map.check(labels)?;
    let text = std::fs::read_to_string(path).map_err(|err| LabeledDataError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let is_jsonl = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("json"));
    let rows = if is_jsonl {
        jsonl_rows(path, &text, columns)?
    } else {
        csv_rows(path, &text, columns)?
    };
    if rows.is_empty() {
        return Err(LabeledDataError::Format {
            path: path.to_path_buf(),
            msg: "no data rows".into(),
        });
    }
    rows.into_iter()
        .enumerate()
        .map(|(position, (text, raw))| {
            let label = map
                .index(&raw, labels)
                .map_err(|msg| LabeledDataError::Row {
                    path: path.to_path_buf(),
                    row: position,
                    msg,
                })?;
            Ok(LabeledText {
                text,
                label,
                position,
            })
        })
        .collect()
}

fn csv_rows(
    path: &Path,
    text: &str,
    columns: &Columns,
) -> Result<Vec<(String, String)>, LabeledDataError> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let format = |msg: String| LabeledDataError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let header = reader
        .headers()
        .map_err(|e| format(format!("cannot read the CSV header: {e}")))?
        .clone();
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            format(format!(
                "no column `{name}` (columns: {:?})",
                header.iter().collect::<Vec<_>>()
            ))
        })
    };
    let (t, l) = (col(&columns.text)?, col(&columns.label)?);
    let mut out = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| LabeledDataError::Row {
            path: path.to_path_buf(),
            row,
            msg: format!("not valid CSV: {e}"),
        })?;
        let field = |i: usize, name: &str| {
            record
                .get(i)
                .map(str::to_string)
                .ok_or_else(|| LabeledDataError::Row {
                    path: path.to_path_buf(),
                    row,
                    msg: format!("no `{name}` field"),
                })
        };
        out.push((field(t, &columns.text)?, field(l, &columns.label)?));
    }
    Ok(out)
}

fn jsonl_rows(
    path: &Path,
    text: &str,
    columns: &Columns,
) -> Result<Vec<(String, String)>, LabeledDataError> {
    let mut out = Vec::new();
    for (row, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let err = |msg: String| LabeledDataError::Row {
            path: path.to_path_buf(),
            row,
            msg,
        };
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| err(format!("not JSON: {e}")))?;
        let get = |name: &str| match v.get(name) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
            Some(serde_json::Value::Bool(b)) => Ok(b.to_string()),
            Some(_) => Err(err(format!("`{name}` is not a string or number"))),
            None => Err(err(format!("no `{name}` field"))),
        };
        out.push((get(&columns.text)?, get(&columns.label)?));
    }
    Ok(out)
}

/// A part of the fixed split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Train,
    Validation,
    Test,
}

/// The fixed split by 0-based data-row position: `p % 10 == 0` test, `p % 10 == 1` validation,
/// the rest train (`../shared/README.md`).
pub fn part_by_position(position: usize) -> Part {
    match position % 10 {
        0 => Part::Test,
        1 => Part::Validation,
        _ => Part::Train,
    }
}

/// `(train, validation, test)` of `rows` by [`part_by_position`].
pub fn split_by_position(
    rows: Vec<LabeledText>,
) -> (Vec<LabeledText>, Vec<LabeledText>, Vec<LabeledText>) {
    let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        match part_by_position(r.position) {
            Part::Train => train.push(r),
            Part::Validation => val.push(r),
            Part::Test => test.push(r),
        }
    }
    (train, val, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["nothate".into(), "hate".into()]
    }

    fn write(name: &str, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("detox-labeled-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    fn cols() -> Columns {
        Columns {
            text: "tweet".into(),
            label: "class".into(),
        }
    }

    #[test]
    fn the_tweet_mapping_sends_hate_and_offensive_to_hate() {
        let map = LabelMap::parse("0=hate, 1=hate,2=nothate").unwrap();
        let l = labels();
        assert_eq!(map.index("0", &l), Ok(1));
        assert_eq!(map.index("1", &l), Ok(1));
        assert_eq!(map.index("2", &l), Ok(0));
        assert!(map
            .index("3", &l)
            .unwrap_err()
            .contains("not in --label-map"));
        assert!(LabelMap::parse("0=hate,0=nothate").is_err());
        assert!(LabelMap::parse("0hate").is_err());
        let bad = LabelMap::parse("0=toxic").unwrap();
        assert!(bad.check(&l).unwrap_err().to_string().contains("toxic"));
        // Without a map, names and indices both work.
        let none = LabelMap::default();
        assert_eq!(none.index("hate", &l), Ok(1));
        assert_eq!(none.index("0", &l), Ok(0));
        assert!(none.index("5", &l).is_err());
    }

    #[test]
    fn csv_with_quoted_commas_and_jsonl_read_alike() {
        let csv = write(
            "t.csv",
            ",count,class,tweet\n0,3,2,\"hello, world\"\n1,3,0,\"you \"\"are\"\" bad\"\n",
        );
        let map = LabelMap::parse("0=hate,1=hate,2=nothate").unwrap();
        let rows = read_labeled(&csv, &cols(), &map, &labels()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].text, "hello, world");
        assert_eq!(rows[0].label, 0);
        assert_eq!(rows[1].text, "you \"are\" bad");
        assert_eq!((rows[1].label, rows[1].position), (1, 1));
        let jsonl = write(
            "t.jsonl",
            "{\"tweet\": \"hello, world\", \"class\": 2}\n\n{\"tweet\": \"you \\\"are\\\" bad\", \"class\": \"0\"}\n",
        );
        assert_eq!(
            read_labeled(&jsonl, &cols(), &map, &labels()).unwrap(),
            rows
        );
    }

    #[test]
    fn bad_files_name_the_column_or_row() {
        let map = LabelMap::parse("0=hate,1=hate,2=nothate").unwrap();
        let no_col = write("c.csv", "text,label\nhi,2\n");
        let e = read_labeled(&no_col, &cols(), &map, &labels())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.csv") && e.contains("no column `tweet`"),
            "{e}"
        );
        let bad_label = write("b.csv", "tweet,class\nhi,2\nho,7\n");
        let e = read_labeled(&bad_label, &cols(), &map, &labels())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.csv") && e.contains("data row 1") && e.contains("`7`"),
            "{e}"
        );
        let empty = write("e.csv", "tweet,class\n");
        assert!(read_labeled(&empty, &cols(), &map, &labels())
            .unwrap_err()
            .to_string()
            .contains("no data rows"));
        let not_json = write("n.jsonl", "{\"tweet\": 1, \"class\": 2}\nnope\n");
        let e = read_labeled(&not_json, &cols(), &map, &labels())
            .unwrap_err()
            .to_string();
        assert!(e.contains("data row 1") && e.contains("not JSON"), "{e}");
    }

    #[test]
    fn the_split_is_by_position_mod_ten() {
        assert_eq!(part_by_position(0), Part::Test);
        assert_eq!(part_by_position(10), Part::Test);
        assert_eq!(part_by_position(1), Part::Validation);
        assert_eq!(part_by_position(21), Part::Validation);
        for p in [2, 3, 9, 12, 19] {
            assert_eq!(part_by_position(p), Part::Train);
        }
        let rows: Vec<LabeledText> = (0..25)
            .map(|p| LabeledText {
                text: p.to_string(),
                label: 0,
                position: p,
            })
            .collect();
        let (train, val, test) = split_by_position(rows);
        assert_eq!((train.len(), val.len(), test.len()), (19, 3, 3));
        assert_eq!(
            test.iter().map(|r| r.position).collect::<Vec<_>>(),
            vec![0, 10, 20]
        );
        assert_eq!(
            val.iter().map(|r| r.position).collect::<Vec<_>>(),
            vec![1, 11, 21]
        );
    }
}
