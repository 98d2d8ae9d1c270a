//! The training (autodiff) side of the fused burn-flex kernels: the same one-pass, parallel
//! forward as `kernels.rs`, registered with burn's autodiff graph together with a one-pass
//! backward, so fine-tuning and PPO on `--device cpu` stop composing T5's gated GELU from eight
//! single-threaded ops (a scalar `powf` and `tanh` among them), attention's
//! `softmax(scores + bias)` from six and the RMS norm from five, forward and again backward.
//!
//! How: the tensor's primitive is checked at run time for burn's `Autodiff<Flex>` tensor (f32,
//! the default `NoCheckpointing` strategy that `src/backend.rs` uses); anything else returns
//! the inputs and the caller takes burn's generic ops, whose own backward then applies.

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{binary, Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::kernels::{
    data, gelu_new_mul_slices, gelu_new_sigmoid, new_flex, primitive_as, softmax_bias_rows,
    tensor_of, zip3_map, TWO_SQRT_2_OVER_PI,
};
use crate::kernels_matmul::product_of;

pub(crate) type Ad = Autodiff<Flex>;
pub(crate) type AdTensor = burn::tensor::ops::FloatTensor<Ad>;

/// `t`'s autodiff-over-burn-flex primitive (f32), or `t` back.
pub(crate) fn into_ad<B: Backend, const D: usize>(
    t: Tensor<B, D>,
) -> Result<AdTensor, Tensor<B, D>> {
    match primitive_as::<AdTensor, B, D>(t) {
        Ok(t) if t.primitive.dtype() == DType::F32 => Ok(t),
        Ok(t) => Err(from_ad(t)),
        Err(t) => Err(t),
    }
}

/// An `Autodiff<Flex>` primitive as a tensor of `B` (only called where `B` is that backend).
pub(crate) fn from_ad<B: Backend, const D: usize>(t: AdTensor) -> Tensor<B, D> {
    tensor_of(t)
}

/// `x` back, and whether it is an `Autodiff<Flex>` tensor (f32).
pub fn on_autodiff_flex<B: Backend, const D: usize>(x: Tensor<B, D>) -> (Tensor<B, D>, bool) {
    match into_ad(x) {
        Ok(t) => (from_ad(t), true),
        Err(x) => (x, false),
    }
}

/// `t` itself if contiguous, else a contiguous copy.
pub(crate) fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.is_contiguous() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// d/dx of `gelu_new(x) = x s`, `s = sigmoid(2u)`, `u = sqrt(2/pi) (x + 0.044715 x^3)`:
/// `s + x s (1 - s) 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2)`.
#[inline]
pub fn gelu_new_grad_f32(x: f32) -> f32 {
    let s = gelu_new_sigmoid(x);
    s + x * s * (1.0 - s) * TWO_SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x)
}

/// `gelu_new(a) * b` with its backward, when both are `Autodiff<Flex>` tensors of one shape;
/// else both back.
#[allow(clippy::type_complexity)]
pub fn gelu_new_mul<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    if a.dims() != b.dims() {
        return Err((a, b));
    }
    let (a, b) = ad_pair(a, b)?;
    let (xa, xb) = (contiguous(&a.primitive), contiguous(&b.primitive));
    let shape = xa.layout().shape().to_vec();
    let out = new_flex(gelu_new_mul_slices(data(&xa), Some(data(&xb))), &shape);
    let out = match GeluNewMulBackward
        .prepare::<NoCheckpointing>([a.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((xa, xb), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Ok(from_ad(out))
}

#[derive(Debug)]
struct GeluNewMulBackward;

impl Backward<Flex, 2> for GeluNewMulBackward {
    /// The inputs `a` and `b`, contiguous.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (a, b) = ops.state;
        let shape = a.layout().shape().to_vec();
        let (a2, shape2) = (a.clone(), shape.clone());
        binary::<Flex, _, _>(
            ops.parents,
            ops.node,
            grads,
            move |grad| {
                let g = contiguous(&grad);
                let d = zip3_map(data(&g), data(&a), data(&b), |g, x, y| {
                    g * y * gelu_new_grad_f32(x)
                });
                new_flex(d, &shape)
            },
            move |grad| {
                let g = contiguous(&grad);
                let d = gelu_new_mul_slices(data(&a2), Some(data(&g)));
                new_flex(d, &shape2)
            },
        );
    }
}

/// `x · w` for 2-D `Autodiff<Flex>` tensors (f32, any strides) with its backward, through
/// `kernels_matmul`'s product: the frozen base projections of LoRA fine-tuning and PPO keep the
/// loaders' `[out, in]` weight layout, for which burn-flex's matmul packs the weight on one
/// core while the other waits (`kernels_matmul::column_blocks`), and every burn-flex product
/// zero-fills its output and then copies it into a second buffer. Else both back.
#[allow(clippy::type_complexity)]
pub fn matmul_2d<B: Backend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
) -> Result<Tensor<B, 2>, (Tensor<B, 2>, Tensor<B, 2>)> {
    let (x, w) = ad_pair(x, w)?;
    let Some(y) = product_of(&x.primitive, false, &w.primitive, false) else {
        return Err((from_ad(x), from_ad(w)));
    };
    let (x_tracked, w_tracked) = (x.is_tracked(), w.is_tracked());
    let out = match MatmulBackward
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            // the gradient of each operand needs the other one only
            let state = (
                w_tracked.then(|| x.primitive.clone()),
                x_tracked.then(|| w.primitive.clone()),
            );
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Ok(from_ad(out))
}

#[derive(Debug)]
struct MatmulBackward;

impl Backward<Flex, 2> for MatmulBackward {
    /// `x` when `w` needs its gradient, `w` when `x` does.
    type State = (Option<FlexTensor>, Option<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let product = |a: &FlexTensor, a_t, b: &FlexTensor, b_t| {
            product_of(a, a_t, b, b_t).expect("the forward's operands and their gradient fit")
        };
        binary::<Flex, _, _>(
            ops.parents,
            ops.node,
            grads,
            // d x = g · wᵀ
            |g| product(&g, false, &w.expect("kept for x's gradient"), true),
            // d w = xᵀ · g
            |g| product(&x.expect("kept for w's gradient"), true, &g, false),
        );
    }
}

/// Both tensors as `Autodiff<Flex>` primitives, or both back as they came.
#[allow(clippy::type_complexity)]
fn ad_pair<B: Backend, const D: usize, const E: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, E>,
) -> Result<(AdTensor, AdTensor), (Tensor<B, D>, Tensor<B, E>)> {
    match (into_ad(a), into_ad(b)) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Ok(a), Err(b)) => Err((from_ad(a), b)),
        (Err(a), Ok(b)) => Err((a, from_ad(b))),
        (Err(a), Err(b)) => Err((a, b)),
    }
}

/// `softmax(scores + bias)` over the last dimension with its backward, when both are
/// `Autodiff<Flex>` tensors and `bias` broadcasts over `scores`' leading dimensions (checked by
/// `kernels::softmax_with_bias`); else both back.
#[allow(clippy::type_complexity)]
pub fn softmax_with_bias<B: Backend>(
    scores: Tensor<B, 4>,
    bias: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, (Tensor<B, 4>, Tensor<B, 4>)> {
    let (shape, bshape) = (scores.dims(), bias.dims());
    let (s, b) = ad_pair(scores, bias)?;
    let (xs, xb) = (contiguous(&s.primitive), contiguous(&b.primitive));
    let y = new_flex(
        softmax_bias_rows(data(&xs), data(&xb), shape, bshape),
        &shape,
    );
    let out = match SoftmaxBiasBackward
        .prepare::<NoCheckpointing>([s.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((y.clone(), bshape), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Ok(from_ad(out))
}

#[derive(Debug)]
struct SoftmaxBiasBackward;

impl Backward<Flex, 2> for SoftmaxBiasBackward {
    /// The output `y` (contiguous) and the bias shape.
    type State = (FlexTensor, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (y, bshape) = ops.state;
        let [scores_parent, bias_parent] = ops.parents;
        let g = contiguous(&grads.consume::<Flex>(&ops.node));
        let shape = y.layout().shape().to_vec();
        // d scores = y (g - sum(g y)) row by row; the same for the bias, summed over the
        // dimensions it was broadcast along
        let k = shape[3];
        let mut d = vec![0.0f32; data(&y).len()];
        d.par_chunks_mut(k)
            .zip(data(&y).par_chunks(k).zip(data(&g).par_chunks(k)))
            .for_each(|(d, (y, g))| softmax_backward_row(y, g, d));
        let d = new_flex(d, &shape);
        if let Some(node) = bias_parent {
            let shape = [shape[0], shape[1], shape[2], shape[3]];
            grads.register::<Flex>(node.id, sum_to_bias_shape(d.clone(), shape, bshape));
        }
        if let Some(node) = scores_parent {
            grads.register::<Flex>(node.id, d);
        }
    }
}

/// One row of the softmax's backward, `out = y ∘ (g - sum(y ∘ g))`, for the softmax's output
/// `y` and the gradient `g` of that output.
pub(crate) fn softmax_backward_row(y: &[f32], g: &[f32], out: &mut [f32]) {
    let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
    for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
        *o = y * (g - dot);
    }
}

/// The gradient `d` of a `shape` result, summed over the dimensions along which a bias of shape
/// `bshape` was broadcast into it: the bias' own gradient.
pub(crate) fn sum_to_bias_shape(
    d: FlexTensor,
    shape: [usize; 4],
    bshape: [usize; 4],
) -> FlexTensor {
    let mut t = Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(d));
    for (i, &n) in bshape.iter().enumerate() {
        if n == 1 && shape[i] != 1 {
            t = t.sum_dim(i);
        }
    }
    t.into_primitive().tensor()
}

/// T5's RMS layer norm `x / sqrt(mean(x^2) + eps) * weight` over the last dimension with its
/// backward, when `x` and `weight` are `Autodiff<Flex>` tensors; else both back.
#[allow(clippy::type_complexity)]
pub fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, 1>)> {
    let (x, w) = ad_pair(x, weight)?;
    let (fx, fw) = (contiguous(&x.primitive), contiguous(&w.primitive));
    let shape = fx.layout().shape().to_vec();
    let d = shape[D - 1];
    let (xs, ws) = (data(&fx), data(&fw));
    // per row: 1 / sqrt(mean(x^2) + eps), the sum in f64 as the inference kernel
    let inv: Vec<f32> = xs
        .par_chunks(d)
        .map(|row| {
            let ss: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
            1.0 / ((ss / d as f64) as f32 + eps as f32).sqrt()
        })
        .collect();
    let mut out = vec![0.0f32; xs.len()];
    out.par_chunks_mut(d)
        .zip(xs.par_chunks(d).zip(&inv))
        .for_each(|(o, (row, &r))| {
            for ((o, &v), &g) in o.iter_mut().zip(row).zip(ws) {
                *o = v * r * g;
            }
        });
    let out = new_flex(out, &shape);
    let out = match RmsNormBackward
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((fx, fw, inv), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Ok(from_ad(out))
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    /// `x` and `weight` (contiguous) and each row's `1 / sqrt(mean(x^2) + eps)`.
    type State = (FlexTensor, FlexTensor, Vec<f32>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w, inv) = ops.state;
        let [x_parent, w_parent] = ops.parents;
        let g = contiguous(&grads.consume::<Flex>(&ops.node));
        let shape = x.layout().shape().to_vec();
        let d = *shape.last().expect("at least one dimension");
        let (xs, ws, gs) = (data(&x), data(&w), data(&g));
        if let Some(node) = w_parent {
            // d weight = sum over rows of g * x * r (f64 accumulators per task, then summed)
            let dw = xs
                .par_chunks(d)
                .zip(gs.par_chunks(d).zip(&inv))
                .fold(
                    || vec![0f64; d],
                    |mut acc, (row, (g, &r))| {
                        for ((a, &v), &g) in acc.iter_mut().zip(row).zip(g) {
                            *a += (g * v * r) as f64;
                        }
                        acc
                    },
                )
                .reduce(
                    || vec![0f64; d],
                    |mut a, b| {
                        a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                        a
                    },
                );
            let dw: Vec<f32> = dw.into_iter().map(|v| v as f32).collect();
            grads.register::<Flex>(node.id, new_flex(dw, &[d]));
        }
        if let Some(node) = x_parent {
            // d x = r (g w - xhat mean(g w xhat)), xhat = x r
            let mut dx = vec![0.0f32; xs.len()];
            dx.par_chunks_mut(d)
                .zip(xs.par_chunks(d).zip(gs.par_chunks(d).zip(&inv)))
                .for_each(|(o, (row, (g, &r)))| {
                    let dot: f64 = row
                        .iter()
                        .zip(g)
                        .zip(ws)
                        .map(|((&v, &g), &w)| (g * w * v * r) as f64)
                        .sum();
                    let mean = (dot / d as f64) as f32;
                    for (((o, &v), &g), &w) in o.iter_mut().zip(row).zip(g).zip(ws) {
                        *o = r * (g * w - v * r * mean);
                    }
                });
            grads.register::<Flex>(node.id, new_flex(dx, &shape));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gelu_new_f32;
    use burn::tensor::Tolerance;

    type N = Autodiff<burn::backend::NdArray<f32>>;

    use crate::test_normal as normal;

    /// `(out, grad_a, grad_b)` of `sum(gelu_new(a) * b * w)` on backend `B` through the model's
    /// entry point (`kernels::gelu_new_mul`).
    fn run<B: burn::tensor::backend::AutodiffBackend>(
        a: &[f32],
        b: &[f32],
        w: &[f32],
        shape: [usize; 3],
    ) -> [TensorData; 3] {
        let dev = Default::default();
        let t = |v: &[f32]| Tensor::<B, 3>::from_data(TensorData::new(v.to_vec(), shape), &dev);
        let (ta, tb) = (t(a).require_grad(), t(b).require_grad());
        let out = crate::kernels::gelu_new_mul(ta.clone(), Some(tb.clone()));
        let grads = (out.clone() * t(w)).sum().backward();
        [
            out.into_data(),
            ta.grad(&grads).unwrap().into_data(),
            tb.grad(&grads).unwrap().into_data(),
        ]
    }

    #[test]
    fn fused_gated_gelu_matches_burns_composition_forward_and_backward() {
        let shape = [3, 70, 300]; // above the parallel threshold, not a multiple of the chunk
        let n: usize = shape.iter().product();
        let draw = |seed| normal(n, 2.0, seed);
        let (a, b, w) = (draw(1), draw(2), draw(3));
        let fused = run::<Ad>(&a, &b, &w, shape);
        let generic = run::<N>(&a, &b, &w, shape);
        for (f, g) in fused.iter().zip(&generic) {
            f.assert_approx_eq::<f32>(g, Tolerance::absolute(2e-5).set_relative(2e-5));
        }
    }

    #[test]
    fn the_fused_path_is_taken_on_autodiff_flex_only() {
        let t = |v: f32| Tensor::<Ad, 2>::full([2, 3], v, &Default::default()).require_grad();
        assert!(gelu_new_mul(t(1.0), t(2.0)).is_ok());
        let n = |v: f32| Tensor::<N, 2>::full([2, 3], v, &Default::default()).require_grad();
        assert!(gelu_new_mul(n(1.0), n(2.0)).is_err());
        let f = |v: f32| Tensor::<Flex, 2>::full([2, 3], v, &Default::default());
        assert!(
            gelu_new_mul(f(1.0), f(2.0)).is_err(),
            "inference has its own kernel"
        );
        let s4 = |v: f32| Tensor::<Ad, 4>::full([1, 2, 3, 4], v, &Default::default());
        assert!(softmax_with_bias(s4(1.0), s4(0.0)).is_ok());
        let n4 = |v: f32| Tensor::<N, 4>::full([1, 2, 3, 4], v, &Default::default());
        assert!(softmax_with_bias(n4(1.0), n4(0.0)).is_err());
        let w = Tensor::<Ad, 1>::ones([4], &Default::default());
        assert!(rms_norm(s4(1.0), w, 1e-6).is_ok());
    }

    /// `(out, grad_scores, grad_bias)` of `sum(softmax(s + b) * w)` through the model's entry point.
    fn run_softmax<B: burn::tensor::backend::AutodiffBackend>(
        s: &[f32],
        b: &[f32],
        w: &[f32],
        shape: [usize; 4],
        bshape: [usize; 4],
    ) -> [TensorData; 3] {
        let dev = Default::default();
        let t = |v: &[f32], sh: [usize; 4]| {
            Tensor::<B, 4>::from_data(TensorData::new(v.to_vec(), sh), &dev)
        };
        let (ts, tb) = (t(s, shape).require_grad(), t(b, bshape).require_grad());
        let out = crate::kernels::softmax_with_bias(ts.clone(), tb.clone());
        let grads = (out.clone() * t(w, shape)).sum().backward();
        [
            out.into_data(),
            ts.grad(&grads).unwrap().into_data(),
            tb.grad(&grads).unwrap().into_data(),
        ]
    }

    #[test]
    fn fused_softmax_with_bias_matches_burns_composition_forward_and_backward() {
        let draw = |n: usize, seed| normal(n, 3.0, seed);
        // a position bias shared over the batch, a per-batch key mask, a full-size bias
        for (shape, bshape) in [
            ([2, 4, 33, 40], [1, 4, 33, 40]),
            ([3, 2, 5, 70], [3, 1, 1, 70]),
            ([2, 3, 50, 50], [2, 3, 50, 50]),
        ] {
            let n: usize = shape.iter().product();
            let (s, b, w) = (draw(n, 1), draw(bshape.iter().product(), 2), draw(n, 3));
            let fused = run_softmax::<Ad>(&s, &b, &w, shape, bshape);
            let generic = run_softmax::<N>(&s, &b, &w, shape, bshape);
            for (f, g) in fused.iter().zip(&generic) {
                f.assert_approx_eq::<f32>(g, Tolerance::absolute(1e-5).set_relative(1e-4));
            }
        }
    }

    #[test]
    fn fused_rms_norm_matches_burns_composition_forward_and_backward() {
        fn run<B: burn::tensor::backend::AutodiffBackend>(
            x: &[f32],
            w: &[f32],
            u: &[f32],
            shape: [usize; 3],
        ) -> [TensorData; 3] {
            let dev = Default::default();
            let tx =
                Tensor::<B, 3>::from_data(TensorData::new(x.to_vec(), shape), &dev).require_grad();
            let tw = Tensor::<B, 1>::from_data(TensorData::new(w.to_vec(), [shape[2]]), &dev)
                .require_grad();
            let tu = Tensor::<B, 3>::from_data(TensorData::new(u.to_vec(), shape), &dev);
            let out = crate::kernels::rms_norm(tx.clone(), tw.clone(), 1e-6);
            let grads = (out.clone() * tu).sum().backward();
            [
                out.into_data(),
                tx.grad(&grads).unwrap().into_data(),
                tw.grad(&grads).unwrap().into_data(),
            ]
        }
        let draw = |n: usize, seed| normal(n, 2.0, seed);
        for shape in [[2, 3, 8], [4, 37, 512]] {
            let n: usize = shape.iter().product();
            let (x, w, u) = (draw(n, 4), draw(shape[2], 5), draw(n, 6));
            let fused = run::<Ad>(&x, &w, &u, shape);
            let generic = run::<N>(&x, &w, &u, shape);
            for (f, g) in fused.iter().zip(&generic) {
                f.assert_approx_eq::<f32>(g, Tolerance::absolute(1e-4).set_relative(1e-4));
            }
        }
    }

    #[test]
    fn the_gradient_formula_matches_finite_differences() {
        for x in [-6.0f32, -2.5, -0.7, 0.0, 0.3, 1.1, 4.0] {
            let h = 1e-3f64;
            let g = |x: f64| {
                let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                0.5 * x * (1.0 + u.tanh())
            };
            let fd = (g(x as f64 + h) - g(x as f64 - h)) / (2.0 * h);
            assert!(
                (gelu_new_grad_f32(x) as f64 - fd).abs() < 1e-5,
                "{x}: {} vs {fd}",
                gelu_new_grad_f32(x)
            );
        }
    }

    #[test]
    fn the_linear_matches_burns_matmul_forward_and_backward() {
        // (rows, in, out): below and above the threading threshold, with `[out, in]` weights
        // seen transposed (as the loaders keep them) and plain `[in, out]` ones; frozen weights
        // (LoRA's base, PPO) and trainable ones
        fn run<B: burn::tensor::backend::AutodiffBackend>(
            x: &[f32],
            w: &[f32],
            u: &[f32],
            (m, k, n): (usize, usize, usize),
            out_in: bool,
            train_w: bool,
        ) -> Vec<TensorData> {
            let dev = Default::default();
            let tx =
                Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [m, k]), &dev).require_grad();
            let tw = if out_in {
                Tensor::<B, 2>::from_data(TensorData::new(w.to_vec(), [n, k]), &dev).transpose()
            } else {
                Tensor::<B, 2>::from_data(TensorData::new(w.to_vec(), [k, n]), &dev)
            };
            let tw = if train_w { tw.require_grad() } else { tw };
            let tu = Tensor::<B, 2>::from_data(TensorData::new(u.to_vec(), [m, n]), &dev);
            let out = crate::linear::linear_flat(tx.clone(), tw.clone(), None);
            let grads = (out.clone() * tu).sum().backward();
            let mut got = vec![out.into_data(), tx.grad(&grads).unwrap().into_data()];
            if train_w {
                got.push(tw.grad(&grads).unwrap().into_data());
            }
            got
        }
        for (m, k, n) in [(5, 7, 3), (400, 192, 320), (150, 256, 200)] {
            let (x, w, u) = (
                normal(m * k, 1.0, 7),
                normal(k * n, 1.0, 8),
                normal(m * n, 1.0, 9),
            );
            for (out_in, train_w) in [(true, false), (false, true), (true, true)] {
                let fused = run::<Ad>(&x, &w, &u, (m, k, n), out_in, train_w);
                let generic = run::<N>(&x, &w, &u, (m, k, n), out_in, train_w);
                for (f, g) in fused.iter().zip(&generic) {
                    f.assert_approx_eq::<f32>(g, Tolerance::absolute(1e-4).set_relative(1e-5));
                }
            }
        }
        let t = |v: f32| Tensor::<Ad, 2>::full([2, 3], v, &Default::default());
        assert!(matmul_2d(t(1.0).require_grad(), t(1.0).transpose()).is_ok());
        let n2 = |v: f32| Tensor::<N, 2>::full([2, 3], v, &Default::default());
        assert!(matmul_2d(n2(1.0).require_grad(), n2(1.0).transpose()).is_err());
    }

    #[test]
    fn frozen_inputs_take_the_untracked_path() {
        let dev = Default::default();
        let a = Tensor::<Ad, 2>::ones([2, 3], &dev);
        let b = Tensor::<Ad, 2>::ones([2, 3], &dev);
        let out = crate::kernels::gelu_new_mul(a, Some(b));
        let want = gelu_new_f32(1.0);
        for v in out.into_data().to_vec::<f32>().unwrap() {
            assert!((v - want).abs() < 1e-7);
        }
    }
}
