//! Beam search over a T5 model, as transformers 4.46.3's `_beam_search`.
//!
//! Each prompt keeps `num_beams` rows in the decoder batch. Per step: `log_softmax` of each
//! row's logits, the logits processors, plus the beam's running sum; the best `2 * num_beams`
//! of the prompt's `num_beams x vocab` candidates go to [`BeamScorer::process`]. The encoder
//! runs once per prompt and the beams share its output and cross-attention keys/values (the
//! decoder groups a prompt's beams, see `T5ForConditionalGeneration::decode`); the
//! self-attention cache is reordered by beam (rows selected, nothing recomputed). A prompt that
//! is done leaves the batch, so it stops costing compute.

use burn::prelude::*;
use detox_models::T5ForConditionalGeneration;

use crate::beam::{BeamScorer, BeamSettings, Candidate, Hypothesis};
use crate::logits::{log_softmax, top_k_indices};
use crate::step::{apply_processors, index_tensor, next_logits};
use crate::GenerationConfig;
use rayon::prelude::*;

/// transformers' initial score of beams `1..`: only beam 0 is live at the first step.
const DEAD_BEAM: f32 = -1e9;

/// Beam search for a batch of prompts (`input_ids`/`attention_mask` `[batch, len]`,
/// right-padded). Returns, per prompt, `num_return_sequences` hypotheses, best first: the new
/// tokens (with the final EOS when one finished it) and `sequences_scores`.
pub fn beam_search<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Tensor<B, 2, Int>,
    config: &GenerationConfig,
) -> Vec<Vec<Hypothesis>> {
    let special = config.special_tokens(model);
    let [batch, _] = input_ids.dims();
    let nb = config.num_beams;
    let vocab = model.config.vocab_size;
    let device = input_ids.device();
    let min_new = config.effective_min_new_tokens();
    let mut scorer = BeamScorer::new(
        batch,
        BeamSettings {
            num_beams: nb,
            length_penalty: config.length_penalty,
            early_stopping: config.early_stopping,
            num_return_sequences: config.num_return_sequences,
            max_new_tokens: config.max_new_tokens,
            eos: special.eos,
        },
    );

    let mut encoder = model.encode(input_ids, attention_mask);
    let mut cache = model.new_cache(config.max_new_tokens + 1);
    // Prompts still searching; each owns rows j*nb..(j+1)*nb of the decoder batch.
    let mut active: Vec<usize> = (0..batch).collect();
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); batch * nb];
    let mut scores: Vec<f32> = (0..batch * nb)
        .map(|r| if r % nb == 0 { 0.0 } else { DEAD_BEAM })
        .collect();
    let mut next: Vec<u32> = vec![special.decoder_start; batch * nb];

    for step in 0..config.max_new_tokens {
        let rows = active.len() * nb;
        let mut logits = next_logits(model, &next, &encoder, &mut cache);
        // every beam's scores at once (rows in parallel), then each prompt's choice
        logits
            .par_chunks_mut(vocab)
            .zip(tokens.par_iter().zip(scores.par_iter()))
            .for_each(|(row, (t, &s))| step_scores(row, t, s, step < min_new, special, config));
        let Chosen {
            kept,
            gather,
            tokens: new_tokens,
            scores: new_scores,
        } = choose(&mut scorer, &active, &logits, &tokens, vocab, step);
        if kept.len() < active.len() {
            active = kept.iter().map(|&j| active[j]).collect();
            if !active.is_empty() {
                let prompts = index_tensor::<B>(kept.iter().map(|&j| j as i64).collect(), &device);
                encoder = encoder.select_rows(prompts.clone());
                cache.select_encoder_rows(prompts);
            }
        }
        tokens = new_tokens;
        scores = new_scores;
        if active.is_empty() || step + 1 == config.max_new_tokens {
            break;
        }
        let reordered =
            gather.len() != rows || gather.iter().enumerate().any(|(i, &src)| i as i64 != src);
        if reordered {
            cache.select_decoder_rows(index_tensor::<B>(gather, &device));
        }
        next = tokens
            .iter()
            .map(|t| *t.last().expect("one token per step"))
            .collect();
    }

    scorer.finalize(|prompt| {
        let j = active
            .iter()
            .position(|&p| p == prompt)
            .expect("a prompt not done is still active");
        (j * nb..(j + 1) * nb)
            .map(|r| (tokens[r].clone(), scores[r]))
            .collect()
    })
}

/// What one step decided for the prompts still searching.
struct Chosen {
    /// Positions (in `active`) of the prompts that go on.
    kept: Vec<usize>,
    /// For each next beam row, the current row it continues.
    gather: Vec<i64>,
    tokens: Vec<Vec<u32>>,
    scores: Vec<f32>,
}

/// Each active prompt's best `2 * num_beams` candidates over its `num_beams x vocab` scores,
/// through the scorer; the next beams of the prompts that are not done.
fn choose(
    scorer: &mut BeamScorer,
    active: &[usize],
    logits: &[f32],
    tokens: &[Vec<u32>],
    vocab: usize,
    step: usize,
) -> Chosen {
    let nb = tokens.len() / active.len();
    let mut out = Chosen {
        kept: Vec::with_capacity(active.len()),
        gather: Vec::with_capacity(tokens.len()),
        tokens: Vec::with_capacity(tokens.len()),
        scores: Vec::with_capacity(tokens.len()),
    };
    for (j, block) in logits.chunks(nb * vocab).enumerate() {
        let candidates: Vec<Candidate> = top_k_indices(block, scorer.candidates_per_step())
            .into_iter()
            .map(|(score, i)| Candidate {
                score,
                token: (i % vocab) as u32,
                beam: i / vocab,
            })
            .collect();
        let beams = &tokens[j * nb..(j + 1) * nb];
        let continued = scorer.process(active[j], &candidates, beams, step + 1);
        if scorer.is_done(active[j]) {
            continue;
        }
        out.kept.push(j);
        for c in continued {
            let src = j * nb + c.beam;
            out.gather.push(src as i64);
            let mut t = tokens[src].clone();
            t.push(c.token);
            out.tokens.push(t);
            out.scores.push(c.score);
        }
    }
    out
}

/// One beam's candidate scores in place: log-probabilities, the processors, then the running
/// sum.
fn step_scores(
    row: &mut [f32],
    beam_tokens: &[u32],
    beam_score: f32,
    suppress_eos: bool,
    special: crate::SpecialTokens,
    config: &GenerationConfig,
) {
    log_softmax(row);
    apply_processors(row, beam_tokens, suppress_eos, special, config);
    row.iter_mut().for_each(|v| *v += beam_score);
}
