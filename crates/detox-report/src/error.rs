//! What can go wrong while reading run directories and drawing the report; every message names
//! the directory or file (and line) it is about.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A directory given on the command line holds no run that the report knows.
    #[error(
        "{}: no run found (expected metrics.jsonl of a fine-tuning run, stats.jsonl / \
         toxicity.json / comparison.json of a PPO run, or evaluation.json of `detox evaluate`, \
         in the directory or in one of its subdirectories)",
        .dir.display()
    )]
    NoRun { dir: PathBuf },
    #[error("{}: no such directory", .path.display())]
    Missing { path: PathBuf },
    #[error("{}: not a directory", .path.display())]
    NotADirectory { path: PathBuf },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line of a JSONL file that is not a JSON object with a numeric `step`.
    #[error("{}:{line}: {msg}", .path.display())]
    JsonlLine {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// A JSON file that does not hold what its writer writes.
    #[error("{}: {msg}", .path.display())]
    Json { path: PathBuf, msg: String },
    /// plotters failed to draw a chart (not expected with the SVG backend, which writes to a
    /// string).
    #[error("drawing the chart `{chart}`: {msg}")]
    Chart { chart: String, msg: String },
}

impl ReportError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
