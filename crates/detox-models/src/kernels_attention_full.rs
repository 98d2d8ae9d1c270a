//! Attention over whole sequences on burn-flex (the T5 encoder, RoBERTa, a teacher-forced
//! decoder without autodiff): `softmax(q·kᵀ + bias)·v` per (row, head) in one parallel task,
//! written straight into the merged-heads layout `[batch, queries, heads * d]` that the output
//! projection reads.
//!
//! Why: composed of burn ops, a 16 x 200 T5 encoder layer wrote a 31 MB score tensor, ran the
//! softmax over it as a separate pass with a scalar `expf` (38 ms of a ~350 ms layer), read it
//! back for the value product and then copied the `[b, h, q, d]` context into `[b, q, h·d]` on
//! one core (11 ms). Here each task keeps its `[q, k]` scores in a reused buffer that stays in
//! cache, the softmax uses the vectorized `exp` of `kernels_math`, and the value product's
//! destination strides put each head's columns where the merged layout wants them: no score
//! tensor and no head-merge copy.
//!
//! Same formulas as the composition (`q·kᵀ` and `p·v` through gemm, `softmax(scores + bias)`
//! with the maximum subtracted and a division by the sum) in f32; only `exp` differs, by at
//! most ~2 ulp.

use std::cell::RefCell;

use burn::prelude::*;
use rayon::prelude::*;

use crate::kernels::{new_flex, softmax_row_with_bias, tensor_of};
use crate::kernels_attention::{bias_row_start, shapes_fit, views, Four, View};
use crate::kernels_matmul::{gemm_into, Shared};

thread_local! {
    /// One task's `[q, k]` scores, kept per worker thread between tasks and calls.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `softmax(q·kᵀ + bias)·v` with the heads merged, `[b, q, h * d]`, when all four are burn-flex
/// f32 tensors whose last dimension is contiguous (views of head-split projections are) and
/// `bias` broadcasts over `[b, h, q, k]`; else all four back, unchanged.
pub(crate) fn attend_merged<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Tensor<B, 4>,
) -> Result<Tensor<B, 3>, Four<B>> {
    let [b, h, nq, d] = q.dims();
    let nk = k.dims()[2];
    let bs = bias.dims();
    if nq == 0 || nk == 0 || d == 0 || !shapes_fit(&q, &k, &v, &bias) {
        return Err((q, k, v, bias));
    }
    let (q, k, v, bias) = views(q, k, v, bias)?;
    let bias = bias.to_contiguous();
    let bias_s = crate::kernels::data(&bias);
    let mut out = vec![0.0f32; b * nq * h * d];
    let out_ptr = Shared(out.as_mut_ptr());
    (0..b * h).into_par_iter().for_each(|t| {
        let (i, j) = (t / h, t % h);
        SCORES.with_borrow_mut(|scores| {
            scores.resize(nq * nk, 0.0);
            probabilities(&q, &k, bias_s, bs, (i, j), scores);
            weighted_values(scores, &v, (i, j), out_ptr);
        });
    });
    Ok(tensor_of(new_flex(out, &[b, nq, h * d])))
}

/// `softmax(q·kᵀ + bias)` of (row `i`, head `j`) into `scores` (`[nq, nk]`, row-major), `bias`
/// the contiguous data of a bias of shape `bs` that broadcasts over `[b, h, nq, nk]`.
pub(crate) fn probabilities(
    q: &View,
    k: &View,
    bias: &[f32],
    bs: [usize; 4],
    (i, j): (usize, usize),
    scores: &mut [f32],
) {
    let nk = bs[3];
    let (nq, d) = (scores.len() / nk, q.t.layout().shape()[3]);
    // SAFETY: the pointers address [nq, d] and [nk, d] blocks inside each view's storage
    // (offsets and strides from its layout), and the [nq, nk] buffer.
    unsafe {
        gemm_into(
            (nq, nk, d),
            scores.as_mut_ptr(),
            nk as isize,
            (q.data().as_ptr().add(q.at(i, j)), q.strides[2] as isize, 1),
            (k.data().as_ptr().add(k.at(i, j)), 1, k.strides[2] as isize),
            gemm::Parallelism::None,
        );
    }
    for (p, row) in scores.chunks_mut(nk).enumerate() {
        softmax_row_with_bias(row, &bias[bias_row_start(bs, i, j, p)..][..nk]);
    }
}

/// `weights · v` of (row `i`, head `j`), `weights` `[nq, nk]`, into rows `i*nq..` and columns
/// `j*d..(j+1)*d` of the merged `[b*nq, h*d]` output that `out` points to.
pub(crate) fn weighted_values(weights: &[f32], v: &View, (i, j): (usize, usize), out: Shared) {
    let shape = v.t.layout().shape();
    let (h, nk, d) = (shape[1], shape[2], shape[3]);
    let nq = weights.len() / nk;
    // SAFETY: this task's destination is rows i*nq.. of [b*nq, h*d], columns j*d..(j+1)*d:
    // disjoint from every other (row, head)'s, inside the output; v's block lies inside its
    // storage.
    unsafe {
        gemm_into(
            (nq, d, nk),
            out.at(i * nq * h * d + j * d),
            (h * d) as isize,
            (weights.as_ptr(), nk as isize, 1),
            (v.data().as_ptr().add(v.at(i, j)), v.strides[2] as isize, 1),
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::softmax;
    use burn::tensor::{Distribution, Tolerance};

    type F = burn::backend::Flex;

    fn rand4(shape: [usize; 4], seed: u64) -> Tensor<F, 4> {
        let _rng = crate::test_rng_lock();
        F::seed(&Default::default(), seed);
        Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), &Default::default())
    }

    fn composed(
        q: Tensor<F, 4>,
        k: Tensor<F, 4>,
        v: Tensor<F, 4>,
        bias: Tensor<F, 4>,
    ) -> Tensor<F, 3> {
        let [b, h, nq, d] = q.dims();
        softmax(q.matmul(k.swap_dims(2, 3)) + bias, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, nq, h * d])
    }

    /// Head-split views of `[b, len, h * d]` projections, as the models make them.
    fn heads(b: usize, len: usize, h: usize, d: usize, seed: u64) -> Tensor<F, 4> {
        rand4([b, len, h, d], seed).swap_dims(1, 2)
    }

    #[test]
    fn matches_the_composition_on_head_split_views_and_broadcast_biases() {
        let (b, h, d) = (3, 4, 16);
        for (nq, nk, bshape) in [
            (37, 37, [3, 4, 37, 37]), // encoder: position bias + padding mask, materialized
            (37, 37, [3, 1, 1, 37]),  // RoBERTa: padding mask only
            (20, 37, [1, 4, 20, 37]), // teacher-forced decoder rows over other keys
            (1, 5, [1, 1, 1, 5]),
        ] {
            let q = heads(b, nq, h, d, 1);
            let k = heads(b, nk, h, d, 2);
            let v = heads(b, nk, h, d, 3);
            let mut bias = rand4(bshape, 4) * 3.0;
            if bshape[0] == b {
                // padding: the last 5 keys of row 0 masked as detox masks them
                let mask = Tensor::<F, 4>::zeros([b, 1, 1, nk], &Default::default()).slice_assign(
                    [0..1, 0..1, 0..1, nk.saturating_sub(5)..nk],
                    Tensor::full([1, 1, 1, 5.min(nk)], -1e9, &Default::default()),
                );
                bias = bias + mask;
            }
            let want = composed(q.clone(), k.clone(), v.clone(), bias.clone());
            let got = attend_merged(q, k, v, bias).unwrap_or_else(|_| panic!("takes the kernel"));
            assert_eq!(got.dims(), [b, nq, h * d]);
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(2e-6));
        }
    }

    #[test]
    fn declines_other_backends_and_bad_shapes() {
        type N = burn::backend::NdArray<f32>;
        let dev = Default::default();
        let t = |x: Tensor<F, 4>| Tensor::<N, 4>::from_data(x.into_data(), &dev);
        let q = rand4([1, 2, 3, 4], 1);
        let bias = rand4([1, 1, 1, 3], 3);
        assert!(attend_merged(t(q.clone()), t(q.clone()), t(q.clone()), t(bias.clone())).is_err());
        // a bias whose key dimension does not match
        let wrong = rand4([1, 1, 1, 2], 3);
        assert!(attend_merged(q.clone(), q.clone(), q.clone(), wrong).is_err());
        // the declined tensors come back unchanged
        let (q2, ..) = attend_merged(q.clone(), q.clone(), q.clone(), rand4([1, 1, 1, 2], 3))
            .err()
            .unwrap();
        assert_eq!(q2.into_data(), q.into_data());
    }
}
