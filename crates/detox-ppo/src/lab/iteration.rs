//! One iteration of the lab's loop: the step's batch of prompts, one sampled response each (with
//! its own length), their rewards, `PPOTrainer.step`, and the numbers `stats.jsonl` records.
//! `detox ppo` runs it with the classifier's reward; `detox bench-ppo` times it with its own.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use detox_hub::TextTokenizer;
use detox_rl::Stats;

use super::config::LabConfig;
use super::data::{decode_text, generate_responses, sample_lengths, step_indices, step_rng, Query};
use super::error::LabError;
use crate::reward::{scores, Classifier, RewardOutput};
use crate::rollout::{generate_with_rollout, PolicyRollout};
use crate::trainer::PpoTrainer;

/// The salt of a data-parallel peer's sampling stream (`PEER_SALT + rank`, see `step_rng`).
const PEER_SALT: u64 = 100;

/// The rewards of a batch: one score per `(query, response)` pair.
pub trait Reward {
    fn scores(&mut self, queries: &[&Query], responses: &[Vec<u32>]) -> Result<Vec<f32>, LabError>;
}

/// The lab's reward: the classifier's score of `label` for the text `query + response`, the
/// response decoded with or without special tokens (`reward.special_tokens_in_text`).
pub struct ClassifierReward<B: Backend> {
    pub classifier: Classifier<B>,
    /// The policy's (T5) tokenizer, which decodes the responses.
    pub tokenizer: TextTokenizer,
    pub label: usize,
    pub output: RewardOutput,
    pub special_tokens_in_text: bool,
}

impl<B: Backend> ClassifierReward<B> {
    /// A response's text as the reward reads it.
    pub fn decode(&self, response: &[u32]) -> Result<String, LabError> {
        Ok(decode_text(
            &self.tokenizer,
            response,
            self.special_tokens_in_text,
        )?)
    }

    /// The scores of `query.text + response` for decoded responses.
    pub fn score_texts(
        &self,
        queries: &[&Query],
        responses: &[String],
    ) -> Result<Vec<f32>, LabError> {
        let texts: Vec<String> = queries
            .iter()
            .zip(responses)
            .map(|(q, r)| format!("{}{}", q.text, r))
            .collect();
        Ok(scores(&self.classifier, &texts, self.label, self.output)?)
    }
}

impl<B: Backend> Reward for ClassifierReward<B> {
    fn scores(&mut self, queries: &[&Query], responses: &[Vec<u32>]) -> Result<Vec<f32>, LabError> {
        let texts = responses
            .iter()
            .map(|r| self.decode(r))
            .collect::<Result<Vec<_>, _>>()?;
        self.score_texts(queries, &texts)
    }
}

/// What the lab's loop works on: the trainer, the training prompts, the reward and the settings
/// (`ppo.batch_size`, `run.seed`, `generation`).
pub struct LabLoop<B: AutodiffBackend, R: Reward> {
    pub trainer: PpoTrainer<B>,
    pub train: Vec<Query>,
    pub reward: R,
    pub config: LabConfig,
    pub device: B::Device,
}

/// What one iteration did.
#[derive(Debug, Clone)]
pub struct IterationStats {
    /// The step done, 1-based.
    pub step: usize,
    /// `PPOTrainer.step`'s stats (`objective/kl`, `ppo/loss/total`, ...).
    pub stats: Stats,
    /// Mean and (unbiased) std of the rewards, as trl's `log_stats`.
    pub reward_mean: f64,
    pub reward_std: f64,
    /// Each response's `max_new_tokens`.
    pub limits: Vec<usize>,
    /// Tokens generated, over all responses (the start token not counted).
    pub new_tokens: usize,
    pub seconds_generate: f64,
    pub seconds_reward: f64,
    pub seconds_step: f64,
    pub seconds_total: f64,
}

impl IterationStats {
    /// The step's `stats.jsonl` row: `step`, `env/reward_mean`, `env/reward_std`, trl's stats
    /// and the times.
    pub fn row(&self) -> serde_json::Value {
        let mut row = serde_json::Map::new();
        row.insert("step".into(), self.step.into());
        row.insert("env/reward_mean".into(), self.reward_mean.into());
        row.insert("env/reward_std".into(), self.reward_std.into());
        for (k, v) in &self.stats {
            row.insert(k.clone(), serde_json::json!(v));
        }
        row.insert("time/generate".into(), self.seconds_generate.into());
        row.insert("time/reward".into(), self.seconds_reward.into());
        row.insert("time/iteration".into(), self.seconds_total.into());
        serde_json::Value::Object(row)
    }
}

impl<B: AutodiffBackend, R: Reward> LabLoop<B, R> {
    /// Lab iteration `step` (0-based): the batch [`step_indices`] picks, responses sampled with
    /// lengths from `generation.response_length` (both from the stream of `(seed, step)`), their
    /// rewards, and one PPO step.
    pub fn iteration(&mut self, step: usize) -> Result<IterationStats, LabError> {
        let cfg = &self.config;
        let t0 = Instant::now();
        let idx = step_indices(self.train.len(), cfg.ppo.batch_size, cfg.run.seed, step);
        let queries: Vec<&Query> = idx.iter().map(|&i| &self.train[i]).collect();
        let mut rng = step_rng(cfg.run.seed, step, 1);
        let limits = sample_lengths(queries.len(), cfg.generation.response_length, &mut rng);
        // a data-parallel peer (the trainer's, [`PpoTrainer::set_peer`]) generates and scores
        // its share of the batch, sampling from its own stream, then gathers the others' shares
        // and takes the (data-parallel) step on the whole batch
        let peer = self.trainer.peer().cloned();
        let share = match &peer {
            Some(p) => {
                rng = step_rng(cfg.run.seed, step, PEER_SALT + p.rank as u64);
                detox_parallel::share(queries.len(), p.world, p.rank)
            }
            None => 0..queries.len(),
        };
        let ids: Vec<&[u32]> = queries[share.clone()]
            .iter()
            .map(|q| q.input_ids.as_slice())
            .collect();
        let policy_eval = self.trainer.policy().valid();
        let (responses, policy_rollout) = if cfg.run.rollout_from_generation {
            let (responses, rollout) = generate_with_rollout(
                &policy_eval,
                &ids,
                &limits[share.clone()],
                &cfg.generation,
                &mut rng,
                &self.device,
            );
            (responses, Some(rollout))
        } else {
            let responses = generate_responses(
                &policy_eval.pretrained_model,
                &ids,
                &limits[share.clone()],
                &cfg.generation,
                &mut rng,
                &self.device,
            );
            (responses, None)
        };
        drop(policy_eval);
        let seconds_generate = t0.elapsed().as_secs_f64();

        let t1 = Instant::now();
        let scores = self.reward.scores(&queries[share.clone()], &responses)?;
        let seconds_reward = t1.elapsed().as_secs_f64();
        let (responses, scores, policy_rollout) = match &peer {
            Some(p) => {
                let all = |rows: Vec<Vec<f32>>| {
                    p.all_gather_rows::<B::InnerBackend>(
                        queries.len(),
                        share.clone(),
                        &rows,
                        &self.device,
                    )
                    .map_err(|e| LabError::Config(e.to_string()))
                };
                let ids = all(responses
                    .iter()
                    .map(|r| r.iter().map(|&t| t as f32).collect())
                    .collect())?;
                let responses: Vec<Vec<u32>> = ids
                    .into_iter()
                    .map(|r| r.into_iter().map(|t| t as u32).collect())
                    .collect();
                let scores: Vec<f32> = all(scores.iter().map(|&s| vec![s]).collect())?
                    .into_iter()
                    .map(|r| r[0])
                    .collect();
                let rollout = match policy_rollout {
                    Some(r) => Some(PolicyRollout {
                        logprobs: all(r.logprobs)?,
                        values: all(r.values)?,
                    }),
                    None => None,
                };
                (responses, scores, rollout)
            }
            None => (responses, scores, policy_rollout),
        };

        let t2 = Instant::now();
        let query_ids: Vec<Vec<u32>> = queries.iter().map(|q| q.input_ids.clone()).collect();
        let out = match &policy_rollout {
            Some(r) => self
                .trainer
                .step_reusing(&query_ids, &responses, &scores, r, None),
            None => self.trainer.step(&query_ids, &responses, &scores),
        }
        .map_err(|err| LabError::Step {
            step: step + 1,
            err,
        })?;
        let seconds_step = t2.elapsed().as_secs_f64();
        let (reward_mean, reward_std) = mean_unbiased_std(&scores);
        Ok(IterationStats {
            step: step + 1,
            stats: out.stats,
            reward_mean,
            reward_std,
            new_tokens: responses.iter().map(|r| r.len().saturating_sub(1)).sum(),
            limits,
            seconds_generate,
            seconds_reward,
            seconds_step,
            seconds_total: t0.elapsed().as_secs_f64(),
        })
    }
}

/// Mean and unbiased (`n - 1`) standard deviation, as torch's `std` in trl's `log_stats`.
fn mean_unbiased_std(xs: &[f32]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().map(|&s| s as f64).sum::<f64>() / n;
    let v = xs.iter().map(|&s| (s as f64 - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, v.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reward_std_is_unbiased() {
        let (m, s) = mean_unbiased_std(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
