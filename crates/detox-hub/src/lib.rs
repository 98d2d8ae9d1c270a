//! Hugging Face model directories: `config.json`, safetensors weights, `tokenizer.json`, peft
//! adapters, the sequence classifier ready to score texts ([`classifier`]), atomic writes, and
//! hub downloads into the standard HF cache.

pub mod adapter;
pub mod atomic;
pub mod classifier;
mod download;
pub mod dtype;
pub mod models;
pub mod save;
pub mod tokenizer;
pub mod value_head;
pub mod weights;

use std::path::{Path, PathBuf};

pub use adapter::{load_adapter, read_adapter_config, save_adapter, write_adapter_files};
pub use classifier::Classifier;
pub use models::{load_roberta, load_t5, read_config, roberta_name_map, t5_name_map, ModelInfo};
pub use save::{copy_companion_files, save_roberta, save_t5};
pub use tokenizer::{EncodedBatch, TextTokenizer};
pub use value_head::{load_value_head, save_value_head};
pub use weights::{read_safetensors_header, weight_files, TensorInfo};

/// Everything that can go wrong reading a model directory; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    Weights { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    #[error(
        "the disk is full (no space left on device) while saving {dir}: {cause}; {free} free, \
         {written} written before the failure{needed}; nothing of it is kept, earlier checkpoints \
         are untouched"
    )]
    DiskFull {
        dir: PathBuf,
        cause: String,
        free: String,
        written: String,
        needed: String,
    },
    #[error("cannot download `{file}` of `{id}` from {endpoint}: {msg}")]
    Download {
        id: String,
        file: String,
        endpoint: String,
        msg: String,
    },
    #[error("`{id}` is not (completely) in the Hugging Face cache at {} and HF_HUB_OFFLINE is set", cache.display())]
    Offline { id: String, cache: PathBuf },
    #[error("{var}: {msg}")]
    Setting { var: &'static str, msg: String },
}

impl HubError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            err: source,
        }
    }
}

/// A local directory as is; anything else is a hub id, downloaded (config, tokenizer, weights) to
/// the standard Hugging Face cache (`src/download.rs` describes the layout and the settings).
pub fn resolve_model(arg: &str) -> Result<PathBuf, HubError> {
    let path = Path::new(arg);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        return Err(HubError::Config {
            path: path.to_path_buf(),
            msg: "expected a model directory (with config.json), found a file".into(),
        });
    }
    if let Some(first) = local_first_component(path) {
        return Err(HubError::Config {
            path: path.to_path_buf(),
            msg: format!(
                "no such model directory ({} exists here, so this is taken as a local path, not a Hugging Face model id)",
                first.display()
            ),
        });
    }
    let looks_like_id = arg.split('/').count() <= 2
        && !arg.starts_with('.')
        && !arg.starts_with('/')
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if !looks_like_id {
        return Err(HubError::Config {
            path: path.to_path_buf(),
            msg: "no such directory, and not a Hugging Face model id".into(),
        });
    }
    download(arg)
}

/// The first component of a relative multi-component `path` when it exists locally
/// (`runs/lora` with a `runs/` here names a local directory, not the hub id `runs/lora`).
fn local_first_component(path: &Path) -> Option<PathBuf> {
    let mut parts = path.components();
    let std::path::Component::Normal(first) = parts.next()? else {
        return None;
    };
    parts.next()?;
    let first = Path::new(first);
    first.exists().then(|| first.to_path_buf())
}

/// Tokenizer files a model may lack (a 404 for them is no error).
const TOKENIZER_FILES: [&str; 3] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// The snapshot directory of hub model `id`: the cached one when it has `config.json` and the
/// weights (no network then), else downloaded (`config.json`, the tokenizer files there are,
/// `model.safetensors` or the shards its index lists).
fn download(id: &str) -> Result<PathBuf, HubError> {
    let hub = download::Hub::from_env(id)?;
    if let Some(dir) = cached_model(&hub) {
        return Ok(dir);
    }
    if hub.offline() {
        return Err(hub.not_cached());
    }
    let config = hub.fetch("config.json")?;
    for optional in TOKENIZER_FILES {
        hub.fetch_optional(optional)?;
    }
    if hub.fetch_optional("model.safetensors")?.is_none() {
        let index = hub
            .fetch_optional("model.safetensors.index.json")?
            .ok_or_else(|| {
                hub.error(
                    "model.safetensors",
                    "not found on the hub (404), nor model.safetensors.index.json",
                )
            })?;
        for shard in weights::index_shards(&index)? {
            hub.fetch(&shard)?;
        }
    }
    Ok(snapshot_dir(&config))
}

/// The cached snapshot of `main` when it has `config.json` and all the weights.
fn cached_model(hub: &download::Hub) -> Option<PathBuf> {
    let config = hub.cached("config.json")?;
    let weights = hub.cached("model.safetensors").is_some()
        || hub
            .cached("model.safetensors.index.json")
            .and_then(|index| weights::index_shards(&index).ok())
            .is_some_and(|shards| shards.iter().all(|s| hub.cached(s).is_some()));
    weights.then(|| snapshot_dir(&config))
}

fn snapshot_dir(config: &Path) -> PathBuf {
    config.parent().unwrap_or(Path::new(".")).to_path_buf()
}
