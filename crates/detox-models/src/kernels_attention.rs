//! Attention of a few query positions (a decoding step: one position per sequence, or a
//! prompt's beams over its encoder output) on burn-flex, reading keys and values in place.
//!
//! Why: in a decoding step the keys and values are views — the filled part of the
//! self-attention cache, the head-split cross-attention keys/values of the encoder output — and
//! burn-flex's matmul first copies each view into a contiguous tensor, on one core, for every
//! layer and step (at beam search with 4 prompts x 4 beams, ~120 MB a step), then runs tiny
//! batched products and a separate softmax. Here each (row, head) is one task over the views'
//! own strides: scores, softmax with the bias, weighted sum of values.
//!
//! Same formulas as the composition (`q·kᵀ`, `softmax(scores + bias)`, `·v`) in f32.

use burn::prelude::*;
use burn::tensor::DType;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::kernels::{new_flex, primitive_as, tensor_of};
use crate::kernels_few_rows::dot;

/// Query positions per (row, head) up to which this kernel runs.
pub(crate) const MAX_QUERIES: usize = 16;

pub(crate) type Four<B> = (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>);

/// A `[b, h, n, d]` f32 view whose `d` values are contiguous: its storage and strides.
#[derive(Clone)]
pub(crate) struct View {
    pub(crate) t: FlexTensor,
    pub(crate) strides: [usize; 3],
    offset: usize,
}

impl View {
    pub(crate) fn of(t: FlexTensor) -> Result<Self, FlexTensor> {
        let l = t.layout();
        let s = l.strides();
        if t.dtype() != DType::F32 || s.len() != 4 || s[3] != 1 || s[..3].iter().any(|&x| x < 0) {
            return Err(t);
        }
        let strides = [s[0] as usize, s[1] as usize, s[2] as usize];
        let offset = l.start_offset();
        Ok(Self { t, strides, offset })
    }

    pub(crate) fn data(&self) -> &[f32] {
        self.t.storage::<f32>()
    }

    /// Start of row `i`, head `j`.
    pub(crate) fn at(&self, i: usize, j: usize) -> usize {
        self.offset + i * self.strides[0] + j * self.strides[1]
    }
}

/// `softmax(q·kᵀ + bias)·v` as `[b, h, q, d]` when all four are burn-flex f32, `q` has at most
/// [`MAX_QUERIES`] positions and `bias` broadcasts over `[b, h, q, k]`; else all four back.
pub(crate) fn attend<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Four<B>> {
    let [b, h, nq, d] = q.dims();
    let nk = k.dims()[2];
    let bs = bias.dims();
    if nq > MAX_QUERIES || !shapes_fit(&q, &k, &v, &bias) {
        return Err((q, k, v, bias));
    }
    let (q, k, v, bias) = views(q, k, v, bias)?;
    let bias = bias.to_contiguous();
    let qs = q.data();
    let bias_s = crate::kernels::data(&bias);
    let bias_at = |i, j, p| bias_row_start(bs, i, j, p);
    let (kd_, vd_) = (k.data(), v.data());
    let mut out = vec![0.0f32; b * h * nq * d];
    out.par_chunks_mut(nq * d).enumerate().for_each(|(t, o)| {
        let (i, j) = (t / h, t % h);
        let (k0, v0) = (k.at(i, j), v.at(i, j));
        let mut scores = vec![0.0f32; nk];
        for p in 0..nq {
            let qrow = &qs[q.at(i, j) + p * q.strides[2]..][..d];
            let brow = &bias_s[bias_at(i, j, p)..][..nk];
            let mut max = f32::NEG_INFINITY;
            for (s, (n, &bv)) in scores.iter_mut().zip(brow.iter().enumerate()) {
                let krow = &kd_[k0 + n * k.strides[2]..][..d];
                *s = dot(qrow, krow) + bv;
                max = max.max(*s);
            }
            let mut sum = 0.0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let ctx = &mut o[p * d..(p + 1) * d];
            for (n, &w) in scores.iter().enumerate() {
                let w = w / sum;
                let vrow = &vd_[v0 + n * v.strides[2]..][..d];
                for (c, &x) in ctx.iter_mut().zip(vrow) {
                    *c += w * x;
                }
            }
        }
    });
    Ok(tensor_of(new_flex(out, &[b, h, nq, d])))
}

/// Whether `q` `[b, h, q, d]`, `k` and `v` `[b, h, k, d]` and `bias` (broadcasting over
/// `[b, h, q, k]`, any leading dimension 1) fit the attention kernels.
pub(crate) fn shapes_fit<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    bias: &Tensor<B, 4>,
) -> bool {
    let [b, h, nq, d] = q.dims();
    let [kb, kh, nk, kd] = k.dims();
    let bs = bias.dims();
    [kb, kh, kd] == [b, h, d]
        && v.dims() == [b, h, nk, d]
        && bs[3] == nk
        && (0..3).all(|i| bs[i] == 1 || bs[i] == [b, h, nq][i])
}

/// Where the bias row of (row `i`, head `j`, query `p`) starts in a contiguous bias of shape
/// `bs` that broadcasts over its size-1 leading dimensions.
pub(crate) fn bias_row_start(bs: [usize; 4], i: usize, j: usize, p: usize) -> usize {
    let (i, j, p) = (i % bs[0], j % bs[1], p % bs[2]);
    ((i * bs[1] + j) * bs[2] + p) * bs[3]
}

/// q, k, v as [`View`]s and the bias as a burn-flex tensor, when all four are burn-flex f32
/// with a contiguous last dimension; else all four back as they came.
pub(crate) fn views<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Tensor<B, 4>,
) -> Result<(View, View, View, FlexTensor), Four<B>> {
    let flex = |t: Tensor<B, 4>| primitive_as::<FlexTensor, B, 4>(t);
    let back = |r: Result<FlexTensor, Tensor<B, 4>>| r.map_or_else(|t| t, tensor_of);
    let (q, k, v, bias) = match (flex(q), flex(k), flex(v), flex(bias)) {
        (Ok(q), Ok(k), Ok(v), Ok(bias)) if bias.dtype() == DType::F32 => (q, k, v, bias),
        (q, k, v, bias) => return Err((back(q), back(k), back(v), back(bias))),
    };
    match (View::of(q), View::of(k), View::of(v)) {
        (Ok(q), Ok(k), Ok(v)) => Ok((q, k, v, bias)),
        (q, k, v) => {
            let t = |r: Result<View, FlexTensor>| tensor_of(r.map_or_else(|t| t, |view| view.t));
            Err((t(q), t(k), t(v), tensor_of(bias)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::softmax;

    type F = burn::backend::Flex;

    fn rand4(shape: [usize; 4], seed: u64) -> Tensor<F, 4> {
        let n: usize = shape.iter().product();
        let vals: Vec<f32> = (0..n as u64)
            .map(|i| {
                ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(seed) >> 40) % 2001) as f32
                    / 1000.0
                    - 1.0
            })
            .collect();
        Tensor::from_data(TensorData::new(vals, shape), &Default::default())
    }

    fn composed(
        q: Tensor<F, 4>,
        k: Tensor<F, 4>,
        v: Tensor<F, 4>,
        bias: Tensor<F, 4>,
    ) -> Tensor<F, 4> {
        softmax(q.matmul(k.swap_dims(2, 3)) + bias, 3).matmul(v)
    }

    #[test]
    fn matches_the_composition_on_views_with_broadcast_bias() {
        // the cache's case: k/v the first 5 positions of a 7-position buffer, bias [1, h, 1, k]
        let (b, h, d) = (3, 2, 12);
        let q = rand4([b, h, 1, d], 1);
        let kbuf = rand4([b, h, 7, d], 2);
        let vbuf = rand4([b, h, 7, d], 3);
        let k = kbuf.slice([0..b, 0..h, 0..5, 0..d]);
        let v = vbuf.slice([0..b, 0..h, 0..5, 0..d]);
        let bias = rand4([1, h, 1, 5], 4);
        let want = composed(q.clone(), k.clone(), v.clone(), bias.clone());
        let got = attend(q, k, v, bias).unwrap_or_else(|_| panic!("takes the kernel"));
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::absolute(1e-5));

        // the cross-attention case: head-split views [b, l, h, d] -> [b, h, l, d], 4 queries
        // (a prompt's beams), a padding mask bias [b, 1, 1, k]
        let q = rand4([b, h, 4, d], 5);
        let k = rand4([b, 9, h, d], 6).swap_dims(1, 2);
        let v = rand4([b, 9, h, d], 7).swap_dims(1, 2);
        let bias = rand4([b, 1, 1, 9], 8) * 5.0;
        let want = composed(q.clone(), k.clone(), v.clone(), bias.clone());
        let got = attend(q, k, v, bias).unwrap_or_else(|_| panic!("takes the kernel"));
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::absolute(1e-5));
    }

    #[test]
    fn declines_many_queries_and_other_backends() {
        let q = rand4([1, 2, MAX_QUERIES + 1, 4], 1);
        let k = rand4([1, 2, 3, 4], 2);
        let bias = rand4([1, 1, 1, 3], 3);
        assert!(attend(q, k.clone(), k.clone(), bias.clone()).is_err());
        type N = burn::backend::NdArray<f32>;
        let dev = Default::default();
        let t = |x: Tensor<F, 4>| Tensor::<N, 4>::from_data(x.into_data(), &dev);
        let q = rand4([1, 2, 1, 4], 1);
        assert!(attend(t(q), t(k.clone()), t(k), t(bias)).is_err());
    }
}
