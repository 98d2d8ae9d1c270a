//! Mirrors of the tensor helpers in `trl/core.py` (trl 0.11.4).
//!
//! Shapes follow trl: `[batch, time]` for per-token quantities, `[batch, time, vocab]` for
//! logits. Masks are float tensors holding 0/1 (trl's masks are `LongTensor`s; multiplying a
//! float tensor by them gives the same numbers). Reductions over *all* elements return a tensor
//! of the input's rank whose dims are all 1 (torch returns a 0-d tensor; keeping the rank lets it
//! broadcast the same way). Use [`scalar`] to turn such a tensor into a `[1]` tensor.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::error::{Result, RlError};

/// Host copy of a float tensor's elements (row-major), as `f32`. Synchronises with the device.
pub fn to_vec_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float tensor data")
}

/// Reshapes a one-element tensor of any rank to shape `[1]` (burn's scalar tensor).
pub fn scalar<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, 1> {
    t.reshape([1])
}

/// Reads a one-element tensor as `f32` (torch's `.item()`). Synchronises with the device.
pub fn item<B: Backend, const D: usize>(t: Tensor<B, D>) -> f32 {
    let v = to_vec_f32(t);
    assert_eq!(v.len(), 1, "item() on a tensor with {} elements", v.len());
    v[0]
}

/// `trl.core.logprobs_from_logits(logits, labels, gather=True)`:
/// `log_softmax(logits, dim=2).gather(2, labels.unsqueeze(2)).squeeze(-1)`.
///
/// `logits`: `[b, t, v]`, `labels`: `[b, t]` (Int) → `[b, t]`.
///
/// On `--device cpu` (burn-flex, with or without autodiff) one parallel pass per row computes
/// the same (`detox_models::kernels_logits`); other backends compose burn's ops.
pub fn logprobs_from_logits<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
) -> Tensor<B, 2> {
    let (logits, labels) = match detox_models::kernels_logits::logprobs_gather(logits, labels) {
        Ok(logprobs) => return logprobs,
        Err(declined) => declined,
    };
    let logp = log_softmax(logits, 2);
    logp.gather(2, labels.unsqueeze_dim::<3>(2))
        .squeeze_dim::<2>(2)
}

/// `trl.core.logprobs_from_logits(logits, None, gather=False)`: `log_softmax(logits, dim=2)`,
/// the full log-distribution `[b, t, v]` (what `PPOTrainer.step` feeds `compute_rewards` when
/// `kl_penalty == "full"`).
pub fn logprobs_full_from_logits<B: Backend>(logits: Tensor<B, 3>) -> Tensor<B, 3> {
    log_softmax(logits, 2)
}

/// `torch.logsumexp(x, dim=-1)` for `[b, t, v]` → `[b, t]`, computed as torch does: subtract
/// the (detached) maximum, with infinite maxima replaced by 0.
pub fn logsumexp_last<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 2> {
    let m = x.clone().detach().max_dim(2);
    let m = m.clone().mask_fill(m.is_inf(), 0.0);
    let s = (x - m.clone()).exp().sum_dim(2).log() + m;
    s.squeeze_dim::<2>(2)
}

/// `trl.core.entropy_from_logits`:
/// `logsumexp(logits, -1) - sum(softmax(logits, -1) * logits, -1)`. `[b, t, v]` → `[b, t]`.
///
/// Of logits that need no gradient (trl reports it as a statistic) on `--device cpu`: one
/// parallel pass per row (`detox_models::kernels_logits`).
pub fn entropy_from_logits<B: Backend>(logits: Tensor<B, 3>) -> Tensor<B, 2> {
    let logits = match detox_models::kernels_logits::entropy(logits) {
        Ok(entropy) => return entropy,
        Err(declined) => declined,
    };
    let pd = softmax(logits.clone(), 2);
    let lse = logsumexp_last(logits.clone());
    lse - (pd * logits).sum_dim(2).squeeze_dim::<2>(2)
}

/// `trl.core.masked_mean(values, mask, axis)`: `(values * mask).sum(axis) / mask.sum(axis)`.
///
/// * `axis = None`: mean over all elements; the result has every dim equal to 1.
/// * `axis = Some(a)`: mean along `a`, which is kept with size 1 (torch drops it; squeeze it
///   with `squeeze_dim` if needed).
///
/// A row / tensor with an all-zero mask gives `0/0 = NaN`, as in trl.
pub fn masked_mean<B: Backend, const D: usize>(
    values: Tensor<B, D>,
    mask: Tensor<B, D>,
    axis: Option<usize>,
) -> Tensor<B, D> {
    match axis {
        Some(a) => (values * mask.clone()).sum_dim(a) / mask.sum_dim(a),
        None => {
            let num = (values * mask.clone()).sum().reshape([1usize; D]);
            let den = mask.sum().reshape([1usize; D]);
            num / den
        }
    }
}

/// `trl.core.masked_var(values, mask, unbiased)`:
///
/// ```text
/// mean = masked_mean(values, mask)
/// variance = masked_mean((values - mean)**2, mask)
/// if unbiased:
///     mask_sum = mask.sum()
///     if mask_sum == 0: raise ValueError(...)
///     variance = variance * (mask_sum / (mask_sum - 1))
/// ```
///
/// Returns [`RlError::ZeroMaskSum`] where trl raises (this check reads `mask.sum()` back from the
/// device, as trl's `if mask_sum == 0` does). A mask summing to 1 gives NaN (`0 * inf`), as in
/// trl. The result has every dim equal to 1.
pub fn masked_var<B: Backend, const D: usize>(
    values: Tensor<B, D>,
    mask: Tensor<B, D>,
    unbiased: bool,
) -> Result<Tensor<B, D>> {
    let mean = masked_mean(values.clone(), mask.clone(), None);
    let centered = values - mean;
    let variance = masked_mean(centered.square(), mask.clone(), None);
    if !unbiased {
        return Ok(variance);
    }
    let mask_sum = mask.sum().reshape([1usize; D]);
    if item(mask_sum.clone().detach()) == 0.0 {
        return Err(RlError::ZeroMaskSum);
    }
    let bessel = mask_sum.clone() / mask_sum.sub_scalar(1.0);
    Ok(variance * bessel)
}

/// `trl.core.masked_whiten(values, mask, shift_mean)`:
/// `(values - mean) * rsqrt(var + 1e-8)` with `mean = masked_mean(values, mask)` and
/// `var = masked_var(values, mask)` (unbiased); `shift_mean = false` adds `mean` back.
/// Every element is whitened, masked or not (trl does not re-mask).
pub fn masked_whiten<B: Backend, const D: usize>(
    values: Tensor<B, D>,
    mask: Tensor<B, D>,
    shift_mean: bool,
) -> Result<Tensor<B, D>> {
    let mean = masked_mean(values.clone(), mask.clone(), None);
    let var = masked_var(values.clone(), mask, true)?;
    // a division: burn's SIMD `recip` is approximate (see detox_models::t5::T5LayerNorm)
    let whitened = (values - mean.clone()) / var.add_scalar(1e-8).sqrt();
    Ok(if shift_mean {
        whitened
    } else {
        whitened + mean
    })
}

/// `trl.core.whiten(values, shift_mean)` (unmasked): `(values - mean) * rsqrt(var + 1e-8)` with
/// torch's unbiased `var` over all elements. Not used by `PPOTrainer`; here for completeness.
pub fn whiten<B: Backend, const D: usize>(values: Tensor<B, D>, shift_mean: bool) -> Tensor<B, D> {
    let n = values.shape().num_elements() as f64;
    let mean = values.clone().mean().reshape([1usize; D]);
    let var = (values.clone() - mean.clone())
        .square()
        .sum()
        .reshape([1usize; D])
        .div_scalar(n - 1.0);
    // a division: burn's SIMD `recip` is approximate (see detox_models::t5::T5LayerNorm)
    let whitened = (values - mean.clone()) / var.add_scalar(1e-8).sqrt();
    if shift_mean {
        whitened
    } else {
        whitened + mean
    }
}

/// `trl.core.clip_by_value(x, tensor_min, tensor_max)`: `max(min(x, tensor_max), tensor_min)`
/// (element-wise; the bounds have the shape of `x`).
pub fn clip_by_value<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    tensor_min: Tensor<B, D>,
    tensor_max: Tensor<B, D>,
) -> Tensor<B, D> {
    x.min_pair(tensor_max).max_pair(tensor_min)
}
