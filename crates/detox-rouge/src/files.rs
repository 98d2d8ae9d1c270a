//! Reading what is scored: prediction/reference pairs from a JSONL file, or from two text files
//! with one text per line. Bad input is a [`FileError`] naming the file (and line) and what was
//! expected.

use std::path::{Path, PathBuf};

/// One prediction/reference pair read from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub prediction: String,
    pub reference: String,
}

/// The JSON object each line of a pairs file holds.
const PAIR_SHAPE: &str = r#"{"prediction": "...", "reference": "..."}"#;

/// Why an input file could not be read as examples.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: cannot read file (expected UTF-8 text)", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: invalid JSON; expected an object {shape}", .path.display(), shape = PAIR_SHAPE)]
    InvalidJson {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}:{line}: expected a JSON object {shape}", .path.display(), shape = PAIR_SHAPE)]
    NotAnObject { path: PathBuf, line: usize },
    #[error("{}:{line}: field \"{field}\" must be a string, found {found}", .path.display())]
    NotAString {
        path: PathBuf,
        line: usize,
        field: &'static str,
        found: String,
    },
    #[error("{}:{line}: missing field \"{field}\" (expected a string)", .path.display())]
    MissingField {
        path: PathBuf,
        line: usize,
        field: &'static str,
    },
    #[error("{}: no examples; expected one {shape} object per line", .path.display(), shape = PAIR_SHAPE)]
    NoExamples { path: PathBuf },
    /// `what` is `predictions` or `references`.
    #[error("{}: no {what}; expected one text per line", .path.display())]
    NoLines { path: PathBuf, what: &'static str },
    /// The files' line counts differ: line `unmatched_line` of `longer` has no counterpart in
    /// `shorter`.
    #[error(
        "{} has {prediction_lines} lines but {} has {reference_lines}; expected one text per \
         line in both, aligned ({}:{unmatched_line} has no counterpart in {})",
        .predictions.display(),
        .references.display(),
        .longer.display(),
        .shorter.display()
    )]
    LineCounts {
        predictions: PathBuf,
        prediction_lines: usize,
        references: PathBuf,
        reference_lines: usize,
        longer: PathBuf,
        shorter: PathBuf,
        unmatched_line: usize,
    },
}

/// The file's text without a leading byte-order mark.
fn read_text(path: &Path) -> Result<String, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// JSONL: one `{"prediction": string, "reference": string}` object per non-blank line (other
/// fields are ignored); at least one.
pub fn read_pairs(path: &Path) -> Result<Vec<Example>, FileError> {
    let text = read_text(path)?;
    let mut examples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if !line.trim().is_empty() {
            examples.push(parse_pair(path, n + 1, line)?);
        }
    }
    if examples.is_empty() {
        return Err(FileError::NoExamples {
            path: path.to_path_buf(),
        });
    }
    Ok(examples)
}

/// Line `line` (1-based) of the pairs file `path`.
fn parse_pair(path: &Path, line: usize, text: &str) -> Result<Example, FileError> {
    let path = || path.to_path_buf();
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| FileError::InvalidJson {
            path: path(),
            line,
            source,
        })?;
    let Some(object) = value.as_object() else {
        return Err(FileError::NotAnObject { path: path(), line });
    };
    let field = |field: &'static str| match object.get(field) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(FileError::NotAString {
            path: path(),
            line,
            field,
            found: other.to_string(),
        }),
        None => Err(FileError::MissingField {
            path: path(),
            line,
            field,
        }),
    };
    Ok(Example {
        prediction: field("prediction")?,
        reference: field("reference")?,
    })
}

/// Two text files, one text per line, the same number of lines (at least one).
pub fn read_parallel(predictions: &Path, references: &Path) -> Result<Vec<Example>, FileError> {
    let p_text = read_text(predictions)?;
    let r_text = read_text(references)?;
    let p: Vec<&str> = p_text.lines().collect();
    let r: Vec<&str> = r_text.lines().collect();
    for (lines, path, what) in [
        (&p, predictions, "predictions"),
        (&r, references, "references"),
    ] {
        if lines.is_empty() {
            return Err(FileError::NoLines {
                path: path.to_path_buf(),
                what,
            });
        }
    }
    if p.len() != r.len() {
        let (shorter, longer) = if p.len() < r.len() {
            (predictions, references)
        } else {
            (references, predictions)
        };
        return Err(FileError::LineCounts {
            predictions: predictions.to_path_buf(),
            prediction_lines: p.len(),
            references: references.to_path_buf(),
            reference_lines: r.len(),
            longer: longer.to_path_buf(),
            shorter: shorter.to_path_buf(),
            unmatched_line: p.len().min(r.len()) + 1,
        });
    }
    Ok(p.into_iter()
        .zip(r)
        .map(|(p, r)| Example {
            prediction: p.to_string(),
            reference: r.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A file with `content` in a fresh temporary directory.
    fn temp_file(name: &str, content: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "detox-rouge-files-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn example(prediction: &str, reference: &str) -> Example {
        Example {
            prediction: prediction.into(),
            reference: reference.into(),
        }
    }

    fn pairs_error(name: &str, content: &str) -> String {
        read_pairs(&temp_file(name, content))
            .expect_err("expected an error")
            .to_string()
    }

    #[test]
    fn pairs_skip_blank_lines_and_other_fields() {
        let path = temp_file(
            "pairs.jsonl",
            "\u{feff}{\"prediction\": \"a b\", \"reference\": \"c\", \"id\": 1}\n\
             \n  \n\
             {\"reference\": \"x\\ny\", \"prediction\": \"z\"}\n",
        );
        assert_eq!(
            read_pairs(&path).unwrap(),
            [example("a b", "c"), example("z", "x\ny")]
        );
    }

    #[test]
    fn parallel_files_pair_lines_and_accept_crlf() {
        let p = temp_file("pred.txt", "\u{feff}one\ntwo\n");
        let r = temp_file("ref.txt", "uno\r\ndos\r\n");
        assert_eq!(
            read_parallel(&p, &r).unwrap(),
            [example("one", "uno"), example("two", "dos")]
        );
    }

    #[test]
    fn bad_pairs_are_reported_with_file_and_line() {
        let missing = std::env::temp_dir().join("detox-rouge-no-such-file.jsonl");
        let err = read_pairs(&missing).unwrap_err();
        let e = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(
            e.contains("detox-rouge-no-such-file.jsonl: cannot read file (expected UTF-8 text): "),
            "{e}"
        );

        let good = r#"{"prediction": "a", "reference": "b"}"#;
        let e = pairs_error("bad.jsonl", &format!("{good}\n{{\"prediction\": \"a\", \n"));
        assert!(
            e.ends_with(
                r#"bad.jsonl:2: invalid JSON; expected an object {"prediction": "...", "reference": "..."}"#
            ),
            "{e}"
        );
        let e = pairs_error(
            "missing.jsonl",
            &format!("{good}\n\n{{\"prediction\": \"a\"}}\n"),
        );
        assert!(
            e.ends_with(r#"missing.jsonl:3: missing field "reference" (expected a string)"#),
            "{e}"
        );
        let e = pairs_error("type.jsonl", "{\"prediction\": 3, \"reference\": \"b\"}\n");
        assert!(
            e.ends_with(r#"type.jsonl:1: field "prediction" must be a string, found 3"#),
            "{e}"
        );
        let e = pairs_error("array.jsonl", "[\"a\", \"b\"]\n");
        assert!(
            e.ends_with(
                r#"array.jsonl:1: expected a JSON object {"prediction": "...", "reference": "..."}"#
            ),
            "{e}"
        );
        let e = pairs_error("empty.jsonl", "\n  \n");
        assert!(
            e.ends_with(
                r#"empty.jsonl: no examples; expected one {"prediction": "...", "reference": "..."} object per line"#
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_parallel_files_are_reported() {
        let p = temp_file("p.txt", "one\ntwo\nthree\n");
        let r = temp_file("r.txt", "one\ntwo\n");
        let e = read_parallel(&p, &r).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{p} has 3 lines but {r} has 2; expected one text per line in both, aligned \
                 ({p}:3 has no counterpart in {r})",
                p = p.display(),
                r = r.display()
            )
        );
        let e = read_parallel(&r, &p).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "({}:3 has no counterpart in {})",
                p.display(),
                r.display()
            )),
            "{e}"
        );

        let empty = temp_file("r_empty.txt", "");
        let e = read_parallel(&p, &empty).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: no references; expected one text per line",
                empty.display()
            )
        );
        let e = read_parallel(&empty, &p).unwrap_err().to_string();
        assert!(
            e.ends_with("r_empty.txt: no predictions; expected one text per line"),
            "{e}"
        );
    }
}
