//! What can go wrong in `detox annotate` and `detox annotations export`, each naming the file.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AnnotateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The items file is not one of the kinds `detox annotate` reads.
    #[error("{path}: {msg}")]
    Items { path: PathBuf, msg: String },
    #[error("{path}:{line}: {msg}")]
    ItemsLine {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{path}: {msg}")]
    Db { path: PathBuf, msg: String },
    #[error("{0}")]
    Server(String),
}

impl AnnotateError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        AnnotateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn items(path: &Path, msg: impl Into<String>) -> Self {
        AnnotateError::Items {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }

    pub fn items_line(path: &Path, line: usize, msg: impl Into<String>) -> Self {
        AnnotateError::ItemsLine {
            path: path.to_path_buf(),
            line,
            msg: msg.into(),
        }
    }

    pub fn db(path: &Path, msg: impl std::fmt::Display) -> Self {
        AnnotateError::Db {
            path: path.to_path_buf(),
            msg: msg.to_string(),
        }
    }
}
