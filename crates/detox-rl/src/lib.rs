//! trl 0.11.4's PPO math (`PPOTrainer` of `trl/trainer/ppo_trainer.py` and the helpers of
//! `trl/core.py` / `trl/trainer/utils.py`) as small pure functions over burn tensors.
//!
//! Every function names the trl function it mirrors and follows its arithmetic step by step, in
//! `f32` tensors with `f64` hyper-parameters (trl's Python floats). They are generic over
//! `B: Backend` and work unchanged on autodiff backends: gradients flow where they flow in
//! torch, and trl's `.detach()` calls are `.detach()` here. The parity tests compare against
//! numbers produced by trl itself (`tools/make_rl_fixtures.py` → `tests/fixtures/rl/`).
//!
//! A PPO step in trl's order:
//!
//! 1. rollout forward passes → [`seq2seq_forward_outputs`] (logprobs, values, masks) for the
//!    policy and the reference model;
//! 2. [`compute_rewards`] (or [`compute_rewards_full`] for `kl_penalty = "full"`) with
//!    `kl_coef = kl_ctl.value()`;
//! 3. [`compute_advantages`];
//! 4. `ppo_epochs` × minibatches ([`PpoConfig::epoch_minibatches`]): forward pass with grad →
//!    [`ppo_loss`] → backward `pg_loss + vf_loss` → optional clipping ([`global_norm_scale`]) →
//!    optimizer step;
//! 5. [`record_step_stats`], then `kl_ctl.update(stats["objective/kl"], batch_size)`.

mod advantages;
mod config;
mod error;
mod forward;
mod grad;
mod kl_ctl;
mod loss;
mod rewards;
mod running;
mod stats;
mod trl_core;

pub use advantages::{compute_advantages, Advantages};
pub use config::PpoConfig;
pub use error::{Result, RlError};
pub use forward::{seq2seq_forward_outputs, seq2seq_response_masks, ForwardOutputs};
pub use grad::{global_grad_norm, global_norm_scale, trl_clips_this_call};
pub use kl_ctl::{AdaptiveKLController, FixedKLController, KlController};
pub use loss::{ppo_loss, PpoLossConfig, PpoLossOutput, LOSS_STAT_KEYS};
pub use rewards::{
    compute_rewards, compute_rewards_full, kl_penalty, kl_penalty_full, rewards_from_kls,
    KlPenalty, Rewards,
};
pub use running::RunningMoments;
pub use stats::{average_train_stats, record_step_stats, Stats, ARRAY_STAT_KEYS};
pub use trl_core::{
    clip_by_value, entropy_from_logits, item, logprobs_from_logits, logprobs_full_from_logits,
    logsumexp_last, masked_mean, masked_var, masked_whiten, scalar, to_vec_f32, whiten,
};
