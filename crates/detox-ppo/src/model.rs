//! trl's `AutoModelForSeq2SeqLMWithValueHead` and the reference model of `PPOTrainer`.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use detox_hub::HubError;
use detox_models::{LoraConfig, LoraTarget, T5ForConditionalGeneration, ValueHead};

/// `T5ForConditionalGeneration` with trl's value head, under trl's attribute names
/// (`pretrained_model`, `v_head`), so `v_head.summary.weight` is the path of the head's weight.
#[derive(Module, Debug)]
pub struct Seq2SeqLMWithValueHead<B: Backend> {
    pub pretrained_model: T5ForConditionalGeneration<B>,
    pub v_head: ValueHead<B>,
}

/// What one forward pass gives: `lm_logits` `[b, n, vocab]` and `values` `[b, n]`.
pub struct ValueModelOutput<B: Backend> {
    pub logits: Tensor<B, 3>,
    pub values: Tensor<B, 2>,
}

impl<B: Backend> Seq2SeqLMWithValueHead<B> {
    /// `model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask)` →
    /// `(lm_logits, loss, value)` of trl, without the loss: the value head reads the decoder's
    /// last hidden state (after its final layer norm), the LM head the same state.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        decoder_input_ids: Tensor<B, 2, Int>,
        decoder_attention_mask: Tensor<B, 2, Int>,
    ) -> ValueModelOutput<B> {
        let m = &self.pretrained_model;
        let enc = m.encode(input_ids, attention_mask);
        let hidden = m.decode(decoder_input_ids, &enc, Some(decoder_attention_mask), None);
        ValueModelOutput {
            values: self.v_head.forward(hidden.clone()),
            logits: m.lm_logits(hidden),
        }
    }
}

/// Which model the KL penalty compares the policy with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceKind {
    /// The policy with its adapter disabled: trl's choice for a peft policy with
    /// `ref_model=None` (`optional_peft_ctx`). With a fully trainable policy (no adapter) this is
    /// the same as `initial`.
    #[default]
    Base,
    /// A frozen snapshot of the policy at the start of training, adapter included:
    /// `create_reference_model(ppo_model)`, what the lab passes as `ref_model`.
    Initial,
}

/// The frozen reference model for `policy` (on the inner, non-autodiff backend). Both kinds are
/// clones of the policy's modules; burn tensors are reference-counted and the optimizer replaces
/// (never mutates) parameters, so the frozen base weights are shared with the policy, not copied.
/// Only a fully trainable policy ends up with two copies of the weights — as in trl.
pub fn reference_model<B: Backend>(
    policy: &T5ForConditionalGeneration<B>,
    kind: ReferenceKind,
) -> T5ForConditionalGeneration<B> {
    let mut r = policy.clone();
    if kind == ReferenceKind::Base {
        r.remove_lora();
    }
    r
}

/// Loads a T5 directory with every dropout off: trl 0.11's `batched_forward_pass` calls
/// `model.eval()` before each forward pass, also the ones of the training minibatches, so
/// PPO in trl never applies dropout (T5's `dropout_rate`, `lora_dropout`,
/// `summary_dropout_prob`). detox reproduces that by building the modules without dropout.
pub fn load_t5_eval<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<T5ForConditionalGeneration<B>, HubError> {
    detox_hub::models::load_t5_with_dropout(dir, Some(0.0), device)
}

/// Builds the PPO policy: T5 from `model_dir` (dropout off, see [`load_t5_eval`]), then
///
/// * `adapter = Some(dir)`: that peft adapter, trainable (`is_trainable=True`), base frozen;
/// * `adapter = None, lora = Some(cfg)`: a fresh adapter (peft init), base frozen;
/// * neither: every parameter trainable;
///
/// plus the value head from `value_head` (a safetensors file with `v_head.summary.*`) or a
/// fresh one (`nn.Linear(d_model, 1)` init). Returns the model and the adapter config in use.
pub fn load_policy<B: Backend>(
    model_dir: &Path,
    adapter: Option<&Path>,
    lora: Option<&LoraConfig>,
    value_head: Option<&Path>,
    device: &B::Device,
) -> Result<(Seq2SeqLMWithValueHead<B>, Option<LoraConfig>), HubError> {
    let mut t5 = load_t5_eval::<B>(model_dir, device)?;
    let lora_cfg = match (adapter, lora) {
        (Some(dir), _) => {
            t5 = t5.no_grad();
            let names = detox_hub::t5_name_map(&t5.config);
            let cfg = detox_hub::load_adapter(&mut t5, dir, &names, device)?;
            // load_adapter builds the layers for inference; trainable adapter layers get grads
            // (their params were created after `no_grad`), dropout stays off (see above).
            detox_hub::models::set_lora_dropout(&mut t5, 0.0);
            Some(cfg)
        }
        (None, Some(cfg)) => {
            t5 = t5.no_grad();
            let mut cfg = cfg.clone();
            cfg.base_model_name_or_path = Some(model_dir.display().to_string());
            t5.add_lora(&cfg, device).map_err(|msg| HubError::Config {
                path: model_dir.join("config.json"),
                msg,
            })?;
            detox_hub::models::set_lora_dropout(&mut t5, 0.0);
            Some(cfg)
        }
        (None, None) => None,
    };
    let d_model = t5.config.d_model;
    let v_head = match value_head {
        Some(file) => detox_hub::load_value_head::<B>(file, d_model, 0.0, device)?,
        None => ValueHead::new(d_model, 0.0, device),
    };
    Ok((
        Seq2SeqLMWithValueHead {
            pretrained_model: t5,
            v_head,
        },
        lora_cfg,
    ))
}
