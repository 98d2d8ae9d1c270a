//! What can go wrong while reading a judgments file; every message names the file, and the line
//! where the problem is on one.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AgreementError {
    /// The file cannot be read.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line that is not one valid judgment: `msg` says what is wrong and what was expected.
    #[error("{}:{line}: {msg}", .path.display())]
    Line {
        path: PathBuf,
        /// 1-based.
        line: usize,
        msg: String,
    },
}

impl AgreementError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn line(path: &Path, line: usize, msg: String) -> Self {
        Self::Line {
            path: path.to_path_buf(),
            line,
            msg,
        }
    }
}
