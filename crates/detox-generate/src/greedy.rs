//! Greedy decoding and sampling: one token per row and step, finished rows leave the batch.

use burn::prelude::*;
use detox_models::T5ForConditionalGeneration;
use rand::rngs::StdRng;

use crate::logits::{argmax, sample, warp_logits};
use crate::step::{apply_processors, index_tensor, next_hidden_and_logits};
use crate::GenerationConfig;

/// What a decoding step shows an observer of [`generate_observed`], for the rows still in the
/// batch (`rows[i]` is row `i`'s index in the input batch).
pub struct DecodeStep<'a, B: Backend> {
    /// The 0-based step: the tokens chosen now are the `step + 1`-th of their rows (after the
    /// decoder start token).
    pub step: usize,
    pub rows: &'a [usize],
    /// The decoder's last hidden state at this position, `[rows, 1, d_model]` (after the final
    /// layer norm).
    pub hidden: &'a Tensor<B, 3>,
    /// The model's logits `[rows * vocab]`, before any processor or warper.
    pub logits: &'a [f32],
    /// The token chosen for each row.
    pub tokens: &'a [u32],
}

/// Sees each step of [`generate_observed`] and may force its tokens.
pub trait DecodeObserver<B: Backend> {
    /// Called once per step, after the tokens are chosen.
    fn observe(&mut self, step: &DecodeStep<'_, B>);

    /// The token input row `row` must take at `step` instead of choosing one (`None`: choose
    /// as configured). A forced token is not drawn from the RNG.
    fn forced(&self, _row: usize, _step: usize) -> Option<u32> {
        None
    }
}

/// Observes nothing.
struct Unobserved;

impl<B: Backend> DecodeObserver<B> for Unobserved {
    fn observe(&mut self, _step: &DecodeStep<'_, B>) {}
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
    generate_observed(
        model,
        input_ids,
        attention_mask,
        config,
        limits,
        rng,
        &mut Unobserved,
    )
}

/// [`generate_with_limits`] that shows every step to `observer` (raw logits and hidden states
/// of the rows still decoding, the tokens chosen) and lets it force tokens: what keeping the
/// policy's log-probs and values from the decode loop needs.
pub fn generate_observed<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Tensor<B, 2, Int>,
    config: &GenerationConfig,
    limits: &[usize],
    rng: &mut StdRng,
    observer: &mut dyn DecodeObserver<B>,
) -> Vec<Vec<u32>> {
    let special = config.special_tokens(model);
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
        let (hidden, logits) = next_hidden_and_logits(model, &next, &encoder, &mut cache);

        let mut keep = Vec::with_capacity(n);
        let mut chosen = Vec::with_capacity(n);
        next.clear();
        for (i, row_logits) in logits.chunks(vocab).enumerate() {
            let r = active[i];
            let token = match observer.forced(r, step) {
                Some(t) => t,
                None => {
                    let mut row = row_logits.to_vec();
                    apply_processors(&mut row, &out[r], step < min_new, special, config);
                    (if config.do_sample {
                        warp_logits(&mut row, config.temperature, config.top_k, config.top_p);
                        sample(&row, rng)
                    } else {
                        argmax(&row)
                    }) as u32
                }
            };
            chosen.push(token);
            out[r].push(token);
            if token != special.eos && out[r].len() < limits[r] {
                keep.push(i);
                next.push(token);
            }
        }
        observer.observe(&DecodeStep {
            step,
            rows: &active,
            hidden: &hidden,
            logits: &logits,
            tokens: &chosen,
        });
        drop(hidden);
        if keep.is_empty() {
            break;
        }
        if keep.len() < n {
            let rows = index_tensor::<B>(keep.iter().map(|&i| i as i64).collect(), &device);
            encoder = encoder.select_rows(rows.clone());
            cache.select_rows(rows);
            active = keep.iter().map(|&i| active[i]).collect();
        }
    }
    out
}
