//! The policy's log-probs and values of its own responses, kept from the decode loop that
//! sampled them.
//!
//! trl's `PPOTrainer.step` receives only token ids, so its rollout `batched_forward_pass`
//! runs the policy again over every query and response to get what the sampling loop had
//! already computed with the same weights and no dropout: at decode step `t` the decoder's
//! last hidden state `h_t` (the value head's input) and the logits that predict response token
//! `t + 1`. [`RolloutRecorder`] keeps `log_softmax(logits_t)[token_{t+1}]` (the raw logits,
//! before min-length suppression or any warper, as trl's forward pass sees them) and
//! `v_head(h_t)` per row; [`PpoTrainer::step_reusing`](crate::PpoTrainer::step_reusing) then
//! skips the policy's half of the rollout pass. The numbers differ from the batched pass only
//! by float rounding (cached one-token steps against one pass over the whole response); the
//! parity test `tests/parity_ppo.rs` checks the step against trl's record with them.

use burn::prelude::*;
use detox_generate::{generate_observed, DecodeObserver, DecodeStep};
use detox_models::ValueHead;
use rand::rngs::StdRng;

use crate::lab::GenerationSettings;
use crate::model::Seq2SeqLMWithValueHead;

/// Per response row: the policy's log-prob of each token after the start token and its value
/// at each position before it, `len(response) - 1` of each (what the rollout pass gives on the
/// row's real tokens; the padding positions it adds are masked out of every use).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyRollout {
    pub logprobs: Vec<Vec<f32>>,
    pub values: Vec<Vec<f32>>,
}

/// A [`DecodeObserver`] that records a [`PolicyRollout`]; with `forced` responses (start token
/// first) it replays them instead of choosing tokens.
pub struct RolloutRecorder<'a, B: Backend> {
    v_head: &'a ValueHead<B>,
    forced: Option<&'a [Vec<u32>]>,
    pub rollout: PolicyRollout,
}

impl<'a, B: Backend> RolloutRecorder<'a, B> {
    pub fn new(v_head: &'a ValueHead<B>, rows: usize, forced: Option<&'a [Vec<u32>]>) -> Self {
        Self {
            v_head,
            forced,
            rollout: PolicyRollout {
                logprobs: vec![Vec::new(); rows],
                values: vec![Vec::new(); rows],
            },
        }
    }
}

impl<B: Backend> DecodeObserver<B> for RolloutRecorder<'_, B> {
    fn observe(&mut self, step: &DecodeStep<'_, B>) {
        let n = step.rows.len();
        let vocab = step.logits.len() / n.max(1);
        let values: Vec<f32> = self
            .v_head
            .forward(step.hidden.clone())
            .into_data()
            .convert::<f32>()
            .into_vec()
            .expect("float values");
        for (i, &row) in step.rows.iter().enumerate() {
            let logits = &step.logits[i * vocab..(i + 1) * vocab];
            let lp = token_logprob(logits, step.tokens[i] as usize);
            self.rollout.logprobs[row].push(lp);
            self.rollout.values[row].push(values[i]);
        }
    }

    fn forced(&self, row: usize, step: usize) -> Option<u32> {
        self.forced.map(|f| f[row][step + 1])
    }
}

/// `log_softmax(logits)[token]` (sums in f64).
pub fn token_logprob(logits: &[f32], token: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    (logits[token] as f64 - max as f64 - sum.ln()) as f32
}

/// The lab's sampling (as [`crate::lab::generate_responses`]) with the policy's rollout kept
/// from the decode loop: responses (start token first) and their [`PolicyRollout`].
pub fn generate_with_rollout<B: Backend>(
    policy: &Seq2SeqLMWithValueHead<B>,
    queries: &[&[u32]],
    limits: &[usize],
    settings: &GenerationSettings,
    rng: &mut StdRng,
    device: &B::Device,
) -> (Vec<Vec<u32>>, PolicyRollout) {
    let max = limits.iter().copied().max().unwrap_or(1);
    let mut recorder = RolloutRecorder::new(&policy.v_head, queries.len(), None);
    let tokens = decode(
        policy,
        queries,
        limits,
        &settings.config(max),
        rng,
        device,
        &mut recorder,
    );
    let start = policy.pretrained_model.config.decoder_start_token_id();
    let responses = tokens
        .into_iter()
        .map(|toks| std::iter::once(start).chain(toks).collect())
        .collect();
    (responses, recorder.rollout)
}

/// The [`PolicyRollout`] of given responses (start token first, at least one token after it)
/// through the same cached decode loop, each token forced: what [`generate_with_rollout`]
/// would have recorded had it sampled them.
pub fn replay_rollout<B: Backend>(
    policy: &Seq2SeqLMWithValueHead<B>,
    queries: &[&[u32]],
    responses: &[Vec<u32>],
    device: &B::Device,
) -> PolicyRollout {
    let limits: Vec<usize> = responses
        .iter()
        .map(|r| r.len().saturating_sub(1))
        .collect();
    let max = limits.iter().copied().max().unwrap_or(1);
    let config = detox_generate::GenerationConfig {
        max_new_tokens: max,
        ..Default::default()
    };
    let mut recorder = RolloutRecorder::new(&policy.v_head, queries.len(), Some(responses));
    let mut rng = rand::SeedableRng::seed_from_u64(0);
    decode(
        policy,
        queries,
        &limits,
        &config,
        &mut rng,
        device,
        &mut recorder,
    );
    recorder.rollout
}

fn decode<B: Backend>(
    policy: &Seq2SeqLMWithValueHead<B>,
    queries: &[&[u32]],
    limits: &[usize],
    config: &detox_generate::GenerationConfig,
    rng: &mut StdRng,
    device: &B::Device,
    recorder: &mut RolloutRecorder<'_, B>,
) -> Vec<Vec<u32>> {
    let model = &policy.pretrained_model;
    let rows: Vec<Vec<u32>> = queries.iter().map(|q| q.to_vec()).collect();
    let batch = detox_hub::tokenizer::pad_batch(rows, model.config.pad_token_id);
    let (ids, mask) = batch.tensors::<B>(device);
    generate_observed(model, ids, mask, config, limits, rng, recorder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_logprob_is_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0, -1.0];
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        for (t, &x) in logits.iter().enumerate() {
            let want = x as f64 - z.ln();
            assert!((token_logprob(&logits, t) as f64 - want).abs() < 1e-6);
        }
    }
}
