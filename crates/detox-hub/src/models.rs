//! Building models from a directory: config, weights and their name maps, and the loaders with
//! dropout settings that training uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use detox_models::{
    LoraTarget, RobertaConfig, RobertaForSequenceClassification, T5Config,
    T5ForConditionalGeneration,
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
    load_t5_with(dir, |_| {}, device)
}

/// Loads a T5 checkpoint directory after `adjust` has changed its config (e.g. `dropout_rate`,
/// which the modules take at build time).
pub fn load_t5_with<B: Backend>(
    dir: &Path,
    adjust: impl FnOnce(&mut T5Config),
    device: &B::Device,
) -> Result<T5ForConditionalGeneration<B>, HubError> {
    let (mut config, files) = checked_t5_config(dir)?;
    adjust(&mut config);
    config.validate().map_err(|m| config_error(dir, m))?;
    let mut model = T5ForConditionalGeneration::new(&config, device);
    load_into(&mut model, &files, &t5_name_map(&config))?;
    model.use_out_in_layout();
    Ok(model)
}

/// Loads a T5 directory, optionally overriding `dropout_rate` (the modules take it at build
/// time): fine-tuning's `--dropout-rate`, and `Some(0.0)` for PPO, whose forward passes run with
/// dropout off.
pub fn load_t5_with_dropout<B: Backend>(
    dir: &Path,
    dropout_rate: Option<f64>,
    device: &B::Device,
) -> Result<T5ForConditionalGeneration<B>, HubError> {
    load_t5_with(
        dir,
        |c| {
            if let Some(p) = dropout_rate {
                c.dropout_rate = p;
            }
        },
        device,
    )
}

/// Sets the dropout of every LoRA adapter of `model` (peft's `lora_dropout`); [`load_adapter`]
/// builds adapters for inference (dropout 0), so a run that trains one sets its own here.
///
/// [`load_adapter`]: crate::adapter::load_adapter
pub fn set_lora_dropout<B: Backend>(model: &mut T5ForConditionalGeneration<B>, p: f64) {
    for (_, l) in model.lora_linears() {
        l.lora_dropout = detox_models::dropout::Dropout::new(p);
    }
}

/// Loads a RoBERTa sequence-classifier checkpoint directory.
pub fn load_roberta<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<RobertaForSequenceClassification<B>, HubError> {
    let (config, files) = checked_roberta_config(dir)?;
    let mut model = RobertaForSequenceClassification::new(&config, device);
    load_into(&mut model, &files, &roberta_name_map())?;
    model.use_out_in_layout();
    Ok(model)
}

/// `dir`'s T5 config, validated, its sizes checked against the weights' headers, and the weight
/// files: everything known before a model is allocated.
fn checked_t5_config(dir: &Path) -> Result<(T5Config, Vec<PathBuf>), HubError> {
    let c: T5Config = read_config(dir)?;
    let files = weight_files(dir)?;
    let shapes = header_shapes(&files)?;
    let bias = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";
    let heads = dim(&shapes, bias, 1);
    let q = dim(&shapes, "encoder.block.0.layer.0.SelfAttention.q.weight", 0);
    let ff = ["wi", "wi_0"].iter().find_map(|w| {
        dim(
            &shapes,
            &format!("encoder.block.0.layer.1.DenseReluDense.{w}.weight"),
            0,
        )
    });
    check_sizes(
        dir,
        &[
            (
                "vocab_size",
                c.vocab_size,
                dim(&shapes, "shared.weight", 0),
                "rows of shared.weight",
            ),
            (
                "d_model",
                c.d_model,
                dim(&shapes, "shared.weight", 1),
                "columns of shared.weight",
            ),
            (
                "num_layers",
                c.num_layers,
                blocks(&shapes, "encoder.block."),
                "encoder blocks",
            ),
            (
                "num_decoder_layers",
                c.decoder_layers(),
                blocks(&shapes, "decoder.block."),
                "decoder blocks",
            ),
            ("num_heads", c.num_heads, heads, "attention heads"),
            (
                "relative_attention_num_buckets",
                c.relative_attention_num_buckets,
                dim(&shapes, bias, 0),
                "position buckets",
            ),
            (
                "d_kv",
                c.d_kv,
                q.zip(heads).map(|(q, h)| q / h.max(1)),
                "query size per head",
            ),
            ("d_ff", c.d_ff, ff, "feed-forward size"),
        ],
        &files,
    )?;
    c.validate().map_err(|m| config_error(dir, m))?;
    Ok((c, files))
}

/// [`checked_t5_config`] for RoBERTa.
fn checked_roberta_config(dir: &Path) -> Result<(RobertaConfig, Vec<PathBuf>), HubError> {
    let c: RobertaConfig = read_config(dir)?;
    let files = weight_files(dir)?;
    let shapes = header_shapes(&files)?;
    let emb = |e: &str, axis| dim(&shapes, &format!("roberta.embeddings.{e}.weight"), axis);
    let labels = c.num_labels.unwrap_or(c.id2label.len().max(2));
    check_sizes(
        dir,
        &[
            (
                "vocab_size",
                c.vocab_size,
                emb("word_embeddings", 0),
                "rows of word_embeddings",
            ),
            (
                "hidden_size",
                c.hidden_size,
                emb("word_embeddings", 1),
                "columns of word_embeddings",
            ),
            (
                "max_position_embeddings",
                c.max_position_embeddings,
                emb("position_embeddings", 0),
                "rows of position_embeddings",
            ),
            (
                "type_vocab_size",
                c.type_vocab_size,
                emb("token_type_embeddings", 0),
                "rows of token_type_embeddings",
            ),
            (
                "num_hidden_layers",
                c.num_hidden_layers,
                blocks(&shapes, "roberta.encoder.layer."),
                "encoder layers",
            ),
            (
                "intermediate_size",
                c.intermediate_size,
                dim(
                    &shapes,
                    "roberta.encoder.layer.0.intermediate.dense.weight",
                    0,
                ),
                "intermediate size",
            ),
            (
                "num_labels",
                labels,
                dim(&shapes, "classifier.out_proj.weight", 0),
                "labels",
            ),
        ],
        &files,
    )?;
    c.validate().map_err(|m| config_error(dir, m))?;
    Ok((c, files))
}

/// Every tensor's shape in `files`, by name (headers only).
fn header_shapes(files: &[PathBuf]) -> Result<BTreeMap<String, Vec<usize>>, HubError> {
    let mut shapes = BTreeMap::new();
    for f in files {
        for t in read_safetensors_header(f)? {
            shapes.insert(t.name, t.shape);
        }
    }
    Ok(shapes)
}

fn dim(shapes: &BTreeMap<String, Vec<usize>>, name: &str, axis: usize) -> Option<usize> {
    shapes.get(name)?.get(axis).copied()
}

/// `1 +` the highest `N` of the tensors named `{prefix}N.…`.
fn blocks(shapes: &BTreeMap<String, Vec<usize>>, prefix: &str) -> Option<usize> {
    shapes
        .keys()
        .filter_map(|k| {
            k.strip_prefix(prefix)?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map(|n| n + 1)
}

/// How many times larger than the checkpoint's a config size may be before it is refused
/// outright; smaller mismatches are left to [`load_into`], which lists every tensor that does
/// not fit.
const SIZE_SLACK: usize = 4;

/// Refuses a config size (`field`, its value, the checkpoint's, what that counts) far beyond
/// what the checkpoint holds — before the model it describes is allocated.
fn check_sizes(
    dir: &Path,
    claims: &[(&str, usize, Option<usize>, &str)],
    files: &[PathBuf],
) -> Result<(), HubError> {
    for &(field, value, on_disk, what) in claims {
        let Some(n) = on_disk else { continue };
        if value > n.max(1).saturating_mul(SIZE_SLACK) {
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            return Err(config_error(
                dir,
                format!(
                    "`{field}` is {value}, but the weights ({}) have {n} {what}: the config does not belong to this checkpoint",
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(())
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
    let (architecture, parameters) = match model_type.as_str() {
        "t5" => {
            let (c, _) = checked_t5_config(dir)?;
            let arch = format!(
                "T5ForConditionalGeneration: d_model {}, {} heads x {}, d_ff {} ({}), {} encoder / {} decoder layers, vocab {}, {} head",
                c.d_model, c.num_heads, c.d_kv, c.d_ff, c.feed_forward_proj, c.num_layers, c.decoder_layers(), c.vocab_size,
                if c.tie_word_embeddings { "tied" } else { "untied" }
            );
            (arch, c.num_parameters())
        }
        "roberta" => {
            let (c, _) = checked_roberta_config(dir)?;
            let labels = c.labels().map_err(|m| config_error(dir, m))?;
            let arch = format!(
                "RobertaForSequenceClassification: hidden {}, {} layers, {} heads, intermediate {}, vocab {}, labels {:?}",
                c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size, c.vocab_size, labels
            );
            (arch, c.num_parameters())
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
