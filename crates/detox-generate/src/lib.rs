//! Decoding for encoder-decoder models: greedy and sampling (temperature / top-k / top-p),
//! `max_new_tokens`, `min_new_tokens` / `min_length`, stop at EOS, batched prompts.
//!
//! The model runs on any backend; the per-step choice of the next token is made on the host
//! from the last position's logits (a `[batch, vocab]` transfer per step), with a seeded RNG so
//! runs are reproducible. Logit processing follows transformers' order: repetition penalty,
//! no-repeat n-grams, min-length EOS suppression, then temperature, top-k, top-p.

pub mod logits;

use burn::prelude::*;
use detox_models::T5ForConditionalGeneration;
use rand::rngs::StdRng;

pub use logits::{argmax, no_repeat_ngram, repetition_penalty, sample, warp_logits};

/// Generation settings, with transformers' meaning (`top_k` 0 and `top_p` 1.0 are "off").
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    pub min_new_tokens: usize,
    /// transformers' `min_length`: total decoder length including the start token.
    pub min_length: usize,
    pub do_sample: bool,
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    /// transformers' `repetition_penalty` (1.0 = off).
    pub repetition_penalty: f64,
    /// transformers' `no_repeat_ngram_size` (0 = off).
    pub no_repeat_ngram_size: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 20,
            min_new_tokens: 0,
            min_length: 0,
            do_sample: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
        }
    }
}

impl GenerationConfig {
    /// New tokens before which EOS is suppressed.
    pub fn effective_min_new_tokens(&self) -> usize {
        self.min_new_tokens.max(self.min_length.saturating_sub(1))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.max_new_tokens == 0 {
            return Err("max_new_tokens must be at least 1".into());
        }
        if self.do_sample && !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature must be > 0, got {}", self.temperature));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        Ok(())
    }
}

/// Token ids of the special tokens decoding needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    pub decoder_start: u32,
    pub eos: u32,
    pub pad: u32,
}

impl SpecialTokens {
    pub fn of_t5<B: Backend>(model: &T5ForConditionalGeneration<B>) -> Self {
        let c = &model.config;
        Self {
            decoder_start: c.decoder_start_token_id(),
            eos: c.eos_token_id,
            pad: c.pad_token_id,
        }
    }
}

/// Generates continuations for a batch of prompts (`input_ids`/`attention_mask` `[batch, len]`,
/// right-padded). Returns, per row, the new ids after the decoder start token, EOS included if
/// generated (what `generate(...)[i, 1:]` holds in transformers, without the trailing padding).
///
/// Finished rows are dropped from the batch, so they stop costing compute.
pub fn generate<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Tensor<B, 2, Int>,
    config: &GenerationConfig,
    rng: &mut StdRng,
) -> Vec<Vec<u32>> {
    let [batch, _] = input_ids.dims();
    let limits = vec![config.max_new_tokens; batch];
    generate_with_limits(model, input_ids, attention_mask, config, &limits, rng)
}

/// [`generate`] with a `max_new_tokens` of its own for each row (`limits[i]`, each at most
/// `config.max_new_tokens`): what generating the rows one by one with different lengths gives
/// (trl's `LengthSampler` per query), in one batched call. A row stops at EOS or at its limit,
/// then leaves the batch.
pub fn generate_with_limits<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Tensor<B, 2, Int>,
    config: &GenerationConfig,
    limits: &[usize],
    rng: &mut StdRng,
) -> Vec<Vec<u32>> {
    let special = SpecialTokens::of_t5(model);
    let [batch, _] = input_ids.dims();
    assert_eq!(limits.len(), batch, "one limit per row");
    let max_steps = limits
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .min(config.max_new_tokens);
    let device = input_ids.device();
    let vocab = model.config.vocab_size;
    let min_new = config.effective_min_new_tokens();

    let mut encoder = model.encode(input_ids, attention_mask);
    let mut cache = model.new_cache(max_steps + 1);
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); batch];
    // Original row index of each row still in the batch.
    let mut active: Vec<usize> = (0..batch).collect();
    let mut next: Vec<u32> = vec![special.decoder_start; batch];

    for step in 0..max_steps {
        let n = active.len();
        let ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(next.iter().map(|&t| t as i64).collect::<Vec<_>>(), [n, 1]),
            &device,
        );
        let hidden = model.decode(ids, &encoder, None, Some(&mut cache));
        let logits = model.lm_logits(hidden).reshape([n, vocab]);
        let logits: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .into_vec()
            .expect("float logits");

        let mut keep = Vec::with_capacity(n);
        next.clear();
        for (i, row_logits) in logits.chunks(vocab).enumerate() {
            let mut row = row_logits.to_vec();
            let r = active[i];
            if config.repetition_penalty != 1.0 || config.no_repeat_ngram_size > 0 {
                // the decoder ids so far, start token included (what transformers' processors
                // see); each processor is a no-op when its setting is off
                let ids: Vec<u32> = std::iter::once(special.decoder_start)
                    .chain(out[r].iter().copied())
                    .collect();
                repetition_penalty(&mut row, &ids, config.repetition_penalty);
                no_repeat_ngram(&mut row, &ids, config.no_repeat_ngram_size);
            }
            if step < min_new {
                row[special.eos as usize] = f32::NEG_INFINITY;
            }
            let token = if config.do_sample {
                warp_logits(&mut row, config.temperature, config.top_k, config.top_p);
                sample(&row, rng)
            } else {
                argmax(&row)
            } as u32;
            out[r].push(token);
            if token != special.eos && out[r].len() < limits[r] {
                keep.push(i);
                next.push(token);
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() < n {
            let rows = Tensor::<B, 1, Int>::from_data(
                TensorData::new(
                    keep.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                    [keep.len()],
                ),
                &device,
            );
            encoder = encoder.select_rows(rows.clone());
            cache.select_rows(rows);
            active = keep.iter().map(|&i| active[i]).collect();
        }
    }
    out
}
