//! Pieces shared by the attention layers: additive masks and the decoder's key/value cache.

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

/// Keys and values of one self-attention layer, `[batch, heads, positions, d_head]`.
///
/// The buffer is allocated once for `capacity` positions and written in place; it only grows
/// (doubling) when decoding runs past the planned length.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    k: Option<Tensor<B, 4>>,
    v: Option<Tensor<B, 4>>,
    len: usize,
    capacity: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(capacity: usize) -> Self {
        Self {
            k: None,
            v: None,
            len: 0,
            capacity: capacity.max(1),
        }
    }

    /// Cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn grow(buf: Option<Tensor<B, 4>>, like: &Tensor<B, 4>, capacity: usize) -> Tensor<B, 4> {
        let [b, h, _, d] = like.dims();
        let device = like.device();
        match buf {
            None => Tensor::zeros([b, h, capacity, d], &device),
            Some(old) => {
                let have = old.dims()[2];
                Tensor::cat(
                    vec![old, Tensor::zeros([b, h, capacity - have, d], &device)],
                    2,
                )
            }
        }
    }

    /// Appends `k`/`v` (`[batch, heads, new, d_head]`) and returns all cached keys and values.
    pub fn append(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, h, new, d] = k.dims();
        let end = self.len + new;
        if self.k.is_none() || end > self.capacity {
            if end > self.capacity {
                self.capacity = (2 * self.capacity).max(end);
            }
            self.k = Some(Self::grow(self.k.take(), &k, self.capacity));
            self.v = Some(Self::grow(self.v.take(), &v, self.capacity));
        }
        let range = [0..b, 0..h, self.len..end, 0..d];
        let kb = self.k.take().unwrap().slice_assign(range.clone(), k);
        let vb = self.v.take().unwrap().slice_assign(range, v);
        self.len = end;
        let view = [0..b, 0..h, 0..end, 0..d];
        let out = (kb.clone().slice(view.clone()), vb.clone().slice(view));
        self.k = Some(kb);
        self.v = Some(vb);
        out
    }

    /// Keep only batch rows `rows`.
    pub fn select_rows(&mut self, rows: Tensor<B, 1, Int>) {
        self.k = self.k.take().map(|t| t.select(0, rows.clone()));
        self.v = self.v.take().map(|t| t.select(0, rows));
    }
}
