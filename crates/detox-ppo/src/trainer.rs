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
use detox_hub::tokenizer::{pad_batch, EncodedBatch};
use detox_models::T5ForConditionalGeneration;
use detox_parallel::Peer;
use detox_rl::{
    compute_advantages, compute_rewards, compute_rewards_full, item, masked_mean, ppo_loss,
    record_step_stats, seq2seq_forward_outputs, to_vec_f32, trl_clips_this_call, Advantages,
    ForwardOutputs, KlController, KlPenalty, PpoConfig, Rewards, RlError, RunningMoments, Stats,
    LOSS_STAT_KEYS,
};
use detox_train::clip_grad_norm;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::model::Seq2SeqLMWithValueHead;
use crate::rollout::PolicyRollout;

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

    /// [`of`](Self::of), with an error naming `name` if any element is not finite.
    fn checked<B: Backend>(name: &str, t: Tensor<B, 2>) -> Result<Self, RlError> {
        let m = Self::of(t);
        check_finite(name, &m.data)?;
        Ok(m)
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
    queries: EncodedBatch,
    responses: EncodedBatch,
}

impl PaddedBatch {
    pub fn new(queries: &[Vec<u32>], responses: &[Vec<u32>], pad: u32) -> Self {
        Self {
            batch: queries.len(),
            queries: pad_batch(queries.to_vec(), pad),
            responses: pad_batch(responses.to_vec(), pad),
        }
    }

    /// `(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask)` of `rows`.
    pub fn tensors<B: Backend>(
        &self,
        rows: &[usize],
        device: &B::Device,
    ) -> [Tensor<B, 2, Int>; 4] {
        let (ids, mask) = self.queries.rows_tensors(rows, device);
        let (dec, dec_mask) = self.responses.rows_tensors(rows, device);
        [ids, mask, dec, dec_mask]
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

/// The policy's [`ForwardOutputs`] of `rows` from a [`PolicyRollout`]: log-probs and values
/// on each row's real positions, zeros on the padding (masked out of every use), the masks as
/// the forward pass builds them. `logits` (the reference's, unused without the `full` KL
/// penalty) only fills the field.
fn known_policy_outputs<B: Backend>(
    known: &PolicyRollout,
    batch: &PaddedBatch,
    rows: &[usize],
    logits: Tensor<B, 3>,
    device: &B::Device,
) -> ForwardOutputs<B> {
    let [.., dec_mask] = batch.tensors::<B>(rows, device);
    let [_, n] = dec_mask.dims();
    let w = n.saturating_sub(1);
    let padded = |per_row: &[Vec<f32>]| {
        let mut data = vec![0.0f32; rows.len() * w];
        for (i, &r) in rows.iter().enumerate() {
            data[i * w..i * w + per_row[r].len()].copy_from_slice(&per_row[r]);
        }
        Tensor::<B, 2>::from_data(TensorData::new(data, [rows.len(), w]), device)
    };
    ForwardOutputs {
        logprobs: padded(&known.logprobs),
        values: padded(&known.values),
        masks: detox_rl::seq2seq_response_masks(dec_mask),
        logits,
    }
}

/// One row of log-probs and values per response, `len(response) - 1` long each.
fn check_policy_rollout(r: &PolicyRollout, responses: &[Vec<u32>]) -> Result<(), RlError> {
    if r.logprobs.len() != responses.len() || r.values.len() != responses.len() {
        return Err(RlError::Shape(format!(
            "policy rollout of {} / {} rows (log-probs / values) for {} responses",
            r.logprobs.len(),
            r.values.len(),
            responses.len()
        )));
    }
    for (i, resp) in responses.iter().enumerate() {
        let want = resp.len().saturating_sub(1);
        if r.logprobs[i].len() != want || r.values[i].len() != want {
            return Err(RlError::Shape(format!(
                "policy rollout row {i}: {} log-probs and {} values for a response of {} tokens \
                 (expected {want} each)",
                r.logprobs[i].len(),
                r.values[i].len(),
                resp.len()
            )));
        }
    }
    Ok(())
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
    /// This trainer's place in a data-parallel step (`None`: it trains alone), see
    /// [`PpoTrainer::set_peer`].
    peer: Option<Peer>,
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
            peer: None,
        })
    }

    /// Makes this trainer `peer` of a data-parallel run (`detox-parallel`). Every peer calls
    /// `step` with the whole batch; the rollout pass is split by rows and gathered (except with
    /// the `full` KL penalty, whose logits each peer computes whole), rewards and advantages are
    /// computed on the whole batch by each peer (advantages whitened over the global batch),
    /// and every minibatch's forward and backward pass is split: each peer takes its share of
    /// the minibatch's rows, weights its loss by its share of the minibatch's response tokens,
    /// and the peers sum their gradients before clipping and Adam and their token-weighted
    /// stats (`policykl` for early stopping, `avg_ratio` for `ratio_threshold`), so the update
    /// is one device's. The policy first takes peer 0's weights.
    pub fn set_peer(&mut self, peer: Peer) -> Result<(), RlError> {
        let policy = self.policy.take().expect("policy present between steps");
        self.policy = Some(peer.broadcast_module(policy).map_err(collective)?);
        self.peer = Some(peer);
        Ok(())
    }

    /// This trainer's place in a data-parallel run ([`set_peer`](Self::set_peer)), if any.
    pub fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref()
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

    /// [`step`](Self::step) with the policy's log-probs and values of the responses already
    /// known (kept from the decode loop that sampled them, [`crate::rollout`]): the rollout
    /// pass then runs the reference only.
    pub fn step_reusing(
        &mut self,
        queries: &[Vec<u32>],
        responses: &[Vec<u32>],
        scores: &[f32],
        policy_rollout: &PolicyRollout,
        permutations: Option<&[Vec<usize>]>,
    ) -> Result<StepOutput, RlError> {
        self.step_inner(
            queries,
            responses,
            scores,
            permutations,
            Some(policy_rollout),
        )
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
        self.step_inner(queries, responses, scores, permutations, None)
    }

    /// The step. Orchestration only, as trl's `step`: each stage is a named function below.
    fn step_inner(
        &mut self,
        queries: &[Vec<u32>],
        responses: &[Vec<u32>],
        scores: &[f32],
        permutations: Option<&[Vec<usize>]>,
        policy_rollout: Option<&PolicyRollout>,
    ) -> Result<StepOutput, RlError> {
        let mut times = StepTimes::start();
        step_safety_checker(&self.config, queries, responses, scores, permutations)?;
        if let Some(r) = policy_rollout {
            check_policy_rollout(r, responses)?;
        }
        let scores = self.scale_scores(scores)?;
        let batch = PaddedBatch::new(queries, responses, self.pad);
        let device = self.device.clone();

        let mut rollout = times.time("forward_pass", || {
            self.batched_forward_pass(&batch, policy_rollout)
        })?;
        let host = RolloutHost::of(&rollout)?;
        let (empty_rows, score_masks) = score_masks(&rollout.masks, &host.masks, &device)?;

        let scores_t = Tensor::<B::InnerBackend, 1>::from_data(
            TensorData::new(scores.clone(), [scores.len()]),
            &device,
        );
        let kl_coef = self.state.kl_ctl.value();
        let rw = times.time("compute_rewards", || {
            self.compute_rewards(scores_t.clone(), &mut rollout, score_masks, kl_coef)
        })?;
        let rewards_h = HostMatrix::checked("rewards", rw.rewards.clone())?;
        let cfg = &self.config;
        let adv = times.time("compute_advantages", || {
            compute_advantages(
                rollout.values.clone(),
                rw.rewards.clone(),
                rollout.masks.clone(),
                cfg.gamma,
                cfg.lam,
                cfg.whiten_rewards,
            )
        })?;
        let advantages_h = HostMatrix::checked("advantages", adv.advantages.clone())?;
        let returns_h = HostMatrix::checked("returns", adv.returns.clone())?;

        let (minibatches, early_stopped) = times.time("optimize_step", || {
            let targets = Targets::<B>::new(&rollout, &adv, &host.masks);
            self.train_epochs(&batch, &targets, permutations)
        })?;
        let mut stats = times.time("calc_stats", || {
            self.record_step_stats(
                kl_coef,
                scores_t,
                &rollout,
                &rw,
                queries,
                responses,
                &minibatches,
            )
        })?;
        self.state
            .kl_ctl
            .update(stats["objective/kl"], queries.len());
        self.state.steps_done += 1;
        times.record(&mut stats);
        let record = StepRecord {
            scores,
            logprobs: host.logprobs,
            ref_logprobs: host.ref_logprobs,
            values_rollout: host.values,
            masks: host.masks,
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

    /// Score scaling ([`RunningMoments`], when `use_score_scaling`), then `score_clip`.
    fn scale_scores(&mut self, scores: &[f32]) -> Result<Vec<f32>, RlError> {
        check_finite("scores", scores)?;
        let cfg = &self.config;
        let mut scores = scores.to_vec();
        if cfg.use_score_scaling {
            self.state.running.update(&scores);
            self.state.running.scale(&mut scores, cfg.use_score_norm);
        }
        let scores: Vec<f32> = scores.iter().map(|&s| cfg.clip_score(s)).collect();
        check_finite("scores (scaled)", &scores)?;
        Ok(scores)
    }

    /// The rollout `batched_forward_pass` of the policy (in eval mode) and of the reference over
    /// the whole batch, without gradient, in chunks of `mini_batch_size`; the policy's part
    /// taken from `policy_rollout` when given (not with the `full` KL penalty, which needs the
    /// policy's logits).
    fn batched_forward_pass(
        &self,
        batch: &PaddedBatch,
        policy_rollout: Option<&PolicyRollout>,
    ) -> Result<Rollout<B::InnerBackend>, RlError> {
        let full_kl = self.config.kl_penalty == KlPenalty::Full;
        let policy_rollout = policy_rollout.filter(|_| !full_kl);
        let all_rows: Vec<usize> = (0..batch.batch).collect();
        // a data-parallel peer computes its share of the rows and gathers the rest (not with
        // the `full` penalty, whose [b, t, vocab] logits are too large to gather)
        let split = self.peer.as_ref().filter(|_| !full_kl);
        let rows_here = match split {
            Some(p) => all_rows[detox_parallel::share(batch.batch, p.world, p.rank)].to_vec(),
            None => all_rows,
        };
        let policy = self.policy().valid();
        let (mut logprobs, mut values, mut masks, mut ref_lp) = (vec![], vec![], vec![], vec![]);
        let (mut pol_logits, mut ref_logits) = (vec![], vec![]);
        for rows in rows_here.chunks(self.config.mini_batch_size.max(1)) {
            let r = reference_forward(&self.reference, batch, rows, &self.device)?;
            let p = match policy_rollout {
                Some(known) => {
                    known_policy_outputs(known, batch, rows, r.logits.clone(), &self.device)
                }
                None => policy_forward(&policy, batch, rows, &self.device)?,
            };
            if full_kl {
                pol_logits.push(p.logits);
                ref_logits.push(r.logits);
            }
            logprobs.push(p.logprobs);
            values.push(p.values);
            masks.push(p.masks);
            ref_lp.push(r.logprobs);
        }
        if let Some(p) = split {
            let range = detox_parallel::share(batch.batch, p.world, p.rank);
            let gather = |parts: Vec<Tensor<B::InnerBackend, 2>>| {
                let mine = match parts.is_empty() {
                    true => Vec::new(),
                    false => host_rows(Tensor::cat(parts, 0)),
                };
                let all = p
                    .all_gather_rows::<B::InnerBackend>(
                        batch.batch,
                        range.clone(),
                        &mine,
                        &self.device,
                    )
                    .map_err(collective)?;
                let w = all.first().map_or(0, Vec::len);
                let flat: Vec<f32> = all.into_iter().flatten().collect();
                Ok::<_, RlError>(Tensor::from_data(
                    TensorData::new(flat, [batch.batch, w]),
                    &self.device,
                ))
            };
            return Ok(Rollout {
                logprobs: gather(logprobs)?,
                values: gather(values)?,
                masks: gather(masks)?,
                ref_logprobs: gather(ref_lp)?,
                full_logits: None,
            });
        }
        Ok(Rollout {
            logprobs: Tensor::cat(logprobs, 0),
            values: Tensor::cat(values, 0),
            masks: Tensor::cat(masks, 0),
            ref_logprobs: Tensor::cat(ref_lp, 0),
            full_logits: full_kl.then(|| (Tensor::cat(pol_logits, 0), Tensor::cat(ref_logits, 0))),
        })
    }

    /// `compute_rewards` with the KL controller's coefficient (the `full` variant takes the
    /// rollout's logits, which are dropped with it).
    fn compute_rewards(
        &self,
        scores: Tensor<B::InnerBackend, 1>,
        rollout: &mut Rollout<B::InnerBackend>,
        score_masks: Tensor<B::InnerBackend, 2>,
        kl_coef: f64,
    ) -> Result<Rewards<B::InnerBackend>, RlError> {
        match rollout.full_logits.take() {
            Some((logits, ref_logits)) => {
                compute_rewards_full(scores, logits, ref_logits, score_masks, kl_coef)
            }
            None => compute_rewards(
                scores,
                rollout.logprobs.clone(),
                rollout.ref_logprobs.clone(),
                score_masks,
                kl_coef,
                self.config.kl_penalty,
            ),
        }
    }

    /// `ppo_epochs` × a permutation of the batch cut into minibatches ([`train_minibatch`]),
    /// one optimizer step every `gradient_accumulation_steps` minibatches, early stopping on
    /// `policykl` after each epoch. Returns the minibatches' records and whether it stopped
    /// early.
    ///
    /// [`train_minibatch`]: Self::train_minibatch
    fn train_epochs(
        &mut self,
        batch: &PaddedBatch,
        targets: &Targets<B>,
        permutations: Option<&[Vec<usize>]>,
    ) -> Result<(Vec<MinibatchRecord>, bool), RlError> {
        let ga = self.config.gradient_accumulation_steps.max(1);
        let mut minibatches = Vec::new();
        let mut accum = GradientsAccumulator::<Seq2SeqLMWithValueHead<B>>::new();
        let mut pending = 0usize;
        for epoch in 0..self.config.ppo_epochs {
            let perm = match permutations {
                Some(p) => p[epoch].clone(),
                None => self.permutation(epoch),
            };
            let mut last_policykl = 0.0;
            for rows in self.config.minibatches_from_permutation(&perm) {
                let record = self.train_minibatch(batch, targets, rows, ga, &mut accum)?;
                last_policykl = record.stats["policy/policykl"];
                minibatches.push(record);
                pending += 1;
                if pending == ga {
                    pending = 0;
                    self.optimizer_step(accum.grads())?;
                }
            }
            if self.config.early_stop(last_policykl) {
                // trl zeroes the gradients (already applied: an epoch holds whole backward
                // batches) and skips the remaining epochs
                return Ok((minibatches, true));
            }
        }
        Ok((minibatches, false))
    }

    /// One minibatch of `train_minibatch`: a forward pass with gradient, `loss`, and the
    /// backward pass of `(pg_loss + vf_loss) / gradient_accumulation_steps` into `accum`. Only
    /// reads the policy, so an error leaves it as it was.
    fn train_minibatch(
        &self,
        batch: &PaddedBatch,
        targets: &Targets<B>,
        rows: Vec<usize>,
        ga: usize,
        accum: &mut GradientsAccumulator<Seq2SeqLMWithValueHead<B>>,
    ) -> Result<MinibatchRecord, RlError> {
        if let Some(peer) = &self.peer {
            return self.train_minibatch_share(peer, batch, targets, rows, ga, accum);
        }
        let (loss, _) = self.rows_loss(batch, targets, &rows, &self.config.loss_config())?;
        check_total_loss(loss.stats["loss/total"])?;
        self.accumulate(loss.pg_loss + loss.vf_loss, 1.0, ga, accum);
        Ok(MinibatchRecord {
            rows,
            pg_loss: loss.stats["loss/policy"] as f32,
            vf_loss: (loss.stats["loss/value"] * self.config.vf_coef) as f32,
            stats: loss.stats,
        })
    }

    /// trl's `loss` on `rows`: the policy's forward pass with gradient against the rollout's
    /// targets. Also returns the rows' `[masks, returns, old_values]`.
    fn rows_loss(
        &self,
        batch: &PaddedBatch,
        targets: &Targets<B>,
        rows: &[usize],
        cfg: &detox_rl::PpoLossConfig,
    ) -> Result<(detox_rl::PpoLossOutput<B>, [Tensor<B, 2>; 3]), RlError> {
        let out = policy_forward(self.policy(), batch, rows, &self.device)?;
        let [old_logprobs, old_values, masks, advantages, returns] =
            targets.rows(rows, &self.device);
        let kept = [masks.clone(), returns.clone(), old_values.clone()];
        let loss = ppo_loss(
            old_logprobs,
            old_values,
            out.logits,
            out.values,
            out.logprobs,
            masks,
            advantages,
            returns,
            cfg,
        )?;
        Ok((loss, kept))
    }

    /// The backward pass of `loss` (`pg_loss + vf_loss`) times `scale`, divided by
    /// `gradient_accumulation_steps`, into `accum`.
    fn accumulate(
        &self,
        loss: Tensor<B, 1>,
        scale: f64,
        ga: usize,
        accum: &mut GradientsAccumulator<Seq2SeqLMWithValueHead<B>>,
    ) {
        let policy = self.policy();
        let mut l = if scale == 1.0 {
            loss
        } else {
            loss.mul_scalar(scale)
        };
        if ga > 1 {
            l = l.div_scalar(ga as f64);
        }
        accum.accumulate(policy, GradientsParams::from_grads(l.backward(), policy));
    }

    /// [`train_minibatch`](Self::train_minibatch) of a data-parallel peer: its share of `rows`
    /// (contiguous, [`detox_parallel::share`]) with the loss weighted by the share's response
    /// tokens, and the minibatch's stats as one device computes them over all `rows`: the
    /// peers' token-weighted sums of the masked means, the variances from the summed first and
    /// second moments, `ratio_threshold` judged on the summed `avg_ratio`.
    fn train_minibatch_share(
        &self,
        peer: &Peer,
        batch: &PaddedBatch,
        targets: &Targets<B>,
        rows: Vec<usize>,
        ga: usize,
        accum: &mut GradientsAccumulator<Seq2SeqLMWithValueHead<B>>,
    ) -> Result<MinibatchRecord, RlError> {
        let tokens: Vec<usize> = rows.iter().map(|&r| targets.row_tokens[r]).collect();
        let total: usize = tokens.iter().sum();
        let range = detox_parallel::share(rows.len(), peer.world, peer.rank);
        let share_tokens: usize = tokens[range.clone()].iter().sum();
        let (mine, weight) = if share_tokens == 0 {
            // nothing of this minibatch to learn from here: any row with tokens, weight 0, so
            // that this peer still adds a (zero) gradient for every parameter
            let any = tokens
                .iter()
                .position(|&t| t > 0)
                .ok_or(RlError::ZeroMaskSum)?;
            (vec![rows[any]], 0.0)
        } else {
            (rows[range].to_vec(), share_tokens as f64 / total as f64)
        };
        let mut cfg = self.config.loss_config();
        // judged below on the whole minibatch's avg_ratio
        cfg.ratio_threshold = f64::INFINITY;
        let (loss, [masks, returns, old_values]) = self.rows_loss(batch, targets, &mine, &cfg)?;
        let second_moments = [returns, old_values]
            .map(|x| item(masked_mean(x.detach().square(), masks.clone(), None)) as f64);
        let mut local: Vec<f32> = LOSS_STAT_KEYS
            .iter()
            .map(|k| match *k {
                "returns/var" | "val/var" => 0.0,
                k => (weight * loss.stats[k]) as f32,
            })
            .collect();
        local.push((weight * loss.avg_ratio as f64) as f32);
        local.extend(second_moments.map(|m| (weight * m) as f32));
        let sums = peer
            .all_reduce_sum::<B::InnerBackend>(&local, &self.device)
            .map_err(collective)?;
        let n = LOSS_STAT_KEYS.len();
        let mut stats: Stats = LOSS_STAT_KEYS
            .iter()
            .zip(&sums)
            .map(|(k, &v)| (k.to_string(), v as f64))
            .collect();
        let bessel = total as f64 / (total as f64 - 1.0);
        for (key, mean, m2) in [
            ("returns/var", "returns/mean", sums[n + 1]),
            ("val/var", "val/mean", sums[n + 2]),
        ] {
            let mean = stats[mean];
            stats.insert(key.into(), (m2 as f64 - mean * mean) * bessel);
        }
        let skipped = sums[n] as f64 > self.config.ratio_threshold;
        if skipped {
            for k in ["loss/policy", "loss/value", "loss/total"] {
                stats.insert(k.into(), 0.0);
            }
        }
        check_total_loss(stats["loss/total"])?;
        let scale = if skipped { 0.0 } else { weight };
        self.accumulate(loss.pg_loss + loss.vf_loss, scale, ga, accum);
        Ok(MinibatchRecord {
            rows,
            pg_loss: stats["loss/policy"] as f32,
            vf_loss: (stats["loss/value"] * self.config.vf_coef) as f32,
            stats,
        })
    }

    /// The optional global-norm clipping (trl's first-call-only quirk included, see
    /// [`trl_clip_quirk`](Self::trl_clip_quirk)) and one Adam step: the one place the policy is
    /// replaced. A data-parallel peer first sums its gradients with the other peers'.
    fn optimizer_step(&mut self, mut grads: GradientsParams) -> Result<(), RlError> {
        if let Some(peer) = &self.peer {
            grads = peer
                .all_reduce_grads(self.policy(), grads, &self.device)
                .map_err(collective)?;
        }
        let policy = self.policy.take().expect("policy present between steps");
        if let Some(max_norm) = self.config.max_grad_norm {
            let clips = !self.trl_clip_quirk || trl_clips_this_call(self.state.clip_calls);
            self.state.clip_calls += 1;
            if clips {
                clip_grad_norm(&policy, &mut grads, max_norm);
            }
        }
        self.policy = Some(self.optim.step(self.config.learning_rate, policy, grads));
        Ok(())
    }

    /// `record_step_stats` (+ `ppo/learning_rate`); a non-finite `objective/kl` stops the step
    /// before the KL controller sees it.
    #[allow(clippy::too_many_arguments)]
    fn record_step_stats(
        &self,
        kl_coef: f64,
        scores: Tensor<B::InnerBackend, 1>,
        rollout: &Rollout<B::InnerBackend>,
        rw: &Rewards<B::InnerBackend>,
        queries: &[Vec<u32>],
        responses: &[Vec<u32>],
        minibatches: &[MinibatchRecord],
    ) -> Result<Stats, RlError> {
        let query_lens: Vec<usize> = queries.iter().map(Vec::len).collect();
        let response_lens: Vec<usize> = responses.iter().map(Vec::len).collect();
        let train_stats: Vec<Stats> = minibatches.iter().map(|m| m.stats.clone()).collect();
        let mut stats = record_step_stats(
            kl_coef,
            scores,
            rollout.logprobs.clone(),
            rw.non_score_rewards.clone(),
            rw.kls.clone(),
            rollout.masks.clone(),
            &query_lens,
            &response_lens,
            &train_stats,
        );
        stats.insert("ppo/learning_rate".into(), self.config.learning_rate);
        let kl = stats["objective/kl"];
        if !kl.is_finite() {
            return Err(RlError::NonFinite {
                tensor: "objective/kl".into(),
                value: kl as f32,
            });
        }
        Ok(stats)
    }
}

/// trl's `timing` entries of a step: seconds of each stage (`time/ppo/<stage>`) and
/// `time/ppo/total` since the step began.
struct StepTimes {
    start: Instant,
    stages: Vec<(&'static str, f64)>,
}

impl StepTimes {
    fn start() -> Self {
        Self {
            start: Instant::now(),
            stages: Vec::new(),
        }
    }

    /// Runs `f`, recording its seconds as `stage`.
    fn time<T>(&mut self, stage: &'static str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.stages.push((stage, t.elapsed().as_secs_f64()));
        out
    }

    fn record(self, stats: &mut Stats) {
        for (stage, secs) in self.stages {
            stats.insert(format!("time/ppo/{stage}"), secs);
        }
        stats.insert("time/ppo/total".into(), self.start.elapsed().as_secs_f64());
    }
}

/// trl's `_step_safety_checker`: one query, response and score per batch row, no empty query,
/// every response at least the decoder start token and one generated token; given
/// permutations must be `ppo_epochs` permutations of the batch rows.
fn step_safety_checker(
    cfg: &PpoConfig,
    queries: &[Vec<u32>],
    responses: &[Vec<u32>],
    scores: &[f32],
    permutations: Option<&[Vec<usize>]>,
) -> Result<(), RlError> {
    let bs = cfg.batch_size;
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
    let is_permutation = |p: &Vec<usize>| {
        let mut s = p.clone();
        s.sort_unstable();
        s == (0..bs).collect::<Vec<_>>()
    };
    match permutations {
        Some(perms) if perms.len() < cfg.ppo_epochs || !perms.iter().all(is_permutation) => Err(
            RlError::Batch(format!("need {} permutations of 0..{bs}", cfg.ppo_epochs)),
        ),
        _ => Ok(()),
    }
}

/// The rollout of one step (`batched_forward_pass` of the policy and of the reference).
struct Rollout<B: Backend> {
    logprobs: Tensor<B, 2>,
    /// The values as the forward pass returns them (not masked).
    values: Tensor<B, 2>,
    masks: Tensor<B, 2>,
    ref_logprobs: Tensor<B, 2>,
    /// The `[b, t, v]` logits of the policy and the reference, kept only for the `full` KL
    /// penalty (dropped chunk by chunk otherwise).
    full_logits: Option<(Tensor<B, 3>, Tensor<B, 3>)>,
}

/// A minibatch whose `loss/total` is not finite stops the step before its backward pass.
fn check_total_loss(total: f64) -> Result<(), RlError> {
    let total = total as f32;
    if total.is_finite() {
        Ok(())
    } else {
        Err(RlError::NonFinite {
            tensor: "loss/total".into(),
            value: total,
        })
    }
}

/// The rows of a `[rows, cols]` matrix, on the host.
fn host_rows<B: Backend>(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [_, cols] = t.dims();
    to_vec_f32(t)
        .chunks(cols.max(1))
        .map(<[f32]>::to_vec)
        .collect()
}

/// A collective operation's failure as the step's error.
fn collective(e: detox_parallel::ParallelError) -> RlError {
    RlError::Collective(e.to_string())
}

/// The rollout read back to the host for the step's record, each tensor checked finite.
struct RolloutHost {
    logprobs: HostMatrix,
    ref_logprobs: HostMatrix,
    values: HostMatrix,
    masks: HostMatrix,
}

impl RolloutHost {
    fn of<B: Backend>(r: &Rollout<B>) -> Result<Self, RlError> {
        Ok(Self {
            logprobs: HostMatrix::checked("logprobs", r.logprobs.clone())?,
            ref_logprobs: HostMatrix::checked("ref_logprobs", r.ref_logprobs.clone())?,
            values: HostMatrix::checked("values", r.values.clone())?,
            masks: HostMatrix::of(r.masks.clone()),
        })
    }
}

/// The rows whose response mask is empty and the mask `compute_rewards` places the scores
/// with: such a row keeps its score out of the rewards by putting it on position 0, which the
/// mask removes in `compute_advantages`. Every row empty is an error.
fn score_masks<B: Backend>(
    masks: &Tensor<B, 2>,
    host: &HostMatrix,
    device: &B::Device,
) -> Result<(Vec<usize>, Tensor<B, 2>), RlError> {
    let empty_rows: Vec<usize> = (0..host.rows)
        .filter(|&r| host.row(r).iter().all(|&m| m == 0.0))
        .collect();
    if empty_rows.len() == host.rows {
        return Err(RlError::Batch(
            "every response is empty (at most one generated token): nothing to train on".into(),
        ));
    }
    if empty_rows.is_empty() {
        return Ok((empty_rows, masks.clone()));
    }
    let mut m = host.data.clone();
    for &r in &empty_rows {
        m[r * host.cols] = 1.0;
    }
    let t = Tensor::from_data(TensorData::new(m, [host.rows, host.cols]), device);
    Ok((empty_rows, t))
}

/// What the minibatch updates compare with, on the autodiff backend (no gradient): the
/// rollout's log-probs, the masked values of `compute_advantages`, the masks, the advantages
/// and the returns.
struct Targets<B: AutodiffBackend> {
    /// Response tokens of each row (the mask's sum): a data-parallel share's weight.
    row_tokens: Vec<usize>,
    old_logprobs: Tensor<B, 2>,
    old_values: Tensor<B, 2>,
    masks: Tensor<B, 2>,
    advantages: Tensor<B, 2>,
    returns: Tensor<B, 2>,
}

impl<B: AutodiffBackend> Targets<B> {
    fn new(
        rollout: &Rollout<B::InnerBackend>,
        adv: &Advantages<B::InnerBackend>,
        masks: &HostMatrix,
    ) -> Self {
        let lift = |x: &Tensor<B::InnerBackend, 2>| Tensor::<B, 2>::from_inner(x.clone());
        Self {
            row_tokens: (0..masks.rows)
                .map(|r| masks.row(r).iter().filter(|&&m| m != 0.0).count())
                .collect(),
            old_logprobs: lift(&rollout.logprobs),
            old_values: lift(&adv.values),
            masks: lift(&rollout.masks),
            advantages: lift(&adv.advantages),
            returns: lift(&adv.returns),
        }
    }

    /// `[old_logprobs, old_values, masks, advantages, returns]` of `rows`.
    fn rows(&self, rows: &[usize], device: &B::Device) -> [Tensor<B, 2>; 5] {
        let idx = Tensor::<B, 1, Int>::from_data(
            TensorData::new(rows.iter().map(|&r| r as i64).collect(), [rows.len()]),
            device,
        );
        [
            &self.old_logprobs,
            &self.old_values,
            &self.masks,
            &self.advantages,
            &self.returns,
        ]
        .map(|x| x.clone().select(0, idx.clone()))
    }
}
