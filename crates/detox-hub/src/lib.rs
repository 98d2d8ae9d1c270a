//! Hugging Face model directories: `config.json`, safetensors weights, `tokenizer.json`, and hub
//! downloads into the standard HF cache.

pub mod adapter;
pub mod atomic;
pub mod models;
pub mod save;
pub mod tokenizer;
pub mod value_head;
pub mod weights;

use std::path::{Path, PathBuf};

pub use adapter::{load_adapter, read_adapter_config, save_adapter, write_adapter_files};
pub use models::{load_roberta, load_t5, read_config, roberta_name_map, t5_name_map, ModelInfo};
pub use save::{copy_companion_files, save_t5};
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
    #[error("cannot download `{id}` from the Hugging Face hub: {msg}")]
    Download { id: String, msg: String },
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
/// the standard Hugging Face cache (`HF_HOME`, `HF_HUB_CACHE` are honoured by `hf-hub`).
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

fn download(id: &str) -> Result<PathBuf, HubError> {
    let err = |e: &dyn std::fmt::Display| HubError::Download {
        id: id.to_string(),
        msg: e.to_string(),
    };
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| err(&e))?;
    let repo = api.model(id.to_string());
    let config = repo.get("config.json").map_err(|e| err(&e))?;
    for optional in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        let _ = repo.get(optional);
    }
    match repo.get("model.safetensors") {
        Ok(_) => {}
        Err(_) => {
            let index = repo
                .get("model.safetensors.index.json")
                .map_err(|e| err(&format!("no model.safetensors and no index: {e}")))?;
            let text = std::fs::read_to_string(&index).map_err(|e| err(&e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(&e))?;
            let mut shards: Vec<&str> = v["weight_map"]
                .as_object()
                .map(|m| m.values().filter_map(|f| f.as_str()).collect())
                .unwrap_or_default();
            shards.sort_unstable();
            shards.dedup();
            for shard in shards {
                repo.get(shard).map_err(|e| err(&e))?;
            }
        }
    }
    Ok(config
        .parent()
        .expect("cached file has a parent")
        .to_path_buf())
}
