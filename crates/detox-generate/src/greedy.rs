//! Greedy decoding and sampling: one token per row and step, finished rows leave the batch.

use burn::prelude::*;
use detox_models::T5ForConditionalGeneration;
use rand::rngs::StdRng;

use crate::logits::{argmax, sample, warp_logits};
use crate::step::{apply_processors, index_tensor, next_logits};
use crate::GenerationConfig;

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
        let logits = next_logits(model, &next, &encoder, &mut cache);

        let mut keep = Vec::with_capacity(n);
        next.clear();
        for (i, row_logits) in logits.chunks(vocab).enumerate() {
            let mut row = row_logits.to_vec();
            let r = active[i];
            apply_processors(&mut row, &out[r], step < min_new, special, config);
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
            let rows = index_tensor::<B>(keep.iter().map(|&i| i as i64).collect(), &device);
            encoder = encoder.select_rows(rows.clone());
            cache.select_rows(rows);
            active = keep.iter().map(|&i| active[i]).collect();
        }
    }
    out
}
