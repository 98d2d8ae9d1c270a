//! Burn modules → Hugging Face model directories (what `save_pretrained` writes).
//!
//! A T5 directory gets `config.json` and one `model.safetensors` with transformers' names
//! (`encoder.block.0.layer.0.SelfAttention.q.weight`) and PyTorch layouts (linear weights
//! `[out, in]`), f32, `format: pt` metadata. LoRA adapters are merged into their base weights
//! first and not written (peft's `merge_and_unload` + `save_pretrained`). As in transformers'
//! safetensors output, the embedding is stored once as `shared.weight` (the
//! `encoder/decoder.embed_tokens` copies are tied) and a tied head (`tie_word_embeddings`) has no
//! `lm_head.weight`. Files are written to a temporary sibling directory that replaces `dir` only
//! when complete.

use std::path::Path;

use burn::prelude::*;
use burn_store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, SafetensorsStore,
};
use detox_models::{LoraTarget, RobertaForSequenceClassification, T5ForConditionalGeneration};

use crate::atomic::write_dir_atomic;
use crate::models::{roberta_name_map_to_hf, t5_name_map_to_hf};
use crate::weights::LoraLinearLayout;
use crate::HubError;

/// Files of a model directory that are not weights or config and travel with a saved copy.
pub const COMPANION_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "spiece.model",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
];

/// `config.json` of `model` as transformers writes it for T5: every field of [`detox_models::T5Config`]
/// (with `num_decoder_layers` and `decoder_start_token_id` spelled out) plus `architectures`,
/// `model_type` and `is_encoder_decoder`.
pub fn t5_config_json<B: Backend>(model: &T5ForConditionalGeneration<B>) -> serde_json::Value {
    let c = &model.config;
    let mut v = serde_json::to_value(c).expect("serializable config");
    let obj = v.as_object_mut().expect("config is an object");
    obj.retain(|_, v| !v.is_null());
    obj.insert(
        "architectures".into(),
        serde_json::json!(["T5ForConditionalGeneration"]),
    );
    obj.insert(
        "model_type".into(),
        serde_json::json!(c.model_type.as_deref().unwrap_or("t5")),
    );
    obj.insert("is_encoder_decoder".into(), serde_json::json!(true));
    obj.insert(
        "num_decoder_layers".into(),
        serde_json::json!(c.decoder_layers()),
    );
    obj.insert(
        "decoder_start_token_id".into(),
        serde_json::json!(c.decoder_start_token_id()),
    );
    obj.insert("torch_dtype".into(), serde_json::json!("float32"));
    v
}

/// Writes `model` as a transformers T5 directory (`config.json` + `model.safetensors`) at `dir`,
/// atomically. LoRA adapters, if any, are merged into the written weights (the module itself is
/// not changed). `detox_hub::load_t5` reads the result back to the same logits.
pub fn save_t5<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    dir: &Path,
) -> Result<(), HubError> {
    write_dir_atomic(dir, |tmp| write_t5_files(model, tmp))
}

/// [`save_t5`] without the atomic directory swap: writes `config.json` and `model.safetensors`
/// into the existing directory `dir` (for callers that assemble a larger directory themselves).
pub fn write_t5_files<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    dir: &Path,
) -> Result<(), HubError> {
    let mut merged;
    let model = if has_unmerged_lora(model) {
        merged = model.clone();
        merged.merge_lora();
        &merged
    } else {
        model
    };
    write_weights_and_config(model, dir, t5_name_map_to_hf(), &t5_config_json(model))
}

/// `config.json` of a RoBERTa sequence classifier as transformers writes it: every field of
/// [`detox_models::RobertaConfig`] plus `architectures`, `model_type` and `label2id`, with
/// `id2label` holding the model's label names.
pub fn roberta_config_json<B: Backend>(
    model: &RobertaForSequenceClassification<B>,
) -> serde_json::Value {
    let mut v = serde_json::to_value(&model.config).expect("serializable config");
    let obj = v.as_object_mut().expect("config is an object");
    obj.retain(|_, v| !v.is_null());
    obj.remove("num_labels");
    let id2label: serde_json::Map<String, serde_json::Value> = model
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), serde_json::json!(l)))
        .collect();
    let label2id: serde_json::Map<String, serde_json::Value> = model
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), serde_json::json!(i)))
        .collect();
    obj.insert("id2label".into(), id2label.into());
    obj.insert("label2id".into(), label2id.into());
    obj.insert(
        "architectures".into(),
        serde_json::json!(["RobertaForSequenceClassification"]),
    );
    obj.insert(
        "model_type".into(),
        serde_json::json!(model.config.model_type.as_deref().unwrap_or("roberta")),
    );
    obj.insert("torch_dtype".into(), serde_json::json!("float32"));
    v
}

/// Writes `model` as a transformers `RobertaForSequenceClassification` directory (`config.json` +
/// `model.safetensors`) at `dir`, atomically. `detox_hub::load_roberta` reads it back to the same
/// logits.
pub fn save_roberta<B: Backend>(
    model: &RobertaForSequenceClassification<B>,
    dir: &Path,
) -> Result<(), HubError> {
    write_dir_atomic(dir, |tmp| write_roberta_files(model, tmp))
}

/// [`save_roberta`] into the existing directory `dir`, without the atomic swap.
pub fn write_roberta_files<B: Backend>(
    model: &RobertaForSequenceClassification<B>,
    dir: &Path,
) -> Result<(), HubError> {
    write_weights_and_config(
        model,
        dir,
        roberta_name_map_to_hf(),
        &roberta_config_json(model),
    )
}

/// `dir/model.safetensors` with transformers' names (`to_hf`) and PyTorch layouts, LoRA tensors
/// left out, `format: pt` metadata; and `dir/config.json`.
fn write_weights_and_config<B: Backend, M: ModuleSnapshot<B>>(
    model: &M,
    dir: &Path,
    to_hf: crate::weights::NameMap,
    config: &serde_json::Value,
) -> Result<(), HubError> {
    let file = dir.join("model.safetensors");
    let mut store = SafetensorsStore::from_file(&file)
        .with_predicate(|path, _| !path.contains(".lora_"))
        .with_to_adapter(BurnToPyTorchAdapter.chain(LoraLinearLayout))
        .remap(KeyRemapper::from_patterns(to_hf.remap).expect("name-map regex"))
        .clear_metadata()
        .metadata("format", "pt");
    model.save_into(&mut store).map_err(|e| HubError::Weights {
        path: file.clone(),
        msg: format!("cannot write weights: {e}"),
    })?;
    let cfg_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(config).expect("json");
    std::fs::write(&cfg_path, text + "\n").map_err(|e| HubError::io(&cfg_path, e))?;
    Ok(())
}

fn has_unmerged_lora<B: Backend>(model: &T5ForConditionalGeneration<B>) -> bool {
    let mut m = model.clone();
    m.lora_linears()
        .into_iter()
        .any(|(_, l)| l.is_adapted() && !l.is_merged())
}

/// Copies the [`COMPANION_FILES`] that exist in `from` (tokenizer, generation config) into `to`.
/// Returns the names copied.
pub fn copy_companion_files(from: &Path, to: &Path) -> Result<Vec<String>, HubError> {
    let mut copied = Vec::new();
    for name in COMPANION_FILES {
        let src = from.join(name);
        if src.is_file() {
            // Read and write rather than fs::copy, which would carry over a read-only mode.
            let bytes = std::fs::read(&src).map_err(|e| HubError::io(&src, e))?;
            let dst = to.join(name);
            std::fs::write(&dst, bytes).map_err(|e| HubError::io(&dst, e))?;
            copied.push(name.to_string());
        }
    }
    Ok(copied)
}
