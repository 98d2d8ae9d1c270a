//! Decoding for encoder-decoder models as transformers 4.46.3's `generate`: greedy, sampling
//! (temperature / top-k / top-p) and beam search (`num_beams`, `length_penalty`,
//! `early_stopping`, `num_return_sequences`), with `max_new_tokens`, `min_new_tokens` /
//! `min_length`, EOS and batched prompts.
//!
//! The model runs on any backend; the per-step choice of the next tokens is made on the host
//! from the last position's logits (a `[rows, vocab]` transfer per step), with a seeded RNG so
//! sampling is reproducible. Logit processing follows transformers' order: repetition penalty,
//! no-repeat n-grams, min-length EOS suppression, then (sampling) temperature, top-k, top-p.
//!
//! - `config.rs`: [`GenerationConfig`] and its validation; `generation_config.rs`: the model
//!   directory's `generation_config.json` as defaults.
//! - `logits.rs`: the per-row processors and token choice, each a pure function.
//! - `greedy.rs`: greedy and sampling; `beam_search.rs`: the beam search loop over the model;
//!   `step.rs`: what both do in a step (decode one token per row, the processors in order);
//!   `beam.rs`: transformers' beam bookkeeping (`BeamSearchScorer` / `BeamHypotheses`).

pub mod beam;
pub mod beam_search;
pub mod config;
pub mod generation_config;
pub mod greedy;
pub mod logits;
mod step;

use burn::prelude::*;
use detox_models::T5ForConditionalGeneration;
use rand::rngs::StdRng;

pub use beam::{EarlyStopping, Hypothesis};
pub use beam_search::beam_search;
pub use config::{GenerationConfig, SpecialTokens};
pub use generation_config::GenerationFile;
pub use greedy::{generate, generate_observed, generate_with_limits, DecodeObserver, DecodeStep};
pub use logits::{argmax, no_repeat_ngram, repetition_penalty, sample, warp_logits};

/// One returned sequence: its new tokens (EOS included when generated) and, for beam search,
/// transformers' `sequences_scores` entry (`None` for greedy and sampling).
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    pub tokens: Vec<u32>,
    pub score: Option<f64>,
}

/// `generate` with every setting of `config`: per prompt, `num_return_sequences` sequences
/// (best first for beam search; independent samples for sampling; one for greedy).
pub fn generate_sequences<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Tensor<B, 2, Int>,
    config: &GenerationConfig,
    rng: &mut StdRng,
) -> Vec<Vec<Sequence>> {
    if config.num_beams > 1 {
        return beam_search(model, input_ids, attention_mask, config)
            .into_iter()
            .map(|hyps| {
                hyps.into_iter()
                    .map(|h| Sequence {
                        tokens: h.tokens,
                        score: Some(h.score),
                    })
                    .collect()
            })
            .collect();
    }
    let n = config.num_return_sequences.max(1);
    let (input_ids, attention_mask) = if n > 1 {
        // each prompt n times in a row, as transformers expands the inputs
        let [batch, _] = input_ids.dims();
        let rows: Vec<i64> = (0..batch as i64)
            .flat_map(|r| std::iter::repeat_n(r, n))
            .collect();
        let rows = step::index_tensor::<B>(rows, &input_ids.device());
        (
            input_ids.select(0, rows.clone()),
            attention_mask.select(0, rows),
        )
    } else {
        (input_ids, attention_mask)
    };
    let out = generate(model, input_ids, attention_mask, config, rng);
    out.chunks(n)
        .map(|c| {
            c.iter()
                .map(|tokens| Sequence {
                    tokens: tokens.clone(),
                    score: None,
                })
                .collect()
        })
        .collect()
}
