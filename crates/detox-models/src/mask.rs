//! Attention masks as additive biases: padding masks and the decoder's causal mask.

use burn::prelude::*;

/// What masked positions get added to attention scores. Finite (unlike `-inf`) so that two masks
/// can be summed; after softmax it is exactly 0 in f32, as transformers' `finfo.min` is.
pub const MASK_VALUE: f32 = -1e9;

/// `[batch, len]` mask (1 = attend, 0 = padding) → additive bias `[batch, 1, 1, len]`.
pub fn additive_mask<B: Backend>(mask: Tensor<B, 2, Int>) -> Tensor<B, 4> {
    let [b, l] = mask.dims();
    let keep = mask.float();
    ((keep - 1.0) * (-MASK_VALUE as f64)).reshape([b, 1, 1, l])
}

/// Causal bias `[1, 1, new, total]` for queries at positions `past..past+new` over keys `0..total`.
pub fn causal_mask_bias<B: Backend>(
    past: usize,
    new: usize,
    total: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let data: Vec<f32> = (0..new)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { MASK_VALUE } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(data, [1, 1, new, total]), device)
}
