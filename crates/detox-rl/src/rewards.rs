//! `PPOTrainer.compute_rewards` and `PPOTrainer._kl_penalty` (trl 0.11.4).

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RlError};
use crate::trl_core::{logprobs_full_from_logits, to_vec_f32};

/// `PPOConfig.kl_penalty`: how the per-token KL estimate is formed from the policy and reference
/// log-probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlPenalty {
    /// `"kl"`: `logprob - ref_logprob` (trl's default).
    #[default]
    Kl,
    /// `"abs"`: `|logprob - ref_logprob|`.
    Abs,
    /// `"mse"`: `0.5 * (logprob - ref_logprob)^2`.
    Mse,
    /// `"full"`: the exact KL of the two next-token distributions,
    /// `sum_v exp(logp) * (logp - ref_logp)`; needs full logits, see [`compute_rewards_full`].
    Full,
}

impl KlPenalty {
    /// trl's config string.
    pub fn as_str(self) -> &'static str {
        match self {
            KlPenalty::Kl => "kl",
            KlPenalty::Abs => "abs",
            KlPenalty::Mse => "mse",
            KlPenalty::Full => "full",
        }
    }
}

impl fmt::Display for KlPenalty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KlPenalty {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "kl" => Ok(KlPenalty::Kl),
            "abs" => Ok(KlPenalty::Abs),
            "mse" => Ok(KlPenalty::Mse),
            "full" => Ok(KlPenalty::Full),
            other => Err(format!(
                "kl_penalty must be one of kl, abs, mse, full (got {other:?})"
            )),
        }
    }
}

/// `PPOTrainer._kl_penalty(logprob, ref_logprob)` for the modes that work on gathered
/// log-probabilities (`[b, t]` → `[b, t]`). [`KlPenalty::Full`] returns
/// [`RlError::FullKlNeedsLogits`]; use [`kl_penalty_full`].
pub fn kl_penalty<B: Backend>(
    logprob: Tensor<B, 2>,
    ref_logprob: Tensor<B, 2>,
    mode: KlPenalty,
) -> Result<Tensor<B, 2>> {
    let diff = logprob - ref_logprob;
    match mode {
        KlPenalty::Kl => Ok(diff),
        KlPenalty::Abs => Ok(diff.abs()),
        KlPenalty::Mse => Ok(diff.square().mul_scalar(0.5)),
        KlPenalty::Full => Err(RlError::FullKlNeedsLogits),
    }
}

/// `PPOTrainer._kl_penalty` with `kl_penalty == "full"`:
/// `F.kl_div(ref_logprob, logprob, log_target=True, reduction="none").sum(-1)`
/// `= sum_v exp(logprob) * (logprob - ref_logprob)`.
///
/// `logprobs`, `ref_logprobs`: full log-distributions `[b, t, v]` (log-softmaxed logits) →
/// `[b, t]`.
pub fn kl_penalty_full<B: Backend>(
    logprobs: Tensor<B, 3>,
    ref_logprobs: Tensor<B, 3>,
) -> Tensor<B, 2> {
    (logprobs.clone().exp() * (logprobs - ref_logprobs))
        .sum_dim(2)
        .squeeze_dim::<2>(2)
}

/// The result of [`compute_rewards`]: trl's `(rewards, non_score_rewards, kls)`, each `[b, t]`.
#[derive(Debug, Clone)]
pub struct Rewards<B: Backend> {
    /// `non_score_rewards`, plus the score on each row's last non-masked token.
    pub rewards: Tensor<B, 2>,
    /// `-kl_coef * kls` on every token (masked ones included; trl does not mask them here).
    pub non_score_rewards: Tensor<B, 2>,
    /// The per-token KL penalty term (every token, masked ones included).
    pub kls: Tensor<B, 2>,
}

/// `PPOTrainer.compute_rewards(scores, logprobs, ref_logprobs, masks)` for `kl_penalty` in
/// `kl` / `abs` / `mse`:
///
/// ```text
/// for each row:
///     kl = _kl_penalty(logprob, ref_logprob)
///     non_score_reward = -kl_ctl.value * kl
///     reward = non_score_reward.clone()
///     reward[mask.nonzero()[-1]] += score
/// ```
///
/// `scores`: `[b]`; `logprobs`, `ref_logprobs`, `masks`: `[b, t]`; `kl_coef` is the KL
/// controller's current `value`. Returns [`RlError::FullKlNeedsLogits`] for
/// [`KlPenalty::Full`] (use [`compute_rewards_full`]) and [`RlError::EmptyRowMask`] where trl's
/// `mask.nonzero()[-1]` would raise. Reads `masks` back to the host (trl's `nonzero` does too).
pub fn compute_rewards<B: Backend>(
    scores: Tensor<B, 1>,
    logprobs: Tensor<B, 2>,
    ref_logprobs: Tensor<B, 2>,
    masks: Tensor<B, 2>,
    kl_coef: f64,
    kl_penalty_mode: KlPenalty,
) -> Result<Rewards<B>> {
    let kls = kl_penalty(logprobs, ref_logprobs, kl_penalty_mode)?;
    rewards_from_kls(scores, kls, masks, kl_coef)
}

/// `PPOTrainer.compute_rewards` with `kl_penalty == "full"`, taking the raw logits of the policy
/// and the reference model (`[b, t, v]`, already sliced to the response positions like
/// `batched_forward_pass(..., return_logits=True)` returns them). As `PPOTrainer.step` does, both
/// are turned into full log-distributions with `logprobs_from_logits(logits, None, gather=False)`
/// and the KL is [`kl_penalty_full`].
pub fn compute_rewards_full<B: Backend>(
    scores: Tensor<B, 1>,
    logits: Tensor<B, 3>,
    ref_logits: Tensor<B, 3>,
    masks: Tensor<B, 2>,
    kl_coef: f64,
) -> Result<Rewards<B>> {
    let kls = kl_penalty_full(
        logprobs_full_from_logits(logits),
        logprobs_full_from_logits(ref_logits),
    );
    rewards_from_kls(scores, kls, masks, kl_coef)
}

/// The part of `compute_rewards` after `_kl_penalty`: `non_score = -kl_coef * kls`, and
/// `rewards = non_score` with `scores[i]` added at the last non-zero position of `masks[i]`.
pub fn rewards_from_kls<B: Backend>(
    scores: Tensor<B, 1>,
    kls: Tensor<B, 2>,
    masks: Tensor<B, 2>,
    kl_coef: f64,
) -> Result<Rewards<B>> {
    let [b, t] = kls.dims();
    if masks.dims() != [b, t] || scores.dims() != [b] {
        return Err(RlError::Shape(format!(
            "kls {:?}, masks {:?}, scores {:?}",
            kls.dims(),
            masks.dims(),
            scores.dims()
        )));
    }
    let device = kls.device();
    let mask_host = to_vec_f32(masks.detach());
    let mut last = vec![false; b * t];
    for row in 0..b {
        let idx = (0..t)
            .rev()
            .find(|&i| mask_host[row * t + i] != 0.0)
            .ok_or(RlError::EmptyRowMask(row))?;
        last[row * t + idx] = true;
    }
    let last = Tensor::<B, 2, Bool>::from_data(TensorData::new(last, [b, t]), &device);
    let non_score_rewards = kls.clone().mul_scalar(-kl_coef);
    let with_score = non_score_rewards.clone() + scores.unsqueeze_dim::<2>(1);
    let rewards = non_score_rewards.clone().mask_where(last, with_score);
    Ok(Rewards {
        rewards,
        non_score_rewards,
        kls,
    })
}
