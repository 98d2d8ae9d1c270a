//! `PPOTrainer.step` of trl 0.11.4 for an encoder-decoder policy with a value head.
//!
//! The math is `detox_rl`'s; this module only orchestrates, in trl's order:
//!
//! 1. `_step_safety_checker`; score scaling ([`RunningMoments`]) and `score_clip`;
//! 2. `prepare_model_inputs`: queries and responses right-padded with `pad_token_id` over the
//!    whole batch (attention masks 1 on tokens);
//! 3. rollout `batched_forward_pass` of the policy and of the reference (no gradient, chunks of
//!    `mini_batch_size`): log-probs, values, response masks;
//! 4. `compute_rewards` (or its `full` variant) with the KL controller's value, then
//!    `compute_advantages`;
//! 5. `ppo_epochs` × a permutation of the batch cut into backward batches and minibatches: a
//!    forward pass with gradient, `loss`, backward of `pg_loss + vf_loss` (divided by
//!    `gradient_accumulation_steps`), and on every `gradient_accumulation_steps`-th minibatch
//!    the optional global-norm clipping and one Adam step; early stopping on `policykl` after
//!    each epoch;
//! 6. `record_step_stats` (+ `ppo/learning_rate`, `time/ppo/*`), then `kl_ctl.update`.
//!
//! Non-finite log-probs, values, scores, rewards, advantages or losses stop the step with
//! [`RlError::NonFinite`] naming the tensor, before any parameter is written with them.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use detox_models::T5ForConditionalGeneration;
use detox_rl::{
    compute_advantages, compute_rewards, compute_rewards_full, global_norm_scale, ppo_loss,
    record_step_stats, seq2seq_forward_outputs, to_vec_f32, ForwardOutputs, KlController,
    KlPenalty, PpoConfig, RlError, RunningMoments, Stats,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::model::Seq2SeqLMWithValueHead;

/// Adam (torch's, eps 1e-8, no weight decay — burn's AdamW with weight decay 0 is the same
/// update) over the policy and its value head.
pub type PolicyOptimizer<B> = OptimizerAdaptor<AdamW, Seq2SeqLMWithValueHead<B>, B>;

/// A `[rows, cols]` matrix read back from the device (row-major).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl HostMatrix {
    fn of<B: Backend>(t: Tensor<B, 2>) -> Self {
        let [rows, cols] = t.dims();
        Self {
            rows,
            cols,
            data: to_vec_f32(t),
        }
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// One minibatch of the step: its rows and `loss`'s outputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MinibatchRecord {
    pub rows: Vec<usize>,
    pub pg_loss: f32,
    /// `vf_coef * vf_loss`, trl's second return value.
    pub vf_loss: f32,
    pub stats: Stats,
}

/// Everything `step` computed, on the host: what trl's tensors hold at each stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    /// The scores after scaling and clipping (what `compute_rewards` receives).
    pub scores: Vec<f32>,
    pub logprobs: HostMatrix,
    pub ref_logprobs: HostMatrix,
    /// Rollout values as `batched_forward_pass` returns them (not masked).
    pub values_rollout: HostMatrix,
    pub masks: HostMatrix,
    pub rewards: HostMatrix,
    pub non_score_reward: HostMatrix,
    pub kls: HostMatrix,
    /// Masked values, as `compute_advantages` returns them.
    pub values: HostMatrix,
    pub advantages: HostMatrix,
    pub returns: HostMatrix,
    pub minibatches: Vec<MinibatchRecord>,
    pub early_stopped: bool,
    /// Rows whose response mask is empty (a response of at most 2 tokens): their score has no
    /// token to go to, so they contribute nothing to the update (trl raises an `IndexError`).
    pub empty_rows: Vec<usize>,
}

/// `step`'s result: trl's scalar stats and the record.
#[derive(Debug, Clone)]
pub struct StepOutput {
    pub stats: Stats,
    pub record: StepRecord,
}

/// Queries and responses right-padded over the whole batch (`prepare_model_inputs`).
#[derive(Debug, Clone)]
pub struct PaddedBatch {
    pub batch: usize,
    pub query_len: usize,
    pub response_len: usize,
    query_ids: Vec<i64>,
    query_mask: Vec<i64>,
    response_ids: Vec<i64>,
    response_mask: Vec<i64>,
}

fn pad_rows(rows: &[Vec<u32>], pad: u32) -> (usize, Vec<i64>, Vec<i64>) {
    let len = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut mask = Vec::with_capacity(rows.len() * len);
    for r in rows {
        ids.extend(r.iter().map(|&t| t as i64));
        ids.extend(std::iter::repeat_n(pad as i64, len - r.len()));
        mask.extend(std::iter::repeat_n(1i64, r.len()));
        mask.extend(std::iter::repeat_n(0i64, len - r.len()));
    }
    (len, ids, mask)
}

impl PaddedBatch {
    pub fn new(queries: &[Vec<u32>], responses: &[Vec<u32>], pad: u32) -> Self {
        let (query_len, query_ids, query_mask) = pad_rows(queries, pad);
        let (response_len, response_ids, response_mask) = pad_rows(responses, pad);
        Self {
            batch: queries.len(),
            query_len,
            response_len,
            query_ids,
            query_mask,
            response_ids,
            response_mask,
        }
    }

    fn gather(src: &[i64], width: usize, rows: &[usize]) -> Vec<i64> {
        rows.iter()
            .flat_map(|&r| src[r * width..(r + 1) * width].iter().copied())
            .collect()
    }

    /// `(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask)` of `rows`.
    pub fn tensors<B: Backend>(
        &self,
        rows: &[usize],
        device: &B::Device,
    ) -> [Tensor<B, 2, Int>; 4] {
        let n = rows.len();
        let t = |src: &[i64], w: usize| {
            Tensor::<B, 2, Int>::from_data(
                TensorData::new(Self::gather(src, w, rows), [n, w]),
                device,
            )
        };
        [
            t(&self.query_ids, self.query_len),
            t(&self.query_mask, self.query_len),
            t(&self.response_ids, self.response_len),
            t(&self.response_mask, self.response_len),
        ]
    }
}

/// `batched_forward_pass` of the policy (value head included) on `rows`.
pub fn policy_forward<B: Backend>(
    model: &Seq2SeqLMWithValueHead<B>,
    batch: &PaddedBatch,
    rows: &[usize],
    device: &B::Device,
) -> Result<ForwardOutputs<B>, RlError> {
    let [ids, mask, dec, dec_mask] = batch.tensors::<B>(rows, device);
    let out = model.forward(ids, mask, dec.clone(), dec_mask.clone());
    seq2seq_forward_outputs(out.logits, out.values, dec, dec_mask)
}

/// `batched_forward_pass` of a model without value head (the reference) on `rows`; its
/// `values` are zeros.
pub fn reference_forward<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    batch: &PaddedBatch,
    rows: &[usize],
    device: &B::Device,
) -> Result<ForwardOutputs<B>, RlError> {
    let [ids, mask, dec, dec_mask] = batch.tensors::<B>(rows, device);
    let enc = model.encode(ids, mask);
    let hidden = model.decode(dec.clone(), &enc, Some(dec_mask.clone()), None);
    let [b, n, _] = hidden.dims();
    let logits = model.lm_logits(hidden);
    seq2seq_forward_outputs(logits, Tensor::zeros([b, n], device), dec, dec_mask)
}

fn check_finite(name: &str, data: &[f32]) -> Result<(), RlError> {
    match data.iter().find(|v| !v.is_finite()) {
        Some(&value) => Err(RlError::NonFinite {
            tensor: name.to_string(),
            value,
        }),
        None => Ok(()),
    }
}

/// The state of a PPO run that is not in the model or the optimizer: what a checkpoint must
/// hold besides them to continue the same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PpoState {
    pub steps_done: usize,
    pub kl_ctl: KlController,
    pub running: RunningMoments,
    /// `clip_grad_norm_` calls made so far (see [`PpoTrainer::trl_clip_quirk`]).
    pub clip_calls: usize,
    pub seed: u64,
}

/// trl's `PPOTrainer` for a `Seq2SeqLMWithValueHead` policy: the policy, the frozen reference,
/// Adam, the KL controller and the score statistics.
pub struct PpoTrainer<B: AutodiffBackend> {
    policy: Option<Seq2SeqLMWithValueHead<B>>,
    reference: T5ForConditionalGeneration<B::InnerBackend>,
    optim: PolicyOptimizer<B>,
    pub config: PpoConfig,
    pub state: PpoState,
    /// trl 0.11.4 clips gradients only on its first `clip_grad_norm_` call (its parameter
    /// list is a one-shot iterator; see `detox_rl::trl_clips_this_call`). `true` (the default)
    /// reproduces that; `false` clips every optimizer step as `max_grad_norm` promises.
    pub trl_clip_quirk: bool,
    pad: u32,
    device: B::Device,
}

impl<B: AutodiffBackend> PpoTrainer<B> {
    /// `PPOTrainer(config, model=policy, ref_model=reference)`. `seed` drives the minibatch
    /// permutations (one stream per step, so a resumed run draws the same ones).
    pub fn new(
        policy: Seq2SeqLMWithValueHead<B>,
        reference: T5ForConditionalGeneration<B::InnerBackend>,
        config: PpoConfig,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self, RlError> {
        config.validate().map_err(RlError::Batch)?;
        let pad = policy.pretrained_model.config.pad_token_id;
        Ok(Self {
            policy: Some(policy),
            reference,
            optim: detox_train::optim::adamw(0.0).init(),
            state: PpoState {
                steps_done: 0,
                kl_ctl: config.kl_controller(),
                running: RunningMoments::default(),
                clip_calls: 0,
                seed,
            },
            config,
            trl_clip_quirk: true,
            pad,
            device: device.clone(),
        })
    }

    pub fn policy(&self) -> &Seq2SeqLMWithValueHead<B> {
        self.policy.as_ref().expect("policy present between steps")
    }

    pub fn reference(&self) -> &T5ForConditionalGeneration<B::InnerBackend> {
        &self.reference
    }

    pub fn optimizer(&self) -> &PolicyOptimizer<B> {
        &self.optim
    }

    /// Replaces the optimizer (e.g. with state loaded from a checkpoint).
    pub fn set_optimizer(&mut self, optim: PolicyOptimizer<B>) {
        self.optim = optim;
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The permutation of epoch `epoch` of the coming step (`np.random.permutation(bs)` in
    /// trl; here a seeded stream per `(seed, step, epoch)`).
    fn permutation(&self, epoch: usize) -> Vec<usize> {
        let s = self
            .state
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(((self.state.steps_done as u64) << 16) + epoch as u64 + 1);
        let mut rng = StdRng::seed_from_u64(s);
        let mut p: Vec<usize> = (0..self.config.batch_size).collect();
        p.shuffle(&mut rng);
        p
    }

    /// `step(queries, responses, scores)`.
    pub fn step(
        &mut self,
        queries: &[Vec<u32>],
        responses: &[Vec<u32>],
        scores: &[f32],
    ) -> Result<StepOutput, RlError> {
        self.step_with_permutations(queries, responses, scores, None)
    }

    /// [`step`](Self::step) with the permutation of each PPO epoch given (the parity tests
    /// replay numpy's); `None` draws them from the trainer's seed.
    pub fn step_with_permutations(
        &mut self,
        queries: &[Vec<u32>],
        responses: &[Vec<u32>],
        scores: &[f32],
        permutations: Option<&[Vec<usize>]>,
    ) -> Result<StepOutput, RlError> {
        let t0 = Instant::now();
        let cfg = self.config.clone();
        let bs = cfg.batch_size;
        // _step_safety_checker
        for (name, n) in [
            ("queries", queries.len()),
            ("responses", responses.len()),
            ("scores", scores.len()),
        ] {
            if n != bs {
                return Err(RlError::Batch(format!(
                    "Batch size ({bs}) does not match number of examples - but got {n} for: {name}"
                )));
            }
        }
        if let Some(i) = queries.iter().position(Vec::is_empty) {
            return Err(RlError::Batch(format!("query {i} is empty")));
        }
        if let Some(i) = responses.iter().position(|r| r.len() < 2) {
            return Err(RlError::Batch(format!(
                "response {i} has {} token(s); a seq2seq response starts with the decoder start \
                 token and needs at least one generated token",
                responses[i].len()
            )));
        }
        if let Some(perms) = permutations {
            if perms.len() < cfg.ppo_epochs
                || perms.iter().any(|p| {
                    let mut s = p.clone();
                    s.sort_unstable();
                    s != (0..bs).collect::<Vec<_>>()
                })
            {
                return Err(RlError::Batch(format!(
                    "need {} permutations of 0..{bs}",
                    cfg.ppo_epochs
                )));
            }
        }

        // scores: scaling, then clipping
        check_finite("scores", scores)?;
        let mut scores = scores.to_vec();
        if cfg.use_score_scaling {
            self.state.running.update(&scores);
            self.state.running.scale(&mut scores, cfg.use_score_norm);
        }
        let scores: Vec<f32> = scores.iter().map(|&s| cfg.clip_score(s)).collect();
        check_finite("scores (scaled)", &scores)?;

        let batch = PaddedBatch::new(queries, responses, self.pad);
        let device = self.device.clone();
        let full_kl = cfg.kl_penalty == KlPenalty::Full;
        let all_rows: Vec<usize> = (0..bs).collect();
        let fbs = cfg.mini_batch_size.max(1);

        // rollout forward passes (no gradient)
        let t = Instant::now();
        let policy_eval = self.policy().valid();
        // per chunk: logprobs, values, masks, ref logprobs; the [b, t, v] logits are kept only
        // for the `full` KL penalty and dropped with the chunk's outputs otherwise
        let (mut logprobs, mut values, mut masks, mut ref_lp) = (vec![], vec![], vec![], vec![]);
        let mut pol_logits = Vec::new();
        let mut ref_logits = Vec::new();
        for rows in all_rows.chunks(fbs) {
            let p = policy_forward(&policy_eval, &batch, rows, &device)?;
            let r = reference_forward(&self.reference, &batch, rows, &device)?;
            if full_kl {
                pol_logits.push(p.logits);
                ref_logits.push(r.logits);
            }
            logprobs.push(p.logprobs);
            values.push(p.values);
            masks.push(p.masks);
            ref_lp.push(r.logprobs);
        }
        drop(policy_eval);
        let all_logprobs = Tensor::cat(logprobs, 0);
        let values = Tensor::cat(values, 0);
        let masks = Tensor::cat(masks, 0);
        let ref_logprobs = Tensor::cat(ref_lp, 0);
        let time_forward = t.elapsed().as_secs_f64();

        let logprobs_h = HostMatrix::of(all_logprobs.clone());
        let ref_logprobs_h = HostMatrix::of(ref_logprobs.clone());
        let values_rollout_h = HostMatrix::of(values.clone());
        let masks_h = HostMatrix::of(masks.clone());
        check_finite("logprobs", &logprobs_h.data)?;
        check_finite("ref_logprobs", &ref_logprobs_h.data)?;
        check_finite("values", &values_rollout_h.data)?;

        // rows without any response token keep their score out of the rewards: it lands on
        // position 0, which the mask removes in compute_advantages.
        let empty_rows: Vec<usize> = (0..bs)
            .filter(|&r| masks_h.row(r).iter().all(|&m| m == 0.0))
            .collect();
        if empty_rows.len() == bs {
            return Err(RlError::Batch(
                "every response is empty (at most one generated token): nothing to train on".into(),
            ));
        }
        let score_masks = if empty_rows.is_empty() {
            masks.clone()
        } else {
            let mut m = masks_h.data.clone();
            for &r in &empty_rows {
                m[r * masks_h.cols] = 1.0;
            }
            Tensor::from_data(TensorData::new(m, [bs, masks_h.cols]), &device)
        };

        // rewards and advantages
        let t = Instant::now();
        let scores_t =
            Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(scores.clone(), [bs]), &device);
        let kl_coef = self.state.kl_ctl.value();
        let rw = if full_kl {
            compute_rewards_full(
                scores_t.clone(),
                Tensor::cat(pol_logits, 0),
                Tensor::cat(ref_logits, 0),
                score_masks,
                kl_coef,
            )?
        } else {
            compute_rewards(
                scores_t.clone(),
                all_logprobs.clone(),
                ref_logprobs.clone(),
                score_masks,
                kl_coef,
                cfg.kl_penalty,
            )?
        };
        let time_rewards = t.elapsed().as_secs_f64();
        let rewards_h = HostMatrix::of(rw.rewards.clone());
        check_finite("rewards", &rewards_h.data)?;
        let t = Instant::now();
        let adv = compute_advantages(
            values,
            rw.rewards.clone(),
            masks.clone(),
            cfg.gamma,
            cfg.lam,
            cfg.whiten_rewards,
        )?;
        let time_adv = t.elapsed().as_secs_f64();
        let advantages_h = HostMatrix::of(adv.advantages.clone());
        let returns_h = HostMatrix::of(adv.returns.clone());
        check_finite("advantages", &advantages_h.data)?;
        check_finite("returns", &returns_h.data)?;

        // the PPO epochs
        let t = Instant::now();
        let to_ad = |x: Tensor<B::InnerBackend, 2>| Tensor::<B, 2>::from_inner(x);
        let old_logprobs = to_ad(all_logprobs.clone());
        let old_values = to_ad(adv.values.clone());
        let masks_ad = to_ad(masks.clone());
        let advantages = to_ad(adv.advantages.clone());
        let returns = to_ad(adv.returns.clone());
        let ga = cfg.gradient_accumulation_steps.max(1);
        let mut minibatches = Vec::new();
        let mut train_stats: Vec<Stats> = Vec::new();
        let mut early_stopped = false;
        let mut accum = GradientsAccumulator::<Seq2SeqLMWithValueHead<B>>::new();
        let mut pending = 0usize;
        let loss_cfg = cfg.loss_config();
        for epoch in 0..cfg.ppo_epochs {
            let perm = match permutations {
                Some(p) => p[epoch].clone(),
                None => self.permutation(epoch),
            };
            let mut last_policykl = 0.0;
            for rows in cfg.minibatches_from_permutation(&perm) {
                let idx = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(rows.iter().map(|&r| r as i64).collect(), [rows.len()]),
                    &device,
                );
                let pick = |x: &Tensor<B, 2>| x.clone().select(0, idx.clone());
                let policy = self.policy.take().expect("policy present between steps");
                let out = match policy_forward(&policy, &batch, &rows, &device) {
                    Ok(o) => o,
                    Err(e) => {
                        self.policy = Some(policy);
                        return Err(e);
                    }
                };
                let loss = ppo_loss(
                    pick(&old_logprobs),
                    pick(&old_values),
                    out.logits,
                    out.values,
                    out.logprobs,
                    pick(&masks_ad),
                    pick(&advantages),
                    pick(&returns),
                    &loss_cfg,
                );
                let loss = match loss {
                    Ok(l) => l,
                    Err(e) => {
                        self.policy = Some(policy);
                        return Err(e);
                    }
                };
                let total = loss.stats["loss/total"] as f32;
                if !total.is_finite() {
                    self.policy = Some(policy);
                    return Err(RlError::NonFinite {
                        tensor: "loss/total".into(),
                        value: total,
                    });
                }
                last_policykl = loss.stats["policy/policykl"];
                minibatches.push(MinibatchRecord {
                    rows: rows.clone(),
                    pg_loss: loss.stats["loss/policy"] as f32,
                    vf_loss: (loss.stats["loss/value"] * cfg.vf_coef) as f32,
                    stats: loss.stats.clone(),
                });
                train_stats.push(loss.stats);
                let mut l = loss.pg_loss + loss.vf_loss;
                if ga > 1 {
                    l = l.div_scalar(ga as f64);
                }
                let grads = GradientsParams::from_grads(l.backward(), &policy);
                accum.accumulate(&policy, grads);
                pending += 1;
                let policy = if pending == ga {
                    pending = 0;
                    let mut grads = accum.grads();
                    if let Some(max_norm) = cfg.max_grad_norm {
                        let clip = !self.trl_clip_quirk || self.state.clip_calls == 0;
                        self.state.clip_calls += 1;
                        if clip {
                            let sq = detox_train::clip::squared_sums(&policy, &grads);
                            let scale = global_norm_scale(&sq, max_norm as f32);
                            detox_train::clip::scale_grads(&policy, &mut grads, scale);
                        }
                    }
                    self.optim.step(cfg.learning_rate, policy, grads)
                } else {
                    policy
                };
                self.policy = Some(policy);
            }
            if cfg.early_stop(last_policykl) {
                // trl zeroes the gradients (already applied: an epoch holds whole backward
                // batches) and skips the remaining epochs
                early_stopped = true;
                break;
            }
        }
        let time_optimize = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let query_lens: Vec<usize> = queries.iter().map(Vec::len).collect();
        let response_lens: Vec<usize> = responses.iter().map(Vec::len).collect();
        let mut stats = record_step_stats(
            kl_coef,
            scores_t,
            all_logprobs,
            rw.non_score_rewards.clone(),
            rw.kls.clone(),
            masks,
            &query_lens,
            &response_lens,
            &train_stats,
        );
        stats.insert("ppo/learning_rate".into(), cfg.learning_rate);
        let time_stats = t.elapsed().as_secs_f64();
        let kl = stats["objective/kl"];
        if !kl.is_finite() {
            return Err(RlError::NonFinite {
                tensor: "objective/kl".into(),
                value: kl as f32,
            });
        }
        self.state.kl_ctl.update(kl, bs);
        self.state.steps_done += 1;
        for (k, v) in [
            ("time/ppo/forward_pass", time_forward),
            ("time/ppo/compute_rewards", time_rewards),
            ("time/ppo/compute_advantages", time_adv),
            ("time/ppo/optimize_step", time_optimize),
            ("time/ppo/calc_stats", time_stats),
            ("time/ppo/total", t0.elapsed().as_secs_f64()),
        ] {
            stats.insert(k.into(), v);
        }
        let record = StepRecord {
            scores,
            logprobs: logprobs_h,
            ref_logprobs: ref_logprobs_h,
            values_rollout: values_rollout_h,
            masks: masks_h,
            rewards: rewards_h,
            non_score_reward: HostMatrix::of(rw.non_score_rewards),
            kls: HostMatrix::of(rw.kls),
            values: HostMatrix::of(adv.values),
            advantages: advantages_h,
            returns: returns_h,
            minibatches,
            early_stopped,
            empty_rows,
        };
        Ok(StepOutput { stats, record })
    }
}
