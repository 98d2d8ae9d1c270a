//! What stops `detox ppo` / `detox toxicity`.

use std::path::{Path, PathBuf};

use detox_hub::HubError;
use detox_rl::RlError;
use detox_train::data::DataError;
use detox_train::finetune::TrainError;
use detox_train::runlock::RunDirError;

/// Everything that stops `detox ppo` / `detox toxicity`; each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Data(#[from] DataError),
    /// Boxed: fine-tuning's error is large, and every lab function returns this one.
    #[error(transparent)]
    Train(Box<TrainError>),
    #[error("PPO step {step}: {err}")]
    Step { step: usize, err: RlError },
    #[error("{0}")]
    Config(String),
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error(transparent)]
    RunDir(#[from] RunDirError),
}

impl From<TrainError> for LabError {
    fn from(e: TrainError) -> Self {
        Self::Train(Box::new(e))
    }
}

/// Maps an I/O error on `path` to [`LabError::File`].
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |e| LabError::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}
