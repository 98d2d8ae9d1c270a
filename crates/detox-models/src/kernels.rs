//! Fused CPU kernels for burn-flex, the backend behind `--device cpu`, with burn's generic ops as
//! the fallback on every other backend (ndarray, wgpu, cuda) and under autodiff (training).
//!
//! Why: burn-flex runs each elementwise op as its own single-threaded pass, and burn composes
//! `gelu_approximate` from eight of them (a scalar `powf` and `tanh` among them). T5's gated-GELU
//! feed-forward and its RMS layer norm are then a large share of an inference pass that should
//! be GEMM-bound, on one of the cores. Each kernel here is one pass over the data, split over the
//! cores with rayon, and computes what the generic composition computes (the same formulas in
//! f32; RMS statistics accumulated in f64).
//!
//! How: the tensor's primitive is checked at run time for burn-flex's `FlexTensor` (f32); any
//! other primitive — another backend, an autodiff tensor, another dtype — takes the generic path,
//! so the models stay generic over `B: Backend`. Under autodiff on burn-flex (training on
//! `--device cpu`), `kernels_autodiff.rs` registers the gated GELU with its own backward.

use std::any::Any;

use burn::prelude::*;
use burn::tensor::activation;
use burn::tensor::{DType, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::kernels_math::{erf_in_place, exp_in_place};

/// Elements per parallel task of the elementwise kernels.
const CHUNK: usize = 1 << 14;
/// Below this many elements a kernel runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// `t`'s float primitive as `P` when that is `B`'s primitive type (a run-time check), else `t`
/// back.
pub(crate) fn primitive_as<P: 'static, B: Backend, const D: usize>(
    t: Tensor<B, D>,
) -> Result<P, Tensor<B, D>> {
    let prim: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    prim.downcast::<P>().map(|p| *p).map_err(|other| {
        Tensor::from_primitive(TensorPrimitive::Float(
            *other
                .downcast::<B::FloatTensorPrimitive>()
                .expect("the primitive came from this backend"),
        ))
    })
}

/// `p` as a tensor of `B` (only called where `B`'s float primitive is `P`).
pub(crate) fn tensor_of<B: Backend, const D: usize, P: 'static>(p: P) -> Tensor<B, D> {
    let prim: Box<dyn Any> = Box::new(p);
    Tensor::from_primitive(TensorPrimitive::Float(
        *prim
            .downcast::<B::FloatTensorPrimitive>()
            .expect("only tensors of this backend's primitive type are built here"),
    ))
}

/// The f32 contiguous data of `t` if it is a burn-flex tensor, else `t` back.
fn flex_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<FlexTensor, Tensor<B, D>> {
    match primitive_as::<FlexTensor, B, D>(t) {
        Ok(f) if f.dtype() == DType::F32 => Ok(if f.is_contiguous() {
            f
        } else {
            f.to_contiguous()
        }),
        Ok(f) => Err(from_flex(f)),
        Err(t) => Err(t),
    }
}

/// A burn-flex tensor as a tensor of `B` (only called where `B` is burn-flex).
fn from_flex<B: Backend, const D: usize>(f: FlexTensor) -> Tensor<B, D> {
    tensor_of(f)
}

/// Both tensors as burn-flex f32 data, or both back as they came.
#[allow(clippy::type_complexity)]
fn flex_pair<B: Backend, const D: usize, const E: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, E>,
) -> Result<(FlexTensor, FlexTensor), (Tensor<B, D>, Tensor<B, E>)> {
    match (flex_f32(a), flex_f32(b)) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Ok(a), Err(b)) => Err((from_flex(a), b)),
        (Err(a), Ok(b)) => Err((a, from_flex(b))),
        (Err(a), Err(b)) => Err((a, b)),
    }
}

pub(crate) fn data(f: &FlexTensor) -> &[f32] {
    let (start, end) = f
        .layout()
        .contiguous_offsets()
        .expect("made contiguous by flex_f32");
    &f.storage::<f32>()[start..end]
}

pub(crate) fn new_flex(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// `out[i] = f(a[i], b[i])` over equal-length slices, in parallel chunks.
pub(crate) fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    for_each_chunk(&mut out, |start, o| {
        let end = start + o.len();
        for ((o, &x), &y) in o.iter_mut().zip(&a[start..end]).zip(&b[start..end]) {
            *o = f(x, y);
        }
    });
    out
}

/// `run(start, chunk)` over `out` in chunks of [`CHUNK`] elements (`start`: the chunk's first
/// index), in parallel when `out` has at least [`PARALLEL_MIN`] elements, else in one call.
fn for_each_chunk(out: &mut [f32], run: impl Fn(usize, &mut [f32]) + Sync) {
    if out.len() < PARALLEL_MIN {
        run(0, out);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, o)| run(i * CHUNK, o));
    }
}

/// `out[i] = f(a[i], b[i], c[i])` over equal-length slices, in parallel chunks.
pub(crate) fn zip3_map(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(f32, f32, f32) -> f32 + Sync,
) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    for_each_chunk(&mut out, |start, o| {
        let end = start + o.len();
        let abc = a[start..end].iter().zip(&b[start..end]).zip(&c[start..end]);
        for (o, ((&x, &y), &z)) in o.iter_mut().zip(abc) {
            *o = f(x, y, z);
        }
    });
    out
}

/// `t`'s f32 data for writing in place when `t` is a contiguous burn-flex buffer that no other
/// tensor shares (a freshly computed product or sum), else `None`.
fn unique_data_mut(t: &mut FlexTensor) -> Option<&mut [f32]> {
    let n = t.layout().num_elements();
    if t.layout().contiguous_offsets() != Some((0, n)) {
        return None;
    }
    t.try_storage_mut::<f32>().filter(|s| s.len() == n)
}

/// `a + b` for tensors of one shape (residual connections): in parallel on burn-flex, into
/// `a`'s buffer when nothing else holds it; burn's `+` elsewhere (other backends, autodiff).
pub fn add<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    if a.dims() != b.dims() {
        return a + b;
    }
    let shape = a.dims();
    let (mut fa, fb) = match flex_pair(a, b) {
        Ok(pair) => pair,
        Err((a, b)) => return a + b,
    };
    if let Some(o) = unique_data_mut(&mut fa) {
        let y = data(&fb);
        for_each_chunk(o, |start, o| {
            for (o, &y) in o.iter_mut().zip(&y[start..]) {
                *o += y;
            }
        });
        return from_flex(fa);
    }
    from_flex(new_flex(
        zip_map(data(&fa), data(&fb), |x, y| x + y),
        &shape,
    ))
}

/// `y + bias` for a `[rows, out]` product and an `[out]` bias, when both are burn-flex f32: in
/// parallel rows, into `y`'s buffer when nothing else holds it. Else both back.
#[allow(clippy::type_complexity)]
pub(crate) fn add_bias<B: Backend>(
    y: Tensor<B, 2>,
    bias: Tensor<B, 1>,
) -> Result<Tensor<B, 2>, (Tensor<B, 2>, Tensor<B, 1>)> {
    let [rows, n] = y.dims();
    if bias.dims() != [n] || n == 0 {
        return Err((y, bias));
    }
    let (mut fy, fb) = flex_pair(y, bias)?;
    let b = data(&fb);
    let add_rows = |o: &mut [f32]| {
        let run = |row: &mut [f32]| row.iter_mut().zip(b).for_each(|(o, &c)| *o += c);
        if o.len() < PARALLEL_MIN {
            o.chunks_mut(n).for_each(run);
        } else {
            o.par_chunks_mut(n).for_each(run);
        }
    };
    if let Some(o) = unique_data_mut(&mut fy) {
        add_rows(o);
        return Ok(from_flex(fy));
    }
    let mut out = data(&fy).to_vec();
    add_rows(&mut out);
    Ok(from_flex(new_flex(out, &[rows, n])))
}

/// transformers' `NewGELUActivation` (`gelu_new`, tanh approximation) of one value:
/// `0.5 x (1 + tanh(u))`, `u = sqrt(2/pi) (x + 0.044715 x^3)`, computed as the equal
/// `x / (1 + exp(-2u))` (one `exp` instead of libm's `tanhf`, which costs several times more and
/// was the largest scalar cost of the training step; the two agree to float32 rounding).
#[inline]
pub fn gelu_new_f32(x: f32) -> f32 {
    x * gelu_new_sigmoid(x)
}

/// `2 sqrt(2/pi)`, the factor of `x + 0.044715 x^3` inside [`gelu_new_sigmoid`].
pub(crate) const TWO_SQRT_2_OVER_PI: f32 = 1.595_769;

/// `sigmoid(2u) = (1 + tanh(u)) / 2` of [`gelu_new_f32`].
#[inline]
pub(crate) fn gelu_new_sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-TWO_SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x))).exp())
}

/// `gelu_new(a) * b` (T5's gated feed-forward, `wi_0` and `wi_1`), or `gelu_new(a)` without `b`.
pub fn gelu_new_mul<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Option<Tensor<B, D>>,
) -> Tensor<B, D> {
    let shape = a.dims();
    let fa = match flex_f32(a) {
        Ok(f) => f,
        Err(a) => {
            let (a, b) = match b {
                Some(b) => match crate::kernels_autodiff::gelu_new_mul(a, b) {
                    Ok(fused) => return fused,
                    Err((a, b)) => (a, Some(b)),
                },
                None => (a, None),
            };
            let g = activation::gelu_approximate(a);
            return match b {
                Some(b) => g * b,
                None => g,
            };
        }
    };
    let out = match b.map(flex_f32) {
        None => gelu_new_mul_slices(data(&fa), None),
        Some(Ok(fb)) if fb.layout().shape().to_vec() == shape.to_vec() => {
            gelu_new_mul_slices(data(&fa), Some(data(&fb)))
        }
        Some(Ok(fb)) => return gelu_new_mul(from_flex::<B, D>(fa), None) * from_flex(fb),
        Some(Err(b)) => return gelu_new_mul(from_flex::<B, D>(fa), None) * b,
    };
    from_flex(new_flex(out, &shape))
}

/// [`gelu_new_f32`]`(a[i]) * b[i]` (or without `b`) in parallel chunks, each chunk's `exp` through
/// the vectorized [`exp_in_place`]: the exponent `-2u` is written first, exponentiated in place,
/// then turned into `x / (1 + e) (* y)`.
pub(crate) fn gelu_new_mul_slices(a: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    for_each_chunk(&mut out, |start, o| {
        let x = &a[start..start + o.len()];
        for (o, &x) in o.iter_mut().zip(x) {
            *o = -TWO_SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x));
        }
        exp_in_place(o);
        for (o, &x) in o.iter_mut().zip(x) {
            *o = x * (1.0 / (1.0 + *o));
        }
        if let Some(b) = b {
            for (o, &y) in o.iter_mut().zip(&b[start..]) {
                *o *= y;
            }
        }
    });
    out
}

/// `0.5 x (1 + erf(x / sqrt 2))` in parallel chunks, `erf` through the vectorized
/// [`erf_in_place`].
fn gelu_slice(a: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    for_each_chunk(&mut out, |start, o| {
        let x = &a[start..start + o.len()];
        for (o, &x) in o.iter_mut().zip(x) {
            *o = x * std::f32::consts::FRAC_1_SQRT_2;
        }
        erf_in_place(o);
        for (o, &x) in o.iter_mut().zip(x) {
            *o = 0.5 * x * (1.0 + *o);
        }
    });
    out
}

/// Exact GELU, `0.5 x (1 + erf(x / sqrt 2))`, in parallel on burn-flex ([`gelu_slice`]).
///
/// Under autodiff, burn differentiates its `gelu` op through the backend's `gelu_backward`,
/// whose default (burn-ndarray's, the GPU backends') is the derivative of the *tanh
/// approximation*: gradients ~1e-3 off torch's. burn-flex's own is exact, so `Autodiff<Flex>`
/// keeps the op; any other autodiff backend gets GELU composed from `erf`, whose backward is
/// exact (`tests/parity_reward.rs` compares every RoBERTa gradient with torch's).
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let shape = x.dims();
    match flex_f32(x) {
        Ok(f) => from_flex(new_flex(gelu_slice(data(&f)), &shape)),
        Err(x) => {
            let (x, on_flex) = crate::kernels_autodiff::on_autodiff_flex(x);
            if on_flex || !B::ad_enabled(&x.device()) {
                activation::gelu(x)
            } else {
                let half = x.clone() * 0.5;
                half * ((x * std::f64::consts::FRAC_1_SQRT_2).erf() + 1.0)
            }
        }
    }
}

/// T5's layer norm over the last dimension: `x / sqrt(mean(x^2) + eps) * weight`
/// (transformers' `T5LayerNorm`: no mean subtraction, no bias).
pub fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    let shape = x.dims();
    let generic = |x: Tensor<B, D>, weight: Tensor<B, 1>| {
        let variance = x.clone().powi_scalar(2).mean_dim(D - 1);
        // a division, not `* sqrt().recip()`: burn's SIMD `recip` (ndarray's) is the CPU's
        // approximate reciprocal, off by up to 4e-4 relative on AVX2
        (x / (variance + eps).sqrt()) * weight.unsqueeze::<D>()
    };
    let (fx, fw) = match flex_pair(x, weight) {
        Ok(pair) => pair,
        Err((x, w)) => {
            return match crate::kernels_autodiff::rms_norm(x, w, eps) {
                Ok(fused) => fused,
                Err((x, w)) => generic(x, w),
            }
        }
    };
    let (x, w) = (data(&fx), data(&fw));
    let d = shape[D - 1];
    let mut out = vec![0.0f32; x.len()];
    let norm_row = |(o, row): (&mut [f32], &[f32])| {
        let ss: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let denom = ((ss / d as f64) as f32 + eps as f32).sqrt();
        for ((o, &v), &g) in o.iter_mut().zip(row).zip(w) {
            *o = v / denom * g;
        }
    };
    if x.len() < PARALLEL_MIN {
        out.chunks_mut(d).zip(x.chunks(d)).for_each(norm_row);
    } else {
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .for_each(norm_row);
    }
    from_flex(new_flex(out, &shape))
}

/// `softmax(scores + bias)` over the last dimension: attention weights from raw scores and an
/// additive bias (position bias and/or masks) that broadcasts over `scores`' leading dimensions
/// (any of batch, heads, queries may be 1 in `bias`; the key dimension may not).
pub fn softmax_with_bias<B: Backend>(scores: Tensor<B, 4>, bias: Tensor<B, 4>) -> Tensor<B, 4> {
    let shape = scores.dims();
    let bshape = bias.dims();
    let generic = |s: Tensor<B, 4>, b: Tensor<B, 4>| activation::softmax(s + b, 3);
    let broadcastable =
        bshape[3] == shape[3] && (0..3).all(|i| bshape[i] == shape[i] || bshape[i] == 1);
    if !broadcastable {
        return generic(scores, bias);
    }
    let (fs, fb) = match flex_pair(scores, bias) {
        Ok(pair) => pair,
        Err((s, b)) => {
            return match crate::kernels_autodiff::softmax_with_bias(s, b) {
                Ok(fused) => fused,
                Err((s, b)) => generic(s, b),
            }
        }
    };
    let out = softmax_bias_rows(data(&fs), data(&fb), shape, bshape);
    from_flex(new_flex(out, &shape))
}

/// The rows of `softmax(s + b)` for scores of `shape` and a bias of `bshape` that broadcasts
/// over `shape`'s leading dimensions (checked by the caller), in parallel rows.
pub(crate) fn softmax_bias_rows(
    s: &[f32],
    b: &[f32],
    shape: [usize; 4],
    bshape: [usize; 4],
) -> Vec<f32> {
    let k = shape[3];
    // element strides of the bias rows, 0 along broadcast dimensions
    let st = |i: usize, inner: usize| if bshape[i] == 1 { 0 } else { inner };
    let (sq, sh) = (st(2, k), st(1, bshape[2] * k));
    let sb = st(0, bshape[1] * bshape[2] * k);
    let (nq, nh) = (shape[2], shape[1]);
    let mut out = vec![0.0f32; s.len()];
    let row = |(r, (o, srow)): (usize, (&mut [f32], &[f32]))| {
        let (qi, hi, bi) = (r % nq, (r / nq) % nh, r / (nq * nh));
        let off = bi * sb + hi * sh + qi * sq;
        o.copy_from_slice(srow);
        softmax_row_with_bias(o, &b[off..off + k]);
    };
    if s.len() < PARALLEL_MIN {
        out.chunks_mut(k).zip(s.chunks(k)).enumerate().for_each(row);
    } else {
        out.par_chunks_mut(k)
            .zip(s.par_chunks(k))
            .enumerate()
            .for_each(row);
    }
    out
}

/// `row = softmax(row + bias)`: the maximum subtracted, the vectorized [`exp_in_place`], a
/// division by the sum.
pub(crate) fn softmax_row_with_bias(row: &mut [f32], bias: &[f32]) {
    let mut max = f32::NEG_INFINITY;
    for (s, &bv) in row.iter_mut().zip(bias) {
        *s += bv;
        max = max.max(*s);
    }
    for s in row.iter_mut() {
        *s -= max;
    }
    exp_in_place(row);
    let sum: f32 = row.iter().sum();
    for s in row.iter_mut() {
        *s /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    type F = burn::backend::Flex;
    type N = burn::backend::NdArray<f32>;

    fn pair<const D: usize>(shape: [usize; D], seed: u64) -> (Tensor<F, D>, Tensor<N, D>) {
        let _rng = crate::test_rng_lock();
        F::seed(&Default::default(), seed);
        let f =
            Tensor::<F, D>::random(shape, Distribution::Uniform(-4.0, 4.0), &Default::default());
        let n = Tensor::from_data(f.to_data(), &Default::default());
        (f, n)
    }

    fn close<const D: usize>(fast: Tensor<F, D>, generic: Tensor<N, D>, tol: f32) {
        fast.into_data()
            .assert_approx_eq::<f32>(&generic.into_data(), Tolerance::absolute(tol));
    }

    // sizes above and below PARALLEL_MIN, so both code paths run
    const SHAPES: [[usize; 3]; 2] = [[2, 3, 8], [4, 33, 512]];

    #[test]
    fn fused_gated_gelu_new_equals_burns_composition() {
        for (i, s) in SHAPES.into_iter().enumerate() {
            let (a, a_n) = pair(s, i as u64);
            let (b, b_n) = pair(s, 10 + i as u64);
            let want = activation::gelu_approximate(a_n.clone()) * b_n;
            close(gelu_new_mul(a.clone(), Some(b)), want, 1e-5);
            close(
                gelu_new_mul(a, None),
                activation::gelu_approximate(a_n),
                1e-6,
            );
        }
    }

    #[test]
    fn the_sigmoid_form_of_gelu_new_is_as_close_to_exact_as_the_tanh_form() {
        // torch computes 0.5 x (1 + tanh(u)) in f32; both forms against the f64 value
        let tanh_form = |x: f32| {
            let u = 0.797_884_6f32 * (x + 0.044715 * (x * x * x));
            0.5 * x * (1.0 + u.tanh())
        };
        let (mut worst_sigmoid, mut worst_tanh) = (0f64, 0f64);
        for i in -20_000..=20_000 {
            let x = i as f32 * 5e-4; // [-10, 10]
            let xd = x as f64;
            let u = (2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd * xd * xd);
            let want = 0.5 * xd * (1.0 + u.tanh());
            let rel = |got: f32| (got as f64 - want).abs() / want.abs().max(1e-3);
            worst_sigmoid = worst_sigmoid.max(rel(gelu_new_f32(x)));
            worst_tanh = worst_tanh.max(rel(tanh_form(x)));
        }
        assert!(
            worst_sigmoid < 2e-6 && worst_sigmoid <= worst_tanh * 1.5,
            "largest relative error {worst_sigmoid} (tanh form {worst_tanh})"
        );
    }

    #[test]
    fn fused_exact_gelu_equals_burns() {
        for (i, s) in SHAPES.into_iter().enumerate() {
            let (x, x_n) = pair(s, 20 + i as u64);
            close(gelu(x), activation::gelu(x_n), 1e-6);
        }
    }

    #[test]
    fn fused_rms_norm_equals_the_composition() {
        for (i, s) in SHAPES.into_iter().enumerate() {
            let (x, x_n) = pair(s, 30 + i as u64);
            let (w, w_n) = pair([s[2]], 40 + i as u64);
            close(rms_norm(x, w, 1e-6), rms_norm(x_n, w_n, 1e-6), 1e-5);
        }
    }

    #[test]
    fn other_backends_and_transposed_inputs_take_the_generic_path() {
        let (x, x_n) = pair([3, 4, 16], 50);
        // a non-contiguous flex input is made contiguous first
        let xt = x.swap_dims(0, 1);
        let want = activation::gelu_approximate(x_n.swap_dims(0, 1));
        close(gelu_new_mul(xt, None), want, 1e-6);
    }
    #[test]
    fn parallel_adds_equal_burns_and_leave_shared_inputs_alone() {
        for (i, s) in SHAPES.into_iter().enumerate() {
            let (a, a_n) = pair(s, 80 + i as u64);
            let (b, b_n) = pair(s, 90 + i as u64);
            // `a` shared with `keep`: the sum goes to a new buffer and `keep` is unchanged
            let keep = a.clone();
            close(add(a, b.clone()), a_n.clone() + b_n.clone(), 0.0);
            close(keep.clone(), a_n.clone(), 0.0);
            // `keep` alone now: summed in place
            close(add(keep, b), a_n + b_n, 0.0);

            let (y, y_n) = pair([s[0] * s[1], s[2]], 100 + i as u64);
            let (bias, bias_n) = pair([s[2]], 110 + i as u64);
            let keep = y.clone();
            let got = add_bias(y, bias.clone()).unwrap_or_else(|_| panic!("takes the kernel"));
            close(got, y_n.clone() + bias_n.clone().unsqueeze(), 0.0);
            close(keep.clone(), y_n.clone(), 0.0);
            let got = add_bias(keep, bias).unwrap_or_else(|_| panic!("takes the kernel"));
            close(got, y_n + bias_n.unsqueeze(), 0.0);
        }
    }

    #[test]
    fn fused_softmax_with_a_broadcast_bias_equals_add_then_softmax() {
        for (i, (s, bs)) in [
            ([2, 3, 5, 7], [2, 1, 1, 7]),
            ([2, 3, 5, 7], [1, 3, 5, 7]),
            ([4, 12, 40, 64], [4, 12, 40, 64]),
            ([4, 12, 1, 64], [4, 1, 1, 64]),
        ]
        .into_iter()
        .enumerate()
        {
            let (x, x_n) = pair(s, 60 + i as u64);
            let (b, b_n) = pair(bs, 70 + i as u64);
            let want = activation::softmax(x_n + b_n, 3);
            close(softmax_with_bias(x, b), want, 1e-6);
        }
    }
}
