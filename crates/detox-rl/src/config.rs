//! The numeric fields of trl 0.11.4's `PPOConfig` that the PPO math reads, with trl's defaults,
//! and the epoch / minibatch schedule of `PPOTrainer.step`.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::kl_ctl::KlController;
use crate::loss::PpoLossConfig;
use crate::rewards::KlPenalty;

/// The `PPOConfig` fields used by `PPOTrainer.step` / `loss` / `compute_*`. `Default` gives
/// trl 0.11.4's defaults (checked against `PPOConfig()` by the parity tests). trl builds its
/// optimizer as `torch.optim.Adam(params, lr=learning_rate)` (betas 0.9/0.999, eps 1e-8, no
/// weight decay) unless one is passed in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    /// `steps` (20000).
    pub steps: usize,
    /// `learning_rate` (1.41e-5).
    pub learning_rate: f64,
    /// `adap_kl_ctrl` (true).
    pub adap_kl_ctrl: bool,
    /// `init_kl_coef` (0.2).
    pub init_kl_coef: f64,
    /// `kl_penalty` ("kl").
    pub kl_penalty: KlPenalty,
    /// `target` (6.0).
    pub target: f64,
    /// `horizon` (10000.0).
    pub horizon: f64,
    /// `gamma` (1.0).
    pub gamma: f64,
    /// `lam` (0.95).
    pub lam: f64,
    /// `cliprange` (0.2).
    pub cliprange: f64,
    /// `cliprange_value` (0.2).
    pub cliprange_value: f64,
    /// `vf_coef` (0.1).
    pub vf_coef: f64,
    /// `batch_size` (128).
    pub batch_size: usize,
    /// `mini_batch_size` (128).
    pub mini_batch_size: usize,
    /// `gradient_accumulation_steps` (1).
    pub gradient_accumulation_steps: usize,
    /// `ppo_epochs` (4).
    pub ppo_epochs: usize,
    /// `max_grad_norm` (None).
    pub max_grad_norm: Option<f64>,
    /// `early_stopping` (false).
    pub early_stopping: bool,
    /// `target_kl` (1.0).
    pub target_kl: f64,
    /// `ratio_threshold` (10.0).
    pub ratio_threshold: f64,
    /// `score_clip` (None).
    pub score_clip: Option<f64>,
    /// `whiten_rewards` (false).
    pub whiten_rewards: bool,
    /// `use_score_scaling` (false): divide scores by the running std ([`crate::RunningMoments`]).
    pub use_score_scaling: bool,
    /// `use_score_norm` (false): with `use_score_scaling`, also subtract the running mean.
    pub use_score_norm: bool,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            steps: 20000,
            learning_rate: 1.41e-5,
            adap_kl_ctrl: true,
            init_kl_coef: 0.2,
            kl_penalty: KlPenalty::Kl,
            target: 6.0,
            horizon: 10000.0,
            gamma: 1.0,
            lam: 0.95,
            cliprange: 0.2,
            cliprange_value: 0.2,
            vf_coef: 0.1,
            batch_size: 128,
            mini_batch_size: 128,
            gradient_accumulation_steps: 1,
            ppo_epochs: 4,
            max_grad_norm: None,
            early_stopping: false,
            target_kl: 1.0,
            ratio_threshold: 10.0,
            score_clip: None,
            whiten_rewards: false,
            use_score_scaling: false,
            use_score_norm: false,
        }
    }
}

impl PpoConfig {
    /// `backward_batch_size = mini_batch_size * gradient_accumulation_steps`.
    pub fn backward_batch_size(&self) -> usize {
        self.mini_batch_size * self.gradient_accumulation_steps
    }

    /// `PPOConfig.__post_init__`'s check: `batch_size` must be a multiple of
    /// `backward_batch_size`.
    pub fn validate(&self) -> Result<(), String> {
        let bbs = self.backward_batch_size();
        if bbs == 0 || self.batch_size % bbs != 0 {
            return Err(format!(
                "`batch_size` must be a multiple of `mini_batch_size * gradient_accumulation_steps` \
                 ({} vs {bbs})",
                self.batch_size
            ));
        }
        Ok(())
    }

    /// The fields `loss` reads.
    pub fn loss_config(&self) -> PpoLossConfig {
        PpoLossConfig {
            cliprange: self.cliprange,
            cliprange_value: self.cliprange_value,
            vf_coef: self.vf_coef,
            ratio_threshold: self.ratio_threshold,
        }
    }

    /// The controller `PPOTrainer.__init__` builds.
    pub fn kl_controller(&self) -> KlController {
        KlController::new(
            self.adap_kl_ctrl,
            self.init_kl_coef,
            self.target,
            self.horizon,
        )
    }

    /// `_early_stop` (single process): with `early_stopping`, stop the remaining PPO epochs when
    /// `policykl > 1.5 * target_kl` (trl zeroes the grads and breaks). trl checks it once per
    /// epoch, on the `policy/policykl` of the epoch's *last* minibatch.
    pub fn early_stop(&self, policykl: f64) -> bool {
        self.early_stopping && policykl > 1.5 * self.target_kl
    }

    /// One epoch of `PPOTrainer.step`'s minibatch loop: `b_inds = np.random.permutation(bs)`,
    /// then for each backward batch `b_inds[s : s + backward_batch_size]`, its minibatches
    /// `[m : m + mini_batch_size]`. Returns the row indices of every minibatch in order (the
    /// gradient is applied after each, accelerate accumulating over `gradient_accumulation_steps`).
    /// The permutation comes from `rng`, so it differs from numpy's.
    pub fn epoch_minibatches<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<Vec<usize>> {
        let mut b_inds: Vec<usize> = (0..self.batch_size).collect();
        b_inds.shuffle(rng);
        self.minibatches_from_permutation(&b_inds)
    }

    /// The minibatches of one epoch for a given permutation `b_inds` of `0..batch_size` (e.g.
    /// the one numpy drew in trl): backward batches `b_inds[s : s + backward_batch_size]`, each
    /// cut into `mini_batch_size` pieces.
    pub fn minibatches_from_permutation(&self, b_inds: &[usize]) -> Vec<Vec<usize>> {
        let bs = b_inds.len();
        let bbs = self.backward_batch_size().max(1);
        let mbs = self.mini_batch_size.max(1);
        let mut out = Vec::new();
        for bstart in (0..bs).step_by(bbs) {
            let backward = &b_inds[bstart..(bstart + bbs).min(bs)];
            for mstart in (0..bbs).step_by(mbs) {
                if mstart >= backward.len() {
                    break;
                }
                out.push(backward[mstart..(mstart + mbs).min(backward.len())].to_vec());
            }
        }
        out
    }

    /// `PPOTrainer.step`'s score clipping: `clip(scores, -score_clip, score_clip)` when set.
    pub fn clip_score(&self, score: f32) -> f32 {
        match self.score_clip {
            // torch.clip = min(max(x, lo), hi); NaN stays NaN
            Some(c) if !score.is_nan() => score.max(-(c as f32)).min(c as f32),
            Some(_) => score,
            None => score,
        }
    }
}
