//! The decoder's key/value cache, kept outside the modules: the caller owns one per
//! self-attention layer and passes it to `forward`.

use burn::prelude::*;

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
