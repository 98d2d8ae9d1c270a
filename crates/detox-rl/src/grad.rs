//! The clip coefficient of `torch.nn.utils.clip_grad_norm_` (norm_type 2), which
//! `accelerator.clip_grad_norm_` calls in `PPOTrainer.train_minibatch` when
//! `config.max_grad_norm` is set.
//!
//! torch computes `total_norm = ||(||g_1||, ..., ||g_n||)||_2`,
//! `clip_coef = max_norm / (total_norm + 1e-6)`, `clip_coef_clamped = clamp(clip_coef, max=1.0)`
//! and multiplies every gradient by `clip_coef_clamped` (also when it is 1.0). With no gradients
//! at all it returns 0 and multiplies nothing.
//!
//! **trl 0.11.4 quirk**: `PPOTrainer.__init__` stores
//! `self.model_params = filter(lambda p: p.requires_grad, self.model.parameters())`, a one-shot
//! Python iterator. The first `clip_grad_norm_` call consumes it; every later call sees no
//! parameters, returns 0 and clips nothing. So in trl only the very first minibatch of a run
//! is clipped (single process; the FSDP branch of accelerate materialises the list first but
//! hits the same exhausted iterator on the second call). `max_grad_norm` defaults to `None`
//! (no clipping at all). See [`trl_clips_this_call`].

/// `total_norm` from the per-tensor sums of squared gradient elements
/// (`sum(g_i ** 2)` for each tensor `g_i`): `sqrt(sum_i sq_sums[i])`, accumulated in `f64` and
/// rounded to `f32`. An empty slice gives 0.
pub fn global_grad_norm(sq_sums: &[f32]) -> f32 {
    sq_sums.iter().map(|&s| s as f64).sum::<f64>().sqrt() as f32
}

/// The factor `clip_grad_norm_(params, max_norm)` multiplies every gradient by:
/// `min(max_norm / (total_norm + 1e-6), 1.0)` in `f32`, with `total_norm` from
/// [`global_grad_norm`]. A NaN norm gives NaN (torch's clamp keeps NaN; all gradients become NaN),
/// an infinite norm gives 0. No tensors (`sq_sums` empty) gives 1.0 (torch returns early and
/// leaves the gradients alone).
pub fn global_norm_scale(sq_sums: &[f32], max_norm: f32) -> f32 {
    if sq_sums.is_empty() {
        return 1.0;
    }
    let total = global_grad_norm(sq_sums);
    let coef = max_norm / (total + 1e-6f32);
    if coef.is_nan() {
        coef
    } else {
        coef.min(1.0)
    }
}

/// Whether trl 0.11.4 actually clips on its `call_index`-th `clip_grad_norm_` call (0-based,
/// counted over the whole run, one per minibatch): only the first call sees the parameters,
/// see the module docs. Use `call_index == 0 || !mimic_trl_filter_bug` to decide whether to
/// apply [`global_norm_scale`].
pub fn trl_clips_this_call(call_index: usize) -> bool {
    call_index == 0
}
