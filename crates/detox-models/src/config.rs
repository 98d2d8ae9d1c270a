//! Model configurations, parsed from Hugging Face `config.json` files.
//!
//! Field names are the ones transformers writes, so a `config.json` deserializes directly.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn default_true() -> bool {
    true
}
fn default_num_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
/// A dropout probability must lie in `[0, 1]`.
fn probability(name: &str, p: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("`{name}` is {p}, expected a probability in [0, 1]"))
    }
}

fn default_dropout() -> f64 {
    0.1
}
fn default_t5_eps() -> f64 {
    1e-6
}
fn default_ff_proj() -> String {
    "relu".to_string()
}
fn default_eos() -> u32 {
    1
}
fn default_factor() -> f64 {
    1.0
}
fn default_init_range() -> f64 {
    0.02
}

/// `T5Config` of transformers (also used by FLAN-T5 and T5 v1.1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct T5Config {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    #[serde(default)]
    pub num_decoder_layers: Option<usize>,
    pub num_heads: usize,
    #[serde(default = "default_num_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "default_dropout")]
    pub dropout_rate: f64,
    #[serde(default = "default_t5_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_ff_proj")]
    pub feed_forward_proj: String,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
    #[serde(default)]
    pub decoder_start_token_id: Option<u32>,
    /// Scale of every initial weight's standard deviation (`_init_weights`; only `detox init`
    /// reads it).
    #[serde(default = "default_factor")]
    pub initializer_factor: f64,
}

/// The activation of T5's feed-forward block, from `feed_forward_proj`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T5Activation {
    Relu,
    /// Exact (erf) GELU.
    Gelu,
    /// The tanh approximation (`gelu_new`), which transformers uses for `"gated-gelu"`.
    GeluNew,
    Silu,
}

impl T5Config {
    pub fn decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    pub fn decoder_start_token_id(&self) -> u32 {
        self.decoder_start_token_id.unwrap_or(self.pad_token_id)
    }

    /// `(is_gated, activation)` as transformers derives them from `feed_forward_proj`.
    pub fn ff_activation(&self) -> Result<(bool, T5Activation), String> {
        let proj = self.feed_forward_proj.as_str();
        let (gated, act) = match proj.strip_prefix("gated-") {
            Some(act) => (true, act),
            None => (false, proj),
        };
        let act = match act {
            "relu" => T5Activation::Relu,
            // transformers: `if feed_forward_proj == "gated-gelu": dense_act_fn = "gelu_new"`.
            "gelu" if gated => T5Activation::GeluNew,
            "gelu" => T5Activation::Gelu,
            "gelu_new" => T5Activation::GeluNew,
            "silu" | "swish" => T5Activation::Silu,
            _ => {
                return Err(format!(
                    "feed_forward_proj `{proj}` is not supported (expected `relu`, `gelu`, `gated-gelu`, `gated-relu`, `silu` or `gated-silu`)"
                ))
            }
        };
        Ok((gated, act))
    }

    /// The number of parameters of the `T5ForConditionalGeneration` this config describes (no
    /// LoRA), counted from its shapes without building it: the shared embedding, q/k/v/o of
    /// every attention (the first self-attention layer of each stack also has the relative
    /// position table), the feed-forward weights (two input projections when gated), one RMS
    /// norm per sub-layer and per stack, and the LM head unless it is tied. Saturates at
    /// `usize::MAX`.
    pub fn num_parameters(&self) -> usize {
        let mul = |a: usize, b: usize| a.saturating_mul(b);
        let d = self.d_model;
        let gated = self.feed_forward_proj.starts_with("gated-");
        let attention = mul(4, mul(d, mul(self.num_heads, self.d_kv)));
        let position_table = mul(self.relative_attention_num_buckets, self.num_heads);
        let feed_forward = mul(if gated { 3 } else { 2 }, mul(d, self.d_ff));
        // A stack: its blocks, one position table, the final norm.
        let stack = |layers: usize, attentions: usize| {
            let block = mul(attentions, attention.saturating_add(d))
                .saturating_add(feed_forward)
                .saturating_add(d);
            let table = if layers > 0 { position_table } else { 0 };
            mul(layers, block).saturating_add(table).saturating_add(d)
        };
        let embedding = mul(self.vocab_size, d);
        let head = if self.tie_word_embeddings {
            0
        } else {
            embedding
        };
        embedding
            .saturating_add(stack(self.num_layers, 1))
            .saturating_add(stack(self.decoder_layers(), 2))
            .saturating_add(head)
    }

    /// Checks the values a model cannot be built from.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.model_type {
            if t != "t5" && t != "mt5" {
                return Err(format!(
                    "model_type `{t}` is not a T5 model (expected `t5`)"
                ));
            }
        }
        self.ff_activation()?;
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_heads", self.num_heads),
            ("num_layers", self.num_layers),
            (
                "relative_attention_num_buckets",
                self.relative_attention_num_buckets,
            ),
        ] {
            if v == 0 {
                return Err(format!("`{name}` must be greater than 0"));
            }
        }
        probability("dropout_rate", self.dropout_rate)?;
        Ok(())
    }
}

fn default_ln_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".to_string()
}
fn default_one() -> usize {
    1
}
fn default_pad_one() -> u32 {
    1
}

/// `RobertaConfig` of transformers (sequence classification fields included).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RobertaConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    #[serde(default = "default_one")]
    pub type_vocab_size: usize,
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_pad_one")]
    pub pad_token_id: u32,
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Label names by class index; the keys are strings in `config.json`.
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// Standard deviation of the initial weights (`_init_weights`; only `detox init` reads it).
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
}

impl RobertaConfig {
    /// The number of classes: `num_labels`, else the size of `id2label`, else 2 (as
    /// transformers).
    pub fn num_classes(&self) -> usize {
        self.num_labels.unwrap_or(if self.id2label.is_empty() {
            2
        } else {
            self.id2label.len()
        })
    }

    /// Label names ordered by class index (`LABEL_i` when the config has none, as transformers).
    pub fn labels(&self) -> Result<Vec<String>, String> {
        let n = self.num_classes();
        let mut labels: Vec<String> = (0..n).map(|i| format!("LABEL_{i}")).collect();
        for (k, v) in &self.id2label {
            let i: usize = k
                .parse()
                .map_err(|_| format!("id2label key `{k}` is not a class index"))?;
            if i >= n {
                return Err(format!(
                    "id2label has index {i} but the model has {n} labels"
                ));
            }
            labels[i] = v.clone();
        }
        Ok(labels)
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.model_type {
            if t != "roberta" && t != "xlm-roberta" {
                return Err(format!(
                    "model_type `{t}` is not a RoBERTa model (expected `roberta`)"
                ));
            }
        }
        if !matches!(self.hidden_act.as_str(), "gelu" | "relu" | "gelu_new") {
            return Err(format!(
                "hidden_act `{}` is not supported (expected `gelu`, `gelu_new` or `relu`)",
                self.hidden_act
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.max_position_embeddings <= self.pad_token_id as usize + 1 {
            return Err("max_position_embeddings must exceed pad_token_id + 1".into());
        }
        self.labels()?;
        probability("hidden_dropout_prob", self.hidden_dropout_prob)?;
        probability(
            "attention_probs_dropout_prob",
            self.attention_probs_dropout_prob,
        )?;
        if let Some(p) = self.classifier_dropout {
            probability("classifier_dropout", p)?;
        }
        Ok(())
    }

    /// The number of parameters of the `RobertaForSequenceClassification` this config describes
    /// (no LoRA), counted from its shapes without building it: word, position and token-type
    /// embeddings and their layer norm; per layer q/k/v, the attention output, the intermediate
    /// and output projections (all with biases) and two layer norms; the classification head
    /// (dense + out_proj). Saturates at `usize::MAX`.
    pub fn num_parameters(&self) -> usize {
        let mul = |a: usize, b: usize| a.saturating_mul(b);
        let d = self.hidden_size;
        let linear = |i: usize, o: usize| mul(i, o).saturating_add(o);
        let layer_norm = mul(2, d);
        let embeddings = mul(
            self.vocab_size
                .saturating_add(self.max_position_embeddings)
                .saturating_add(self.type_vocab_size.max(1)),
            d,
        )
        .saturating_add(layer_norm);
        let layer = mul(4, linear(d, d))
            .saturating_add(linear(d, self.intermediate_size))
            .saturating_add(linear(self.intermediate_size, d))
            .saturating_add(mul(2, layer_norm));
        let head = linear(d, d).saturating_add(linear(d, self.num_classes()));
        embeddings
            .saturating_add(mul(self.num_hidden_layers, layer))
            .saturating_add(head)
    }

    /// Longest input the position embeddings allow (RoBERTa offsets positions by `pad_token_id + 1`).
    pub fn max_input_len(&self) -> usize {
        self.max_position_embeddings - self.pad_token_id as usize - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RobertaForSequenceClassification, T5ForConditionalGeneration};
    use burn::module::Module;

    type B = burn::backend::NdArray<f32>;

    fn t5_tiny() -> T5Config {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 50, "d_model": 8, "d_kv": 4, "d_ff": 12, "num_layers": 2,
            "num_decoder_layers": 3, "num_heads": 2, "relative_attention_num_buckets": 6,
            "feed_forward_proj": "gated-gelu", "tie_word_embeddings": false
        }))
        .unwrap()
    }

    fn roberta_tiny() -> RobertaConfig {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 40, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 12, "max_position_embeddings": 20, "type_vocab_size": 1,
            "id2label": {"0": "nothate", "1": "hate"}
        }))
        .unwrap()
    }

    #[test]
    fn t5_parameters_are_those_of_the_built_model() {
        let device = Default::default();
        let tied = |c: &T5Config| T5Config {
            tie_word_embeddings: true,
            ..c.clone()
        };
        let relu = |c: &T5Config| T5Config {
            feed_forward_proj: "relu".into(),
            num_decoder_layers: None,
            ..c.clone()
        };
        let base = t5_tiny();
        for c in [base.clone(), tied(&base), relu(&base), tied(&relu(&base))] {
            c.validate().unwrap();
            let built = T5ForConditionalGeneration::<B>::new(&c, &device).num_params();
            assert_eq!(c.num_parameters(), built, "{c:?}");
        }
    }

    #[test]
    fn roberta_parameters_are_those_of_the_built_model() {
        let device = Default::default();
        let base = roberta_tiny();
        let three_labels = RobertaConfig {
            num_labels: Some(3),
            id2label: BTreeMap::new(),
            type_vocab_size: 0,
            ..base.clone()
        };
        for c in [base, three_labels] {
            c.validate().unwrap();
            let built = RobertaForSequenceClassification::<B>::new(&c, &device).num_params();
            assert_eq!(c.num_parameters(), built, "{c:?}");
        }
    }

    #[test]
    fn real_configs_count_as_transformers_does() {
        let fixtures =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        let read = |p: &str| std::fs::read_to_string(fixtures.join(p)).unwrap();
        let counts: serde_json::Value =
            serde_json::from_str(&read("reference/param_counts.json")).unwrap();
        let total = |name: &str| counts[name]["total"].as_u64().unwrap() as usize;
        for name in ["flan-t5-base", "flan-t5-small"] {
            let c: T5Config = serde_json::from_str(&read(&format!("configs/{name}.json"))).unwrap();
            assert_eq!(c.num_parameters(), total(name), "{name}");
        }
        let c: RobertaConfig =
            serde_json::from_str(&read("configs/roberta-hate-speech.json")).unwrap();
        assert_eq!(c.num_parameters(), total("roberta-hate-speech"));
    }

    #[test]
    fn absurd_sizes_saturate_instead_of_overflowing() {
        let c = T5Config {
            vocab_size: usize::MAX,
            d_model: usize::MAX,
            ..t5_tiny()
        };
        assert_eq!(c.num_parameters(), usize::MAX);
        let c = RobertaConfig {
            num_hidden_layers: usize::MAX,
            ..roberta_tiny()
        };
        assert_eq!(c.num_parameters(), usize::MAX);
    }
}
