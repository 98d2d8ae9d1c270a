//! `PPOTrainer.record_step_stats` and the minibatch-stat averaging of `PPOTrainer.step`
//! (trl 0.11.4), restricted to the scalar entries.

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::trl_core::{masked_mean, scalar, to_vec_f32};

/// Flattened scalar statistics keyed by trl's names (`objective/kl`, `ppo/loss/total`, ...).
/// Values are the `f32` numbers torch computes, widened to `f64`.
pub type Stats = BTreeMap<String, f64>;

/// The tensor-valued entries of trl's step stats that a [`Stats`] map leaves out (they are
/// histograms / raw arrays in trl's logs).
pub const ARRAY_STAT_KEYS: [&str; 7] = [
    "objective/kl_dist",
    "objective/logprobs",
    "objective/ref_logprobs",
    "ppo/policy/advantages",
    "ppo/policy/ratio",
    "tokens/queries_dist",
    "tokens/responses_dist",
];

fn mean_std_f32(xs: &[f32]) -> (f32, f32) {
    // torch.mean / torch.std (unbiased) of a small float32 tensor
    let n = xs.len() as f32;
    let mean = xs.iter().sum::<f32>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Averages per-minibatch [`crate::PpoLossOutput::stats`] like `PPOTrainer.step` does
/// (`stack_dicts` then `torch.mean(v, axis=0)`), and prefixes the keys with `ppo/`. Keys are
/// those of the first minibatch (as `stack_dicts` does). Empty input gives an empty map.
pub fn average_train_stats(train_stats: &[Stats]) -> Stats {
    let mut out = Stats::new();
    let Some(first) = train_stats.first() else {
        return out;
    };
    let n = train_stats.len() as f32;
    for key in first.keys() {
        let sum: f32 = train_stats.iter().map(|s| s[key] as f32).sum();
        out.insert(format!("ppo/{key}"), (sum / n) as f64);
    }
    out
}

/// `PPOTrainer.record_step_stats(kl_coef, scores=..., logprobs=..., non_score_reward=...,
/// train_stats=..., masks=..., queries=..., responses=..., kls=...)`, scalar entries only:
///
/// * `objective/kl` = mean over rows of `sum_t(kls * mask)`;
/// * `objective/kl_coef` = `kl_coef` (the controller value *before* this step's update);
/// * `objective/entropy` = mean over rows of `sum_t(-logprobs * mask)` (a sampled-token
///   estimate, not the logits entropy);
/// * `ppo/mean_non_score_reward` = `masked_mean(non_score_reward, mask)`;
/// * `ppo/mean_scores`, `ppo/std_scores` (unbiased: NaN for a batch of 1);
/// * `tokens/queries_len_mean`, `tokens/queries_len_std`, `tokens/responses_len_mean`,
///   `tokens/responses_len_std` (unbiased std) from the query / response token counts;
/// * `ppo/<key>` for every key of the minibatch loss stats, averaged over minibatches
///   ([`average_train_stats`]);
/// * `ppo/val/var_explained` = `1 - ppo/val/error / ppo/returns/var`.
///
/// `logprobs` are the rollout log-probs of the policy (`all_logprobs`), `kls` and
/// `non_score_reward` come from [`crate::compute_rewards`]. The tensor entries listed in
/// [`ARRAY_STAT_KEYS`] are not produced. `PPOTrainer.step` adds `ppo/learning_rate` and
/// `time/...` itself; then it calls `kl_ctl.update(stats["objective/kl"], batch_size)`.
#[allow(clippy::too_many_arguments)]
pub fn record_step_stats<B: Backend>(
    kl_coef: f64,
    scores: Tensor<B, 1>,
    logprobs: Tensor<B, 2>,
    non_score_reward: Tensor<B, 2>,
    kls: Tensor<B, 2>,
    masks: Tensor<B, 2>,
    query_lens: &[usize],
    response_lens: &[usize],
    train_stats: &[Stats],
) -> Stats {
    let scores = scores.detach();
    let masks = masks.detach();
    let kl_list = (kls.detach() * masks.clone()).sum_dim(1);
    let mean_kl = kl_list.mean();
    let mean_entropy = (logprobs.detach().neg() * masks.clone()).sum_dim(1).mean();
    let mean_nsr = scalar(masked_mean(non_score_reward.detach(), masks, None));
    let mean_scores = scores.clone().mean();
    let std_scores = scores.var(0).sqrt();
    let host = to_vec_f32(Tensor::cat(
        vec![mean_kl, mean_entropy, mean_nsr, mean_scores, std_scores],
        0,
    ));

    let mut stats = Stats::new();
    stats.insert("objective/kl".into(), host[0] as f64);
    stats.insert("objective/kl_coef".into(), kl_coef);
    stats.insert("objective/entropy".into(), host[1] as f64);
    stats.insert("ppo/mean_non_score_reward".into(), host[2] as f64);
    stats.insert("ppo/mean_scores".into(), host[3] as f64);
    stats.insert("ppo/std_scores".into(), host[4] as f64);

    let q: Vec<f32> = query_lens.iter().map(|&n| n as f32).collect();
    let r: Vec<f32> = response_lens.iter().map(|&n| n as f32).collect();
    let (qm, qs) = mean_std_f32(&q);
    let (rm, rs) = mean_std_f32(&r);
    stats.insert("tokens/queries_len_mean".into(), qm as f64);
    stats.insert("tokens/queries_len_std".into(), qs as f64);
    stats.insert("tokens/responses_len_mean".into(), rm as f64);
    stats.insert("tokens/responses_len_std".into(), rs as f64);

    let averaged = average_train_stats(train_stats);
    if let (Some(err), Some(var)) = (
        averaged.get("ppo/val/error"),
        averaged.get("ppo/returns/var"),
    ) {
        let ve = 1.0f32 - (*err as f32) / (*var as f32);
        stats.insert("ppo/val/var_explained".into(), ve as f64);
    }
    stats.extend(averaged);
    stats
}
