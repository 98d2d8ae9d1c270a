//! What greedy decoding, sampling and beam search share in a step: decoding one token per row
//! and reading the logits on the host, transformers' logits processors in order, and the row
//! index tensors that keep / reorder rows.

use burn::prelude::*;
use detox_models::{EncoderOutput, T5DecoderCache, T5ForConditionalGeneration};

use crate::logits::{no_repeat_ngram, repetition_penalty};
use crate::{GenerationConfig, SpecialTokens};

/// The last position's logits `[rows * vocab]` on the host after decoding `next` (one token
/// per row) with the cache.
pub(crate) fn next_logits<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    next: &[u32],
    encoder: &EncoderOutput<B>,
    cache: &mut T5DecoderCache<B>,
) -> Vec<f32> {
    next_hidden_and_logits(model, next, encoder, cache).1
}

/// [`next_logits`] and the decoder's last hidden state `[rows, 1, d_model]` they come from
/// (after the final layer norm: what a value head reads).
pub(crate) fn next_hidden_and_logits<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    next: &[u32],
    encoder: &EncoderOutput<B>,
    cache: &mut T5DecoderCache<B>,
) -> (Tensor<B, 3>, Vec<f32>) {
    let rows = next.len();
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(
            next.iter().map(|&t| t as i64).collect::<Vec<_>>(),
            [rows, 1],
        ),
        &encoder.hidden.device(),
    );
    let hidden = model.decode(ids, encoder, None, Some(cache));
    let logits = model
        .lm_logits(hidden.clone())
        .reshape([rows, model.config.vocab_size])
        .into_data()
        .convert::<f32>()
        .into_vec()
        .expect("float logits");
    (hidden, logits)
}

/// transformers' processors on one row's scores, in its order: repetition penalty and
/// no-repeat n-grams over the decoder ids so far (start token included, as transformers passes
/// them; each a no-op when off), then EOS suppressed while `suppress_eos` (min length).
pub(crate) fn apply_processors(
    row: &mut [f32],
    generated: &[u32],
    suppress_eos: bool,
    special: SpecialTokens,
    config: &GenerationConfig,
) {
    if config.repetition_penalty != 1.0 || config.no_repeat_ngram_size > 0 {
        let ids: Vec<u32> = std::iter::once(special.decoder_start)
            .chain(generated.iter().copied())
            .collect();
        repetition_penalty(row, &ids, config.repetition_penalty);
        no_repeat_ngram(row, &ids, config.no_repeat_ngram_size);
    }
    if suppress_eos {
        row[special.eos as usize] = f32::NEG_INFINITY;
    }
}

/// A 1-D index tensor of `rows` (for `select` along the batch).
pub(crate) fn index_tensor<B: Backend>(rows: Vec<i64>, device: &B::Device) -> Tensor<B, 1, Int> {
    let n = rows.len();
    Tensor::from_data(TensorData::new(rows, [n]), device)
}
