//! LoRA as peft does it: a linear layer with an optional low-rank adapter beside its weight.
//!
//! [`LoraLinear`] holds the base layer's `weight`/`bias` under the same names as HF's `nn.Linear`
//! (so checkpoints load unchanged) and, when adapted, `lora_A`/`lora_B` under peft's names, so a
//! peft adapter file maps onto the tree by stripping its `base_model.model.` prefix.
//! `y = x W + b + scaling · B(A(dropout(x)))`, `scaling = lora_alpha / r` (or `/ sqrt(r)` with rsLoRA).

use burn::module::{Initializer, Param};
use burn::nn::{Linear, LinearConfig};

use crate::dropout::Dropout;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::linear::linear_flat;

/// A linear layer (weights stored `[in, out]`, burn's layout) with an optional LoRA adapter.
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// `[in, r]` (peft stores `[r, in]`).
    pub lora_A: Option<Linear<B>>,
    /// `[r, out]` (peft stores `[out, r]`).
    pub lora_B: Option<Linear<B>>,
    pub lora_dropout: Dropout,
    scaling: f64,
    merged: bool,
}

impl<B: Backend> LoraLinear<B> {
    /// A plain (unadapted) layer, initialized as `nn.Linear` would be by burn's default.
    pub fn new(d_in: usize, d_out: usize, bias: bool, device: &B::Device) -> Self {
        let Linear { weight, bias } = LinearConfig::new(d_in, d_out).with_bias(bias).init(device);
        Self {
            weight,
            bias,
            lora_A: None,
            lora_B: None,
            lora_dropout: Dropout::new(0.0),
            scaling: 0.0,
            merged: false,
        }
    }

    pub fn d_in(&self) -> usize {
        self.weight.shape().dims::<2>()[0]
    }

    pub fn d_out(&self) -> usize {
        self.weight.shape().dims::<2>()[1]
    }

    pub fn is_adapted(&self) -> bool {
        self.lora_A.is_some()
    }

    pub fn rank(&self) -> Option<usize> {
        self.lora_A
            .as_ref()
            .map(|a| a.weight.shape().dims::<2>()[1])
    }

    pub fn scaling(&self) -> f64 {
        self.scaling
    }

    /// Adds a fresh adapter initialized as peft does (`init_lora_weights=True`): A
    /// kaiming-uniform(a=√5), i.e. U(-1/√in, 1/√in); B zeros — so the output is unchanged.
    pub fn adapt(&mut self, r: usize, scaling: f64, dropout: f64, device: &B::Device) {
        let bound = 1.0 / (self.d_in() as f64).sqrt();
        self.lora_A = Some(
            LinearConfig::new(self.d_in(), r)
                .with_bias(false)
                .with_initializer(Initializer::Uniform {
                    min: -bound,
                    max: bound,
                })
                .init(device),
        );
        self.lora_B = Some(
            LinearConfig::new(r, self.d_out())
                .with_bias(false)
                .with_initializer(Initializer::Zeros)
                .init(device),
        );
        self.lora_dropout = Dropout::new(dropout);
        self.scaling = scaling;
        self.merged = false;
    }

    /// `scaling · A B` as a `[in, out]` weight delta.
    fn delta(&self) -> Option<Tensor<B, 2>> {
        match (&self.lora_A, &self.lora_B) {
            (Some(a), Some(b)) => Some(a.weight.val().matmul(b.weight.val()) * self.scaling),
            _ => None,
        }
    }

    /// Folds the adapter into the base weight (peft's `merge`); forward then skips the adapter.
    pub fn merge(&mut self) {
        if self.merged {
            return;
        }
        if let Some(d) = self.delta() {
            let w = self.weight.val() + d;
            self.weight = Param::initialized(self.weight.id, w)
                .set_require_grad(self.weight.is_require_grad());
            self.merged = true;
        }
    }

    /// Undoes [`merge`](Self::merge).
    pub fn unmerge(&mut self) {
        if !self.merged {
            return;
        }
        if let Some(d) = self.delta() {
            let w = self.weight.val() - d;
            self.weight = Param::initialized(self.weight.id, w)
                .set_require_grad(self.weight.is_require_grad());
        }
        self.merged = false;
    }

    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// The base layer alone (what a frozen reference model computes).
    pub fn forward_base<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        linear_flat(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()))
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match (&self.lora_A, &self.lora_B) {
            (Some(a), Some(b)) if !self.merged => {
                let base = self.forward_base(x.clone());
                let down = linear_flat(self.lora_dropout.forward(x), a.weight.val(), None);
                base + linear_flat(down, b.weight.val(), None) * self.scaling
            }
            _ => self.forward_base(x),
        }
    }
}

/// peft's `LoraConfig` fields that detox supports (`adapter_config.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoraConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub target_modules: TargetModules,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default = "default_bias")]
    pub bias: String,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub task_type: Option<String>,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default = "default_peft_type")]
    pub peft_type: String,
    #[serde(default)]
    pub rank_pattern: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub alpha_pattern: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    pub layers_to_transform: Option<serde_json::Value>,
}

fn default_bias() -> String {
    "none".into()
}
fn default_peft_type() -> String {
    "LORA".into()
}

/// `target_modules`: a list of module-name suffixes, or one regex matched against the full name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum TargetModules {
    List(Vec<String>),
    Regex(String),
}

impl TargetModules {
    /// peft's `check_target_module_exists`: a list entry matches the name itself or a `.`-suffix;
    /// a string is a regex that must match the whole name.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::List(list) => list
                .iter()
                .any(|t| name == t || name.ends_with(&format!(".{t}"))),
            Self::Regex(re) => regex_full_match(re, name),
        }
    }
}

fn regex_full_match(re: &str, name: &str) -> bool {
    regex::Regex::new(&format!("^(?:{re})$")).is_ok_and(|r| r.is_match(name))
}

impl LoraConfig {
    /// The lab's settings: r 32, alpha 32, q and v, dropout 0.05, seq2seq.
    pub fn lab() -> Self {
        Self::new(32, 32.0, &["q", "v"], 0.05)
    }

    pub fn new(r: usize, alpha: f64, targets: &[&str], dropout: f64) -> Self {
        Self {
            r,
            lora_alpha: alpha,
            target_modules: TargetModules::List(targets.iter().map(|s| s.to_string()).collect()),
            lora_dropout: dropout,
            bias: "none".into(),
            use_rslora: false,
            fan_in_fan_out: false,
            task_type: Some("SEQ_2_SEQ_LM".into()),
            base_model_name_or_path: None,
            peft_type: "LORA".into(),
            rank_pattern: Default::default(),
            alpha_pattern: Default::default(),
            modules_to_save: None,
            layers_to_transform: None,
        }
    }

    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// Refuses settings detox does not implement, rather than silently computing something else.
    pub fn validate(&self) -> Result<(), String> {
        if self.peft_type != "LORA" {
            return Err(format!(
                "peft_type `{}` is not supported (expected `LORA`)",
                self.peft_type
            ));
        }
        if self.r == 0 {
            return Err("r must be at least 1".into());
        }
        if self.bias != "none" {
            return Err(format!(
                "bias `{}` is not supported (expected `none`)",
                self.bias
            ));
        }
        if self.fan_in_fan_out {
            return Err("fan_in_fan_out = true is not supported (T5/RoBERTa use nn.Linear)".into());
        }
        if !self.rank_pattern.is_empty() || !self.alpha_pattern.is_empty() {
            return Err("rank_pattern / alpha_pattern are not supported".into());
        }
        if self.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
            return Err("modules_to_save is not supported".into());
        }
        if self
            .layers_to_transform
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            return Err("layers_to_transform is not supported".into());
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return Err(format!(
                "lora_alpha must be a finite number > 0, got {}",
                self.lora_alpha
            ));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.lora_dropout
            ));
        }
        Ok(())
    }
}

/// A model whose linear layers can carry LoRA adapters, enumerated with their HF module names.
pub trait LoraTarget<B: Backend> {
    /// Every adaptable linear layer with its HF module name (`encoder.block.0.layer.0.SelfAttention.q`).
    fn lora_linears(&mut self) -> Vec<(String, &mut LoraLinear<B>)>;

    /// Adds fresh adapters to the layers `config.target_modules` matches; returns their names.
    /// Errors if nothing matches.
    fn add_lora(&mut self, config: &LoraConfig, device: &B::Device) -> Result<Vec<String>, String> {
        config.validate()?;
        let mut names = Vec::new();
        for (name, layer) in self.lora_linears() {
            if config.target_modules.matches(&name) {
                layer.adapt(config.r, config.scaling(), config.lora_dropout, device);
                names.push(name);
            }
        }
        if names.is_empty() {
            return Err(format!(
                "target_modules {:?} match no linear layer of this model",
                config.target_modules
            ));
        }
        Ok(names)
    }

    /// Stores every adaptable layer's weight in PyTorch's `[out, in]` order
    /// ([`crate::linear::out_in_layout`]): the fast layout for decoding on the CPU.
    fn use_out_in_layout(&mut self) {
        for (_, layer) in self.lora_linears() {
            layer.weight = crate::linear::out_in_layout(layer.weight.clone());
        }
    }

    /// Parameters in the adapters (what LoRA training updates).
    fn lora_param_count(&mut self) -> usize {
        self.lora_linears()
            .into_iter()
            .filter_map(|(_, l)| l.rank().map(|r| r * (l.d_in() + l.d_out())))
            .sum()
    }

    /// Drops every adapter (peft's `unload`): the layers compute their base weights alone.
    /// burn tensors are reference-counted, so calling this on a clone of a model yields the
    /// adapter-disabled model without copying the base weights.
    fn remove_lora(&mut self) {
        for (_, l) in self.lora_linears() {
            l.unmerge();
            l.lora_A = None;
            l.lora_B = None;
        }
    }

    fn merge_lora(&mut self) {
        self.lora_linears().into_iter().for_each(|(_, l)| l.merge());
    }

    fn unmerge_lora(&mut self) {
        self.lora_linears()
            .into_iter()
            .for_each(|(_, l)| l.unmerge());
    }
}

/// The lab's report: `trainable model parameters: T / all model parameters: A / P%`.
pub fn parameter_report(trainable: usize, all: usize) -> String {
    format!(
        "trainable model parameters: {trainable}\nall model parameters: {all}\npercentage of trainable model parameters: {:.2}%",
        100.0 * trainable as f64 / all as f64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_targets_match_suffixes_like_peft() {
        let t = TargetModules::List(vec!["q".into(), "v".into(), "wo".into()]);
        assert!(t.matches("encoder.block.0.layer.0.SelfAttention.q"));
        assert!(t.matches("decoder.block.1.layer.1.EncDecAttention.v"));
        assert!(t.matches("encoder.block.0.layer.1.DenseReluDense.wo"));
        assert!(!t.matches("encoder.block.0.layer.0.SelfAttention.o"));
        assert!(!t.matches("encoder.block.0.layer.1.DenseReluDense.wi_0"));
    }

    #[test]
    fn regex_targets_must_match_the_whole_name() {
        let t = TargetModules::Regex(r".*SelfAttention\.(q|v)".into());
        assert!(t.matches("encoder.block.0.layer.0.SelfAttention.q"));
        assert!(!t.matches("decoder.block.0.layer.1.EncDecAttention.q"));
        assert!(!t.matches("encoder.block.0.layer.0.SelfAttention.qq"));
    }

    #[test]
    fn scaling_is_alpha_over_r_or_sqrt_r() {
        let mut c = LoraConfig::new(16, 32.0, &["q"], 0.0);
        assert_eq!(c.scaling(), 2.0);
        c.use_rslora = true;
        assert_eq!(c.scaling(), 8.0);
    }

    #[test]
    fn unsupported_settings_are_refused() {
        let mut c = LoraConfig::lab();
        c.bias = "all".into();
        assert!(c.validate().unwrap_err().contains("bias"));
    }
}
