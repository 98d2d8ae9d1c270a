//! `PPOTrainer.loss` (trl 0.11.4): clipped policy loss, clipped value loss and their stats.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RlError};
use crate::stats::Stats;
use crate::trl_core::{
    clip_by_value, entropy_from_logits, item, masked_mean, masked_var, scalar, to_vec_f32,
};

/// The `PPOConfig` fields `PPOTrainer.loss` reads. `Default` is trl 0.11.4's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PpoLossConfig {
    /// `cliprange` (0.2): policy-ratio clip range.
    pub cliprange: f64,
    /// `cliprange_value` (0.2): value clip range around the old values.
    pub cliprange_value: f64,
    /// `vf_coef` (0.1): value-loss coefficient.
    pub vf_coef: f64,
    /// `ratio_threshold` (10.0): batches whose masked mean ratio exceeds it get all losses
    /// multiplied by 0.
    pub ratio_threshold: f64,
}

impl Default for PpoLossConfig {
    fn default() -> Self {
        Self {
            cliprange: 0.2,
            cliprange_value: 0.2,
            vf_coef: 0.1,
            ratio_threshold: 10.0,
        }
    }
}

/// The result of [`ppo_loss`].
#[derive(Debug, Clone)]
pub struct PpoLossOutput<B: Backend> {
    /// trl's first return value, `pg_loss` (shape `[1]`).
    pub pg_loss: Tensor<B, 1>,
    /// trl's second return value, `vf_coef * vf_loss` (shape `[1]`). `train_minibatch`
    /// back-propagates `pg_loss + vf_loss`.
    pub vf_loss: Tensor<B, 1>,
    /// trl's third return value minus its two tensor entries, with trl's flattened keys
    /// (`loss/policy`, `loss/value` (unscaled), `loss/total`, `policy/entropy`,
    /// `policy/approxkl`, `policy/policykl`, `policy/clipfrac`, `policy/advantages_mean`,
    /// `returns/mean`, `returns/var`, `val/vpred`, `val/error`, `val/clipfrac`, `val/mean`,
    /// `val/var`). [`crate::record_step_stats`] prefixes them with `ppo/`.
    pub stats: Stats,
    /// `policy/ratio` of trl's stats: `exp(logprobs - old_logprobs)`, detached, `[b, t]`.
    pub ratio: Tensor<B, 2>,
    /// `masked_mean(ratio, mask).item()`, the number compared with `ratio_threshold`.
    pub avg_ratio: f32,
    /// `avg_ratio > ratio_threshold`: trl warns "Skipping batch" and multiplies every loss by
    /// 0.0 (the optimizer step still runs, on zero gradients).
    pub skipped: bool,
}

/// The keys of [`PpoLossOutput::stats`] in trl's order.
pub const LOSS_STAT_KEYS: [&str; 15] = [
    "loss/policy",
    "loss/value",
    "loss/total",
    "policy/entropy",
    "policy/approxkl",
    "policy/policykl",
    "policy/clipfrac",
    "policy/advantages_mean",
    "returns/mean",
    "returns/var",
    "val/vpred",
    "val/error",
    "val/clipfrac",
    "val/mean",
    "val/var",
];

/// `PPOTrainer.loss(old_logprobs, values, logits, vpreds, logprobs, mask, advantages, returns)`:
///
/// ```text
/// vpredclipped = clip_by_value(vpreds, values - cliprange_value, values + cliprange_value)
/// vf_losses1 = (vpreds - returns) ** 2
/// vf_losses2 = (vpredclipped - returns) ** 2
/// vf_loss = 0.5 * masked_mean(max(vf_losses1, vf_losses2), mask)
/// vf_clipfrac = masked_mean(gt(vf_losses2, vf_losses1).float(), mask)
/// ratio = exp(logprobs - old_logprobs)
/// pg_losses = -advantages * ratio
/// pg_losses2 = -advantages * clamp(ratio, 1 - cliprange, 1 + cliprange)
/// pg_loss = masked_mean(max(pg_losses, pg_losses2), mask)
/// pg_clipfrac = masked_mean(gt(pg_losses2, pg_losses).float(), mask)
/// loss = pg_loss + vf_coef * vf_loss
/// if masked_mean(ratio, mask).item() > ratio_threshold: pg_loss, vf_loss, loss *= 0.0
/// entropy = masked_mean(entropy_from_logits(logits), mask)
/// approxkl = 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)
/// policykl = masked_mean(old_logprobs - logprobs, mask)
/// return pg_loss, vf_coef * vf_loss, stats
/// ```
///
/// Shapes: `logits` `[b, t, v]`, everything else `[b, t]`. `old_logprobs`, `values`,
/// `advantages`, `returns` are the rollout's (no gradient needed); `logprobs` (computed from
/// `logits`) and `vpreds` carry the gradient. `values` are the masked values returned by
/// [`crate::compute_advantages`].
///
/// Synchronises twice with the device (`avg_ratio`, then the stats in one read). Errors with
/// [`RlError::ZeroMaskSum`] for an all-zero mask (from `masked_var` of the returns / values).
#[allow(clippy::too_many_arguments)]
pub fn ppo_loss<B: Backend>(
    old_logprobs: Tensor<B, 2>,
    values: Tensor<B, 2>,
    logits: Tensor<B, 3>,
    vpreds: Tensor<B, 2>,
    logprobs: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    advantages: Tensor<B, 2>,
    returns: Tensor<B, 2>,
    cfg: &PpoLossConfig,
) -> Result<PpoLossOutput<B>> {
    check_shapes(
        &mask,
        &logits,
        [
            ("old_logprobs", &old_logprobs),
            ("values", &values),
            ("vpreds", &vpreds),
            ("logprobs", &logprobs),
            ("advantages", &advantages),
            ("returns", &returns),
        ],
    )?;
    let mm = |x: Tensor<B, 2>| scalar(masked_mean(x, mask.clone(), None));

    let (mut vf_loss, vf_clipfrac) = value_loss(&vpreds, &values, &returns, cfg, mm);
    let ratio = (logprobs.clone() - old_logprobs.clone()).exp();
    let (mut pg_loss, pg_clipfrac) = policy_loss(&ratio, &advantages, cfg, mm);
    let mut loss = pg_loss.clone() + vf_loss.clone().mul_scalar(cfg.vf_coef);

    let avg_ratio = item(mm(ratio.clone().detach()));
    let skipped = (avg_ratio as f64) > cfg.ratio_threshold;
    if skipped {
        pg_loss = pg_loss.mul_scalar(0.0);
        vf_loss = vf_loss.mul_scalar(0.0);
        loss = loss.mul_scalar(0.0);
    }

    let lp = logprobs.detach();
    let old = old_logprobs.detach();
    let returns_d = returns.detach();
    let values_d = values.detach();
    let vpreds_d = vpreds.detach();
    let scalars: Vec<Tensor<B, 1>> = vec![
        pg_loss.clone().detach(),
        vf_loss.clone().detach(),
        loss.detach(),
        mm(entropy_from_logits(logits.detach())),
        mm((lp.clone() - old.clone()).square()).mul_scalar(0.5),
        mm(old - lp),
        pg_clipfrac,
        mm(advantages.detach()),
        mm(returns_d.clone()),
        scalar(masked_var(returns_d.clone(), mask.clone(), true)?),
        mm(vpreds_d.clone()),
        mm((vpreds_d - returns_d).square()),
        vf_clipfrac,
        mm(values_d.clone()),
        scalar(masked_var(values_d, mask.clone(), true)?),
    ];
    let host = to_vec_f32(Tensor::cat(scalars, 0));
    let stats: Stats = LOSS_STAT_KEYS
        .iter()
        .zip(host)
        .map(|(k, v)| (k.to_string(), v as f64))
        .collect();

    Ok(PpoLossOutput {
        pg_loss,
        vf_loss: vf_loss.mul_scalar(cfg.vf_coef),
        stats,
        ratio: ratio.detach(),
        avg_ratio,
        skipped,
    })
}

/// Every `[b, t]` input of [`ppo_loss`] has the mask's shape, and `logits` is `[b, t, v]`.
fn check_shapes<B: Backend>(
    mask: &Tensor<B, 2>,
    logits: &Tensor<B, 3>,
    inputs: [(&str, &Tensor<B, 2>); 6],
) -> Result<()> {
    let dims = mask.dims();
    for (name, t) in inputs {
        let d = t.dims();
        if d != dims {
            return Err(RlError::Shape(format!("{name} {d:?} vs mask {dims:?}")));
        }
    }
    let [lb, lt, _] = logits.dims();
    if [lb, lt] != dims {
        return Err(RlError::Shape(format!(
            "logits {:?} vs mask {dims:?}",
            logits.dims()
        )));
    }
    Ok(())
}

/// The clipped value loss `0.5 * masked_mean(max(vf_losses1, vf_losses2))` (unscaled by
/// `vf_coef`) and `vf_clipfrac`; `mm` is the masked mean.
fn value_loss<B: Backend>(
    vpreds: &Tensor<B, 2>,
    values: &Tensor<B, 2>,
    returns: &Tensor<B, 2>,
    cfg: &PpoLossConfig,
    mm: impl Fn(Tensor<B, 2>) -> Tensor<B, 1>,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let vpredclipped = clip_by_value(
        vpreds.clone(),
        values.clone().sub_scalar(cfg.cliprange_value),
        values.clone().add_scalar(cfg.cliprange_value),
    );
    let vf_losses1 = (vpreds.clone() - returns.clone()).square();
    let vf_losses2 = (vpredclipped - returns.clone()).square();
    let vf_loss = mm(vf_losses1.clone().max_pair(vf_losses2.clone())).mul_scalar(0.5);
    let vf_clipfrac = mm(vf_losses2.greater(vf_losses1).float());
    (vf_loss, vf_clipfrac)
}

/// The clipped policy loss `masked_mean(max(-adv * ratio, -adv * clamp(ratio)))` and
/// `pg_clipfrac`; `mm` is the masked mean.
fn policy_loss<B: Backend>(
    ratio: &Tensor<B, 2>,
    advantages: &Tensor<B, 2>,
    cfg: &PpoLossConfig,
    mm: impl Fn(Tensor<B, 2>) -> Tensor<B, 1>,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let neg_adv = advantages.clone().neg();
    let pg_losses = neg_adv.clone() * ratio.clone();
    let pg_losses2 = neg_adv
        * ratio
            .clone()
            .clamp(1.0 - cfg.cliprange, 1.0 + cfg.cliprange);
    let pg_loss = mm(pg_losses.clone().max_pair(pg_losses2.clone()));
    let pg_clipfrac = mm(pg_losses2.greater(pg_losses).float());
    (pg_loss, pg_clipfrac)
}
