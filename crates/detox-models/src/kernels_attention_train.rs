//! Attention over whole sequences under autodiff on burn-flex (fine-tuning and the PPO step on
//! `--device cpu`): `softmax(q·kᵀ + bias)·v` with the heads merged on the way out, as
//! `kernels_attention_full` computes it for inference, registered with burn's autodiff graph
//! together with a backward that writes the gradients of q, k and v in the layout of the
//! projections they came from.
//!
//! Why: composed of burn ops, a training step's attention ran two batched matmuls that each
//! zero-fill and copy their output, merged the heads with a copy on one core, and in the
//! backward pass turned every head-split gradient of q, k and v back into `[b, n, h·d]` with
//! another single-threaded strided copy (`reshape` of a transposed view): `perf` on a T5-base
//! PPO step put ~1.8 s of its ~31 s on the main thread in those copies while the other core
//! waited (BENCHMARKS.md). Here each (row, head) is one task, forward and backward, and every
//! product goes through gemm into its final place.
//!
//! Backward per (row, head), with `p = softmax(s)`, `s = q·kᵀ + bias` and `g` the gradient of
//! the output block: `dv = pᵀ·g`, `dp = g·vᵀ`, `ds = p ∘ (dp - rowsum(dp ∘ p))`, `dq = ds·k`,
//! `dk = dsᵀ·q`, and the bias' gradient `ds` summed over the dimensions it was broadcast along.
//! The forward keeps `p` (burn's composition keeps it too, and the scores' operands).
//!
//! Dropout of the attention weights (T5's `dropout_rate` in fine-tuning) is part of the op:
//! the forward multiplies the probabilities by the same scaled mask that `Dropout::forward`
//! would draw, and the backward multiplies the weights' gradient by it before the softmax's.

use std::cell::RefCell;
use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::Flex;
use rayon::prelude::*;

use crate::kernels::{data, new_flex};
use crate::kernels_attention::{shapes_fit, Four, View};
use crate::kernels_attention_full::{probabilities, weighted_values};
use crate::kernels_autodiff::{
    contiguous, from_ad, into_ad, softmax_backward_row, sum_to_bias_shape, AdTensor,
};
use crate::kernels_matmul::{gemm_into, Shared};

thread_local! {
    /// One task's `[q, k]` block of dropped-out weights or of their gradient, kept per worker
    /// thread.
    static BLOCK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// One backward task's `[q, k]` gradient of the scores, kept per worker thread.
    static SCORES_GRAD: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `dropout(softmax(q·kᵀ + bias))·v` with the heads merged, `[b, q, h * d]`, with its backward,
/// when all four are `Autodiff<Flex>` f32 tensors, q, k and v have a contiguous last dimension
/// (the head-split views of projections do) and `bias` broadcasts over `[b, h, q, k]`; else
/// all four back, unchanged. `dropout` draws the attention weights' scaled dropout mask for a
/// given number of elements (`None`: no dropout); it is only called when the kernel runs.
pub(crate) fn attend_merged<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Tensor<B, 4>,
    dropout: impl FnOnce(usize) -> Option<Vec<f32>>,
) -> Result<Tensor<B, 3>, Four<B>> {
    let [b, h, nq, d] = q.dims();
    let nk = k.dims()[2];
    let bs = bias.dims();
    if nq == 0 || nk == 0 || d == 0 || !shapes_fit(&q, &k, &v, &bias) {
        return Err((q, k, v, bias));
    }
    let (q, k, v, bias) = ad_four(q, k, v, bias)?;
    let (vq, vk, vv) = match (
        View::of(q.primitive.clone()),
        View::of(k.primitive.clone()),
        View::of(v.primitive.clone()),
    ) {
        (Ok(vq), Ok(vk), Ok(vv)) => (vq, vk, vv),
        _ => return Err((from_ad(q), from_ad(k), from_ad(v), from_ad(bias))),
    };
    let fb = contiguous(&bias.primitive);
    let bias_s = data(&fb);
    let mask = dropout(b * h * nq * nk).map(Arc::new);

    // forward: each task's probabilities in p, its context (of the dropped-out weights) in the
    // merged output
    let mut p = vec![0.0f32; b * h * nq * nk];
    let mut out = vec![0.0f32; b * nq * h * d];
    let out_ptr = Shared(out.as_mut_ptr());
    p.par_chunks_mut(nq * nk).enumerate().for_each(|(t, pt)| {
        let (i, j) = (t / h, t % h);
        probabilities(&vq, &vk, bias_s, bs, (i, j), pt);
        match &mask {
            None => weighted_values(pt, &vv, (i, j), out_ptr),
            Some(m) => BLOCK.with_borrow_mut(|w| {
                let mt = &m[t * nq * nk..][..nq * nk];
                w.clear();
                w.extend(pt.iter().zip(mt).map(|(p, m)| p * m));
                weighted_values(w, &vv, (i, j), out_ptr)
            }),
        }
    });
    let out = new_flex(out, &[b, nq, h * d]);
    let out = match AttentionBackward
        .prepare::<NoCheckpointing>([
            q.node.clone(),
            k.node.clone(),
            v.node.clone(),
            bias.node.clone(),
        ])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            Saved {
                q: vq,
                k: vk,
                v: vv,
                p: Arc::new(p),
                mask,
                dims: [b, h, nq, nk, d],
                bias_shape: bs,
            },
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Ok(from_ad(out))
}

/// What the backward needs: the operands' views, the probabilities and the shapes.
#[derive(Clone)]
struct Saved {
    q: View,
    k: View,
    v: View,
    p: Arc<Vec<f32>>,
    /// The scaled dropout mask of the weights, if any.
    mask: Option<Arc<Vec<f32>>>,
    /// `[b, h, nq, nk, d]`.
    dims: [usize; 5],
    bias_shape: [usize; 4],
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attention state {:?}", self.dims)
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 4> for AttentionBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Saved {
            q,
            k,
            v,
            p,
            mask,
            dims: [b, h, nq, nk, d],
            bias_shape,
        } = ops.state;
        let [q_parent, k_parent, v_parent, bias_parent] = ops.parents;
        let g = contiguous(&grads.consume::<Flex>(&ops.node));
        let gs = data(&g);
        let (want_q, want_k, want_v, want_bias) = (
            q_parent.is_some(),
            k_parent.is_some(),
            v_parent.is_some(),
            bias_parent.is_some(),
        );
        let buffer = |want: bool, n: usize| if want { vec![0.0f32; n] } else { Vec::new() };
        let mut dq = buffer(want_q, b * nq * h * d);
        let mut dk = buffer(want_k, b * nk * h * d);
        let mut dv = buffer(want_v, b * nk * h * d);
        let mut dbias = buffer(want_bias, b * h * nq * nk);
        let (dq_p, dk_p, dv_p, dbias_p) = (
            Shared(dq.as_mut_ptr()),
            Shared(dk.as_mut_ptr()),
            Shared(dv.as_mut_ptr()),
            Shared(dbias.as_mut_ptr()),
        );
        let (qd, kd, vd) = (q.data(), k.data(), v.data());
        let row = (h * d) as isize;
        (0..b * h).into_par_iter().for_each(|t| {
            let (i, j) = (t / h, t % h);
            let pt = &p[t * nq * nk..][..nq * nk];
            let mt = mask.as_ref().map(|m| &m[t * nq * nk..][..nq * nk]);
            let g_ij = gs[i * nq * h * d + j * d..].as_ptr();
            BLOCK.with_borrow_mut(|dw| {
                // SAFETY (every call below): operands address [rows, cols] blocks inside the
                // saved views, `p`, this task's block buffers or the output gradient, with the
                // strides of their layouts; each destination is this task's own (row i, head j)
                // block.
                if want_v {
                    // dv = wᵀ·g with the weights w = p ∘ mask (or p)
                    let w = match mt {
                        None => pt,
                        Some(mt) => {
                            dw.clear();
                            dw.extend(pt.iter().zip(mt).map(|(p, m)| p * m));
                            &dw[..]
                        }
                    };
                    unsafe {
                        gemm_into(
                            (nk, d, nq),
                            dv_p.at(i * nk * h * d + j * d),
                            row,
                            (w.as_ptr(), 1, nk as isize),
                            (g_ij, row, 1),
                            gemm::Parallelism::None,
                        );
                    }
                }
                if !(want_q || want_k || want_bias) {
                    return;
                }
                dw.resize(nq * nk, 0.0);
                // dw = g·vᵀ, then the probabilities' gradient dp = dw ∘ mask
                unsafe {
                    gemm_into(
                        (nq, nk, d),
                        dw.as_mut_ptr(),
                        nk as isize,
                        (g_ij, row, 1),
                        (vd.as_ptr().add(v.at(i, j)), 1, v.strides[2] as isize),
                        gemm::Parallelism::None,
                    );
                }
                if let Some(mt) = mt {
                    dw.iter_mut().zip(mt).for_each(|(x, m)| *x *= m);
                }
                SCORES_GRAD.with_borrow_mut(|ds| {
                    ds.resize(nq * nk, 0.0);
                    // ds = p ∘ (dp - rowsum(dp ∘ p))
                    for ((dsr, pr), dpr) in ds.chunks_mut(nk).zip(pt.chunks(nk)).zip(dw.chunks(nk))
                    {
                        softmax_backward_row(pr, dpr, dsr);
                    }
                    if want_bias {
                        // SAFETY: this task's [nq, nk] block of dbias.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                ds.as_ptr(),
                                dbias_p.at(t * nq * nk),
                                nq * nk,
                            )
                        };
                    }
                    if want_q {
                        // dq = ds·k
                        unsafe {
                            gemm_into(
                                (nq, d, nk),
                                dq_p.at(i * nq * h * d + j * d),
                                row,
                                (ds.as_ptr(), nk as isize, 1),
                                (kd.as_ptr().add(k.at(i, j)), k.strides[2] as isize, 1),
                                gemm::Parallelism::None,
                            );
                        }
                    }
                    if want_k {
                        // dk = dsᵀ·q
                        unsafe {
                            gemm_into(
                                (nk, d, nq),
                                dk_p.at(i * nk * h * d + j * d),
                                row,
                                (ds.as_ptr(), 1, nk as isize),
                                (qd.as_ptr().add(q.at(i, j)), q.strides[2] as isize, 1),
                                gemm::Parallelism::None,
                            );
                        }
                    }
                });
            });
        });
        // q, k and v came as head-split views of `[b, n, h·d]` projections: their gradients go
        // back as the same kind of view of a `[b, n, h, d]` buffer, which the split's own
        // backward (swap, reshape) turns into `[b, n, h·d]` without copying
        let heads = |x: Vec<f32>, n: usize| {
            Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(new_flex(x, &[b, n, h, d])))
                .swap_dims(1, 2)
                .into_primitive()
                .tensor()
        };
        if let Some(node) = q_parent {
            grads.register::<Flex>(node.id, heads(dq, nq));
        }
        if let Some(node) = k_parent {
            grads.register::<Flex>(node.id, heads(dk, nk));
        }
        if let Some(node) = v_parent {
            grads.register::<Flex>(node.id, heads(dv, nk));
        }
        if let Some(node) = bias_parent {
            let shape = [b, h, nq, nk];
            let dbias = sum_to_bias_shape(new_flex(dbias, &shape), shape, bias_shape);
            grads.register::<Flex>(node.id, dbias);
        }
    }
}

/// All four as `Autodiff<Flex>` primitives, or all four back as they came.
#[allow(clippy::type_complexity)]
fn ad_four<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Tensor<B, 4>,
) -> Result<(AdTensor, AdTensor, AdTensor, AdTensor), Four<B>> {
    let back = |r: Result<AdTensor, Tensor<B, 4>>| r.map_or_else(|t| t, from_ad);
    match (into_ad(q), into_ad(k), into_ad(v), into_ad(bias)) {
        (Ok(q), Ok(k), Ok(v), Ok(bias)) => Ok((q, k, v, bias)),
        (q, k, v, bias) => Err((back(q), back(k), back(v), back(bias))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::softmax;
    use burn::tensor::backend::AutodiffBackend;
    use burn::tensor::Tolerance;

    use crate::kernels_autodiff::Ad;
    use burn::backend::Autodiff;

    type N = Autodiff<burn::backend::NdArray<f32>>;

    use crate::test_normal as normal;

    /// Output and the gradients of q, k, v (and the bias when `train_bias`) of
    /// `sum(attention(q, k, v, bias) * u)`, q/k/v as head-split views of `[b, n, h·d]`
    /// projections; the fused op when `fused`, else burn's composition.
    #[allow(clippy::too_many_arguments)]
    fn run<B: AutodiffBackend>(
        fused: bool,
        [b, h, nq, nk, d]: [usize; 5],
        bshape: [usize; 4],
        train_bias: bool,
        mask: Option<Vec<f32>>,
        seed: u64,
    ) -> Vec<TensorData> {
        let dev = Default::default();
        let t3 = |n: usize, s| {
            Tensor::<B, 3>::from_data(
                TensorData::new(normal(b * n * h * d, 1.0, s), [b, n, h * d]),
                &dev,
            )
            .require_grad()
        };
        let (xq, xk, xv) = (t3(nq, seed), t3(nk, seed + 1), t3(nk, seed + 2));
        let split = |x: Tensor<B, 3>, n: usize| x.reshape([b, n, h, d]).swap_dims(1, 2);
        let mut bias = Tensor::<B, 4>::from_data(
            TensorData::new(normal(bshape.iter().product(), 2.0, seed + 3), bshape),
            &dev,
        );
        if train_bias {
            bias = bias.require_grad();
        }
        let (q, k, v) = (
            split(xq.clone(), nq),
            split(xk.clone(), nk),
            split(xv.clone(), nk),
        );
        let out = if fused {
            let m = mask.clone();
            attend_merged(q, k, v, bias.clone(), move |n| {
                m.inspect(|m| assert_eq!(m.len(), n))
            })
            .unwrap_or_else(|_| panic!("takes the kernel"))
        } else {
            let mut w = softmax(q.matmul(k.swap_dims(2, 3)) + bias.clone(), 3);
            if let Some(m) = mask {
                w = w * Tensor::<B, 4>::from_data(TensorData::new(m, [b, h, nq, nk]), &dev);
            }
            w.matmul(v).swap_dims(1, 2).reshape([b, nq, h * d])
        };
        let u = Tensor::<B, 3>::from_data(
            TensorData::new(normal(b * nq * h * d, 1.0, seed + 4), [b, nq, h * d]),
            &dev,
        );
        let grads = (out.clone() * u).sum().backward();
        let mut got = vec![
            out.into_data(),
            xq.grad(&grads).unwrap().into_data(),
            xk.grad(&grads).unwrap().into_data(),
            xv.grad(&grads).unwrap().into_data(),
        ];
        if train_bias {
            got.push(bias.grad(&grads).unwrap().into_data());
        }
        got
    }

    #[test]
    fn matches_burns_composition_forward_and_backward() {
        for (dims, bshape, train_bias) in [
            // self-attention with T5's trainable position bias shared over the batch
            ([3, 4, 37, 37, 16], [1, 4, 37, 37], true),
            // the encoder's bias with the padding mask added: one per row, frozen
            ([2, 3, 20, 20, 8], [2, 3, 20, 20], false),
            // cross-attention: other keys, a key mask per row
            ([2, 4, 13, 29, 16], [2, 1, 1, 29], true),
            ([1, 1, 1, 5, 4], [1, 1, 1, 5], false),
        ] {
            let [b, h, nq, nk, _] = dims;
            let dropout = crate::dropout::scaled_mask(b * h * nq * nk, 0.9, 5);
            for mask in [None, Some(dropout)] {
                let fused = run::<Ad>(true, dims, bshape, train_bias, mask.clone(), 11);
                let generic = run::<N>(false, dims, bshape, train_bias, mask, 11);
                assert_eq!(fused.len(), generic.len());
                for (f, g) in fused.iter().zip(&generic) {
                    f.assert_approx_eq::<f32>(g, Tolerance::absolute(2e-5).set_relative(1e-4));
                }
            }
        }
    }

    #[test]
    fn declines_other_backends() {
        let n4 = |s: [usize; 4]| Tensor::<N, 4>::ones(s, &Default::default());
        let [qs, bs] = [[1, 2, 3, 4], [1, 1, 1, 3]];
        assert!(attend_merged(n4(qs), n4(qs), n4(qs), n4(bs), |_| None).is_err());
        let f4 = |s: [usize; 4]| Tensor::<Flex, 4>::ones(s, &Default::default());
        assert!(
            attend_merged(f4(qs), f4(qs), f4(qs), f4(bs), |_| None).is_err(),
            "inference has its own kernel"
        );
    }
}
