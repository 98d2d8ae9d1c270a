//! Building models from a directory: config, weights and their name maps.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use detox_models::{
    RobertaConfig, RobertaForSequenceClassification, T5Config, T5ForConditionalGeneration,
};
use serde::de::DeserializeOwned;

use crate::weights::{load_into, read_safetensors_header, weight_files, NameMap, TensorInfo};
use crate::HubError;

/// Parses `dir/config.json` into `T`.
pub fn read_config<T: DeserializeOwned>(dir: &Path) -> Result<T, HubError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| HubError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| HubError::Config {
        path,
        msg: format!("not a valid config: {e}"),
    })
}

/// `model_type` of `dir/config.json`.
pub fn model_type(dir: &Path) -> Result<String, HubError> {
    let v: serde_json::Value = read_config(dir)?;
    v["model_type"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| HubError::Config {
            path: dir.join("config.json"),
            msg: "missing the `model_type` field".into(),
        })
}

fn config_error(dir: &Path, msg: String) -> HubError {
    HubError::Config {
        path: dir.join("config.json"),
        msg,
    }
}

/// HF T5 names → ours: `layer.N` is the field `layer_N`. Tied copies of the embedding are skipped.
pub fn t5_name_map(config: &T5Config) -> NameMap {
    let mut ignore = vec![r"^(encoder|decoder)\.embed_tokens\.weight$".to_string()];
    if config.tie_word_embeddings {
        ignore.push(r"^lm_head\.weight$".to_string());
    }
    NameMap {
        remap: vec![(r"\.layer\.(\d+)\.".into(), ".layer_$1.".into())],
        ignore,
    }
}

/// Ours → HF T5 names (for saving).
pub fn t5_name_map_to_hf() -> NameMap {
    NameMap {
        remap: vec![(r"\.layer_(\d+)\.".into(), ".layer.$1.".into())],
        ignore: vec![],
    }
}

/// Ours → HF RoBERTa names (for saving).
pub fn roberta_name_map_to_hf() -> NameMap {
    NameMap {
        remap: vec![
            (r"\.attention\.self_\.".into(), ".attention.self.".into()),
            (r"LayerNorm\.gamma$".into(), "LayerNorm.weight".into()),
            (r"LayerNorm\.beta$".into(), "LayerNorm.bias".into()),
        ],
        ignore: vec![],
    }
}

/// HF RoBERTa names → ours: `attention.self` is `attention.self_`, and burn's `LayerNorm` calls
/// its parameters `gamma`/`beta` (torch: `weight`/`bias`). The position-id buffer and an
/// unused pooler (not part of `RobertaForSequenceClassification`) are skipped, as transformers does.
pub fn roberta_name_map() -> NameMap {
    NameMap {
        remap: vec![
            (r"\.attention\.self\.".into(), ".attention.self_.".into()),
            (r"LayerNorm\.weight$".into(), "LayerNorm.gamma".into()),
            (r"LayerNorm\.bias$".into(), "LayerNorm.beta".into()),
        ],
        ignore: vec![
            r"embeddings\.position_ids$".into(),
            r"^roberta\.pooler\.".into(),
        ],
    }
}

/// Loads a T5 checkpoint directory.
pub fn load_t5<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<T5ForConditionalGeneration<B>, HubError> {
    let config: T5Config = read_config(dir)?;
    config.validate().map_err(|m| config_error(dir, m))?;
    let files = weight_files(dir)?;
    let mut model = T5ForConditionalGeneration::new(&config, device);
    load_into(&mut model, &files, &t5_name_map(&config))?;
    Ok(model)
}

/// Loads a RoBERTa sequence-classifier checkpoint directory.
pub fn load_roberta<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<RobertaForSequenceClassification<B>, HubError> {
    let config: RobertaConfig = read_config(dir)?;
    config.validate().map_err(|m| config_error(dir, m))?;
    let files = weight_files(dir)?;
    let mut model = RobertaForSequenceClassification::new(&config, device);
    load_into(&mut model, &files, &roberta_name_map())?;
    Ok(model)
}

/// What `detox inspect` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub model_type: String,
    pub architecture: String,
    pub parameters: usize,
    pub dtypes: Vec<String>,
    pub tensors: Vec<(String, String, Vec<usize>)>,
    pub files: Vec<String>,
}

/// Architecture summary, parameter count (from the config's shapes) and the tensors on disk.
pub fn inspect(dir: &Path) -> Result<ModelInfo, HubError> {
    let model_type = model_type(dir)?;
    let device = burn::backend::ndarray::NdArrayDevice::Cpu;
    type Cpu = burn::backend::NdArray<f32>;
    let (architecture, parameters) = match model_type.as_str() {
        "t5" => {
            let c: T5Config = read_config(dir)?;
            c.validate().map_err(|m| config_error(dir, m))?;
            let arch = format!(
                "T5ForConditionalGeneration: d_model {}, {} heads x {}, d_ff {} ({}), {} encoder / {} decoder layers, vocab {}, {} head",
                c.d_model, c.num_heads, c.d_kv, c.d_ff, c.feed_forward_proj, c.num_layers, c.decoder_layers(), c.vocab_size,
                if c.tie_word_embeddings { "tied" } else { "untied" }
            );
            (
                arch,
                T5ForConditionalGeneration::<Cpu>::new(&c, &device).num_params(),
            )
        }
        "roberta" => {
            let c: RobertaConfig = read_config(dir)?;
            c.validate().map_err(|m| config_error(dir, m))?;
            let labels = c.labels().map_err(|m| config_error(dir, m))?;
            let arch = format!(
                "RobertaForSequenceClassification: hidden {}, {} layers, {} heads, intermediate {}, vocab {}, labels {:?}",
                c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size, c.vocab_size, labels
            );
            (
                arch,
                RobertaForSequenceClassification::<Cpu>::new(&c, &device).num_params(),
            )
        }
        other => {
            return Err(config_error(
                dir,
                format!("model_type `{other}` is not supported (expected `t5` or `roberta`)"),
            ))
        }
    };
    let files = weight_files(dir)?;
    let mut tensors: Vec<TensorInfo> = Vec::new();
    for f in &files {
        tensors.extend(read_safetensors_header(f)?);
    }
    let mut dtypes: Vec<String> = tensors.iter().map(|t| t.dtype.clone()).collect();
    dtypes.sort();
    dtypes.dedup();
    Ok(ModelInfo {
        model_type,
        architecture,
        parameters,
        dtypes,
        tensors: tensors
            .into_iter()
            .map(|t| (t.name, t.dtype, t.shape))
            .collect(),
        files: files.iter().map(|f| f.display().to_string()).collect(),
    })
}
