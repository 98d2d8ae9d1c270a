//! `x · w` of two 2-D burn-flex tensors, written straight into the output's own storage (the
//! projections of every inference pass on `--device cpu`: `linear_flat` flattens to 2-D).
//!
//! Why: burn-flex's matmul allocates its output with `FlexTensor::empty`, which zero-fills a byte
//! vector and hands it to cubecl's `Bytes::from_bytes_vec`; that reports the vector's 1-byte
//! alignment and so always moves the data into a second, 16-byte-aligned allocation. Every
//! product then pays a zeroing pass, a copy and a second buffer (`perf` on a PPO step shows the
//! copy under `try_enforce_runtime_align` and the page clearing it causes). Here the same gemm
//! call as burn-flex's 2-D product (same strides, same rule for when to split it over threads,
//! so the same bits) writes into an `f32` vector that becomes the tensor's storage as it is.
//! Measured: T5 encoder 16 x 200 3.65-3.82 s -> 3.35-3.44 s, the PPO rollout forward
//! 16.8-18.9 s -> 15.8-16.1 s (BENCHMARKS.md). The training (autodiff) products were tried the
//! same way, with their own backward: no measurable change in SFT or the PPO optimize phase, so
//! they stay burn's.

use burn::prelude::*;
use burn::tensor::DType;
use burn_flex::FlexTensor;

use crate::kernels::{new_flex, primitive_as, tensor_of};

/// burn-flex's threshold (`m * n * k`) for running a product on all threads.
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;

/// A strided f32 matrix inside a burn-flex tensor's storage.
struct Matrix {
    t: FlexTensor,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl Matrix {
    /// `t` as a matrix if it is a 2-D f32 tensor, else `t` back.
    fn of(t: FlexTensor) -> Result<Self, FlexTensor> {
        if t.dtype() != DType::F32 || t.layout().shape().num_dims() != 2 {
            return Err(t);
        }
        let (shape, strides) = (t.layout().shape(), t.layout().strides());
        let (rows, cols, row_stride, col_stride) = (shape[0], shape[1], strides[0], strides[1]);
        Ok(Self {
            t,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// The address of element (0, 0).
    fn ptr(&self) -> *const f32 {
        let storage = self.t.storage::<f32>();
        // SAFETY: a layout's start offset lies inside its storage
        unsafe { storage.as_ptr().add(self.t.layout().start_offset()) }
    }
}

/// `x · w` for `x: [m, k]` and `w: [k, n]` when both are burn-flex f32 tensors (any strides,
/// no autodiff) and no dimension is 0; else both back.
#[allow(clippy::type_complexity)]
pub fn matmul_2d<B: Backend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
) -> Result<Tensor<B, 2>, (Tensor<B, 2>, Tensor<B, 2>)> {
    let back = |r: Result<FlexTensor, Tensor<B, 2>>| r.map_or_else(|t| t, tensor_of);
    let (x, w) = match (
        primitive_as::<FlexTensor, B, 2>(x),
        primitive_as::<FlexTensor, B, 2>(w),
    ) {
        (Ok(x), Ok(w)) => (x, w),
        (x, w) => return Err((back(x), back(w))),
    };
    let (x, w) = match (Matrix::of(x), Matrix::of(w)) {
        (Ok(x), Ok(w)) if x.cols == w.rows && x.rows * x.cols * w.cols > 0 => (x, w),
        (x, w) => {
            let t = |r: Result<Matrix, FlexTensor>| tensor_of(r.map_or_else(|t| t, |m| m.t));
            return Err((t(x), t(w)));
        }
    };
    Ok(tensor_of(product(&x, &w)))
}

/// `x · w` as burn-flex's `matmul_2d_strided` computes it, into a fresh `[m, n]` buffer (the
/// caller checks `x.cols == w.rows` and that no dimension is 0).
fn product(x: &Matrix, w: &Matrix) -> FlexTensor {
    debug_assert!(x.cols == w.rows && x.rows * x.cols * w.cols > 0);
    let (m, k, n) = (x.rows, x.cols, w.cols);
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    // SAFETY: the operands address [m, k] and [k, n] matrices inside their tensors' storage
    // (offset and strides from their layouts); the destination is the vector's capacity of
    // m * n floats, row-major, all of which `gemm_into` writes (k > 0), so the length can then
    // be set to m * n.
    unsafe {
        gemm_into(
            (m, n, k),
            out.as_mut_ptr(),
            n as isize,
            (x.ptr(), x.row_stride, x.col_stride),
            (w.ptr(), w.row_stride, w.col_stride),
            parallelism,
        );
        out.set_len(m * n);
    }
    new_flex(out, &[m, n])
}

/// A strided f32 matrix operand of [`gemm_into`]: its element (0, 0), row stride and column
/// stride.
pub(crate) type Operand = (*const f32, isize, isize);

/// `dst = lhs · rhs` through gemm for `(m, n, k)` = `([m, k] · [k, n])`, into a destination with
/// unit column stride and rows `dst_row_stride` apart. Nothing is read from `dst`; with `k > 0`
/// every element of it is written. The one gemm call behind the products here and in
/// `kernels_attention_full` (burn-flex's 2-D product makes the same call).
///
/// # Safety
/// `lhs` and `rhs` must address whole `[m, k]` and `[k, n]` matrices with their strides, and
/// `dst` a writable `[m, n]` block that no other thread writes meanwhile.
pub(crate) unsafe fn gemm_into(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_row_stride: isize,
    (lhs, lhs_rs, lhs_cs): Operand,
    (rhs, rhs_rs, rhs_cs): Operand,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: forwarded to the caller (see above)
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride,
            false,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    type F = burn::backend::Flex;

    fn rand(shape: [usize; 2], seed: u64) -> Tensor<F, 2> {
        let _rng = crate::test_rng_lock();
        F::seed(&Default::default(), seed);
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    #[test]
    fn equals_burns_matmul_bit_for_bit_on_contiguous_and_transposed_operands() {
        // below and above the threading threshold; `w` contiguous and as a transposed view
        for (m, k, n) in [(3, 5, 7), (300, 256, 200), (1, 768, 64)] {
            let x = rand([m, k], 1);
            let w = rand([k, n], 2);
            let wt =
                Tensor::<F, 2>::from_data(w.clone().transpose().into_data(), &Default::default())
                    .transpose();
            for w in [w.clone(), wt] {
                let want = x.clone().matmul(w.clone()).into_data();
                let got = matmul_2d(x.clone(), w).expect("burn-flex f32 operands");
                assert_eq!(got.dims(), [m, n]);
                assert_eq!(got.into_data(), want, "{m}x{k}x{n}");
            }
        }
    }

    #[test]
    fn a_sliced_operand_is_read_through_its_offset() {
        let x = rand([6, 9], 3).slice([2..5, 1..8]);
        let w = rand([7, 4], 4);
        let want = x.clone().matmul(w.clone()).into_data();
        assert_eq!(matmul_2d(x, w).unwrap().into_data(), want);
    }

    #[test]
    fn other_backends_and_empty_products_are_declined_unchanged() {
        type N = burn::backend::NdArray<f32>;
        let dev = Default::default();
        let x = Tensor::<N, 2>::ones([2, 3], &dev);
        let w = Tensor::<N, 2>::ones([3, 4], &dev);
        let (x, w) = matmul_2d(x, w).expect_err("ndarray is declined");
        assert_eq!((x.dims(), w.dims()), ([2, 3], [3, 4]));
        let x = Tensor::<F, 2>::ones([2, 0], &Default::default());
        let w = Tensor::<F, 2>::ones([0, 4], &Default::default());
        assert!(matmul_2d(x, w).is_err());
    }
}
