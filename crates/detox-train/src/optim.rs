//! torch's `AdamW` through burn's: same update (decoupled weight decay `p ← p(1 − lr·wd)`, then
//! `p ← p − lr · m̂ / (sqrt(v̂) + eps)`), with torch's defaults — burn's `epsilon` default is
//! 1e-5, torch's 1e-8, which matters for the many small gradients after clipping.

use burn::optim::AdamWConfig;

pub const ADAM_BETA_1: f32 = 0.9;
pub const ADAM_BETA_2: f32 = 0.999;
pub const ADAM_EPSILON: f32 = 1e-8;

/// `torch.optim.AdamW(params, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)`
/// (transformers' Trainer defaults, with its `weight_decay` default of 0). The learning rate is
/// given per step. Gradient clipping is done outside the optimizer ([`crate::clip`]), globally,
/// as `clip_grad_norm_` does — burn's own clipping is per tensor.
pub fn adamw(weight_decay: f64) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(ADAM_BETA_1)
        .with_beta_2(ADAM_BETA_2)
        .with_epsilon(ADAM_EPSILON)
        .with_weight_decay(weight_decay as f32)
}
