//! `x · W` for products with few rows — one decoding step of 1 to 16 sequences or beams — on
//! burn-flex, streaming the weight from memory once.
//!
//! Why: a decoding step multiplies a handful of rows by every weight of the decoder (~500 MB at
//! flan-t5-base size); the step is bound by reading the weights. burn-flex's gemm handles one row
//! as a matrix-vector product that streams the weight, but for 2 to 16 rows it packs the weight
//! for each product, which more than triples the step time at 4 rows (beam search with 4 beams).
//! Here each weight row (`[out, in]` storage, see `linear::out_in_layout`) is loaded once and
//! multiplied with all `x` rows, which stay in cache; output columns are split over the cores.
//!
//! The result is each output's dot product over `in`, summed in eight f32 lanes and then across
//! them (gemm sums in another order: the two agree to rounding).

use burn::prelude::*;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::kernels::{new_flex, primitive_as, tensor_of};

/// Products with at most this many rows use this kernel.
pub(crate) const MAX_ROWS: usize = 16;
/// Output columns per parallel task.
const COLS_PER_TASK: usize = 32;

/// `x · weight (+ bias)` for a 2-D `x` of at most [`MAX_ROWS`] rows when both are burn-flex f32
/// tensors and `weight` (`[in, out]`) is stored `[out, in]` row-major; else everything back.
#[allow(clippy::type_complexity)]
pub(crate) fn linear<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Result<Tensor<B, 2>, (Tensor<B, 2>, Tensor<B, 2>, Option<Tensor<B, 1>>)> {
    let [m, k] = x.dims();
    let [_, n] = weight.dims();
    if m == 0 || m > MAX_ROWS {
        return Err((x, weight, bias));
    }
    let w = match primitive_as::<FlexTensor, B, 2>(weight) {
        Ok(w) if is_out_in_f32(&w, k, n) => w,
        Ok(w) => return Err((x, tensor_of(w), bias)),
        Err(w) => return Err((x, w, bias)),
    };
    let x = match primitive_as::<FlexTensor, B, 2>(x) {
        Ok(x) if x.dtype() == burn::tensor::DType::F32 => x.to_contiguous(),
        Ok(x) => return Err((tensor_of(x), tensor_of(w), bias)),
        Err(x) => return Err((x, tensor_of(w), bias)),
    };
    let bias_values: Option<Vec<f32>> =
        bias.map(|b| b.into_data().convert::<f32>().into_vec().expect("f32 bias"));
    let xs = {
        let (s, e) = x.layout().contiguous_offsets().expect("contiguous");
        &x.storage::<f32>()[s..e]
    };
    let ws = {
        let off = w.layout().start_offset();
        &w.storage::<f32>()[off..off + n * k]
    };
    let y = matmul_few_rows(xs, m, k, ws, n, bias_values.as_deref());
    Ok(tensor_of(new_flex(y, &[m, n])))
}

/// An f32 `[in, out]` = `[k, n]` view of `[n, k]` row-major data.
fn is_out_in_f32(w: &FlexTensor, k: usize, n: usize) -> bool {
    let l = w.layout();
    w.dtype() == burn::tensor::DType::F32
        && l.strides() == [1, k as isize]
        && l.shape().num_dims() == 2
        && l.start_offset() + n * k <= w.storage::<f32>().len()
}

/// `y[m, n] = x[m, k] · w[n, k]ᵀ (+ bias)`, `m` ≤ [`MAX_ROWS`].
pub(crate) fn matmul_few_rows(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert!(m <= MAX_ROWS && x.len() == m * k && w.len() == n * k);
    // columns-major result [n, m]: each task writes its own contiguous block
    let mut yt = vec![0.0f32; n * m];
    yt.par_chunks_mut(COLS_PER_TASK * m)
        .enumerate()
        .for_each(|(t, out)| {
            let o0 = t * COLS_PER_TASK;
            let cols = out.len() / m;
            block(x, m, k, &w[o0 * k..(o0 + cols) * k], cols, out);
        });
    let mut y = vec![0.0f32; m * n];
    y.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
        for (o, v) in row.iter_mut().enumerate() {
            *v = yt[o * m + r] + bias.map_or(0.0, |b| b[o]);
        }
    });
    y
}

/// `out[o * m + r] = x[r] · w[o]` for `cols` weight rows.
fn block(x: &[f32], m: usize, k: usize, w: &[f32], cols: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above); all accesses are bounds-checked
        // slices of the lengths asserted by the caller.
        unsafe { avx2::block(x, m, k, w, cols, out) };
        return;
    }
    for o in 0..cols {
        let wr = &w[o * k..(o + 1) * k];
        for r in 0..m {
            out[o * m + r] = dot(&x[r * k..(r + 1) * k], wr);
        }
    }
}

/// A dot product in eight lanes, then across them (the portable path).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, ta) = a.split_at(a.len() / 8 * 8);
    let (cb, tb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(8).zip(cb.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let mut s = lanes.iter().sum::<f32>();
    for (x, y) in ta.iter().zip(tb) {
        s += x * y;
    }
    s
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Sum of the eight lanes.
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// `OC` weight rows from `o` times `RC` x rows from `r`: `OC * RC` accumulators in registers;
    /// each 8-float piece of a weight row is loaded once for the `RC` rows.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // fixed-size register arrays, indexed for clarity
    unsafe fn tile<const OC: usize, const RC: usize>(
        x: &[f32],
        m: usize,
        k: usize,
        w: &[f32],
        o: usize,
        r: usize,
        out: &mut [f32],
    ) {
        let k8 = k / 8 * 8;
        let mut acc = [[_mm256_setzero_ps(); RC]; OC];
        let wp = w.as_ptr();
        let xp = x.as_ptr();
        let mut kk = 0;
        while kk < k8 {
            let mut xv = [_mm256_setzero_ps(); RC];
            for j in 0..RC {
                xv[j] = _mm256_loadu_ps(xp.add((r + j) * k + kk));
            }
            for i in 0..OC {
                let wv = _mm256_loadu_ps(wp.add((o + i) * k + kk));
                for j in 0..RC {
                    acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
                }
            }
            kk += 8;
        }
        for i in 0..OC {
            for j in 0..RC {
                let mut s = hsum(acc[i][j]);
                for t in k8..k {
                    s += w[(o + i) * k + t] * x[(r + j) * k + t];
                }
                out[(o + i) * m + r + j] = s;
            }
        }
    }

    /// [`super::block`] with AVX2 + FMA: tiles of 4 weight rows × 3 x rows (12 accumulators, 3 x
    /// pieces and one weight piece: the 16 vector registers), then the edges.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block(
        x: &[f32],
        m: usize,
        k: usize,
        w: &[f32],
        cols: usize,
        out: &mut [f32],
    ) {
        let mut o = 0;
        while o + 4 <= cols {
            let mut r = 0;
            while r + 3 <= m {
                tile::<4, 3>(x, m, k, w, o, r, out);
                r += 3;
            }
            match m - r {
                2 => tile::<4, 2>(x, m, k, w, o, r, out),
                1 => tile::<4, 1>(x, m, k, w, o, r, out),
                _ => {}
            }
            o += 4;
        }
        while o < cols {
            for r in 0..m {
                tile::<1, 1>(x, m, k, w, o, r, out);
            }
            o += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> Vec<f64> {
        let mut y = vec![0.0f64; m * n];
        for r in 0..m {
            for o in 0..n {
                y[r * n + o] = (0..k)
                    .map(|t| x[r * k + t] as f64 * w[o * k + t] as f64)
                    .sum();
            }
        }
        y
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) % 2001) as f32
                    / 1000.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_f64_product_for_every_tile_edge() {
        // rows: 1 to MAX_ROWS (odd and even); k with and without an 8-float tail; n across
        // several tasks with a partial last tile
        for &(m, k, n) in &[
            (1, 8, 4),
            (2, 13, 7),
            (3, 64, 70),
            (4, 768, 33),
            (7, 100, 129),
            (16, 35, 5),
        ] {
            let x = values(m * k, 1);
            let w = values(n * k, 2);
            let bias = values(n, 3);
            let got = matmul_few_rows(&x, m, k, &w, n, Some(&bias));
            let want = reference(&x, m, k, &w, n);
            for (i, (&g, &r)) in got.iter().zip(&want).enumerate() {
                let r = r + bias[i % n] as f64;
                assert!(
                    (g as f64 - r).abs() < 1e-4 * (1.0 + r.abs()),
                    "m {m} k {k} n {n} [{i}]: {g} vs {r}"
                );
            }
        }
    }

    #[test]
    fn the_portable_dot_agrees() {
        let a = values(45, 4);
        let b = values(45, 5);
        let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        assert!((dot(&a, &b) as f64 - want).abs() < 1e-5);
    }

    /// Through burn: an `[out, in]`-stored weight takes this kernel and gives burn's product;
    /// a weight in burn's own layout, or too many rows, goes back untouched.
    #[test]
    fn linear_on_flex_matches_burns_product_and_declines_other_layouts() {
        type F = burn::backend::Flex;
        let device = Default::default();
        let x = Tensor::<F, 2>::from_data(TensorData::new(values(3 * 20, 6), [3, 20]), &device);
        let w_in_out =
            Tensor::<F, 2>::from_data(TensorData::new(values(20 * 9, 7), [20, 9]), &device);
        let w =
            crate::linear::out_in_layout(burn::module::Param::from_tensor(w_in_out.clone())).val();
        let b = Tensor::<F, 1>::from_data(TensorData::new(values(9, 8), [9]), &device);
        let want = x.clone().matmul(w_in_out.clone()) + b.clone().unsqueeze::<2>();
        let got =
            linear(x.clone(), w, Some(b.clone())).unwrap_or_else(|_| panic!("takes the kernel"));
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::absolute(1e-5));
        assert!(
            linear(x.clone(), w_in_out.clone(), None).is_err(),
            "[in, out] storage"
        );
        let many = Tensor::<F, 2>::zeros([MAX_ROWS + 1, 20], &device);
        assert!(linear(many, w_in_out, None).is_err(), "too many rows");
    }
}
