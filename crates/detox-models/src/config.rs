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
}

impl RobertaConfig {
    /// Label names ordered by class index (`LABEL_i` when the config has none, as transformers).
    pub fn labels(&self) -> Result<Vec<String>, String> {
        let n = self.num_labels.unwrap_or(if self.id2label.is_empty() {
            2
        } else {
            self.id2label.len()
        });
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
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
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

    /// Longest input the position embeddings allow (RoBERTa offsets positions by `pad_token_id + 1`).
    pub fn max_input_len(&self) -> usize {
        self.max_position_embeddings - self.pad_token_id as usize - 1
    }
}
