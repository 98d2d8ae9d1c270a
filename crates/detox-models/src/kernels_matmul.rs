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
//! 16.8-18.9 s -> 15.8-16.1 s (BENCHMARKS.md). Under autodiff (training, the PPO step)
//! `kernels_autodiff::matmul_2d` runs the same product with its own backward.
//!
//! Products with weights in the loaders' `[out, in]` layout run one gemm call per thread on
//! its own block of output columns ([`column_blocks`]): gemm would otherwise pack the whole
//! weight on the calling thread while the others wait.

use burn::prelude::*;
use burn::tensor::DType;
use burn_flex::FlexTensor;
use rayon::prelude::*;

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

    /// The same matrix seen transposed (rows and columns swapped, no data moved).
    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
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

/// `op(x) · op(w)` of two 2-D f32 burn-flex tensors (any strides), `op` transposing where
/// `x_t` / `w_t` say so, into a fresh buffer; `None` for other dtypes or ranks, mismatched or
/// empty dimensions. The products of the training-side linear (`kernels_autodiff::matmul_2d`)
/// and its backward.
pub(crate) fn product_of(
    x: &FlexTensor,
    x_t: bool,
    w: &FlexTensor,
    w_t: bool,
) -> Option<FlexTensor> {
    let op = |t: &FlexTensor, tr: bool| {
        Matrix::of(t.clone())
            .ok()
            .map(|m| if tr { m.t() } else { m })
    };
    let (x, w) = (op(x, x_t)?, op(w, w_t)?);
    (x.cols == w.rows && x.rows * x.cols * w.cols > 0).then(|| product(&x, &w))
}

/// `x · w` as burn-flex's `matmul_2d_strided` computes it, into a fresh `[m, n]` buffer (the
/// caller checks `x.cols == w.rows` and that no dimension is 0).
fn product(x: &Matrix, w: &Matrix) -> FlexTensor {
    debug_assert!(x.cols == w.rows && x.rows * x.cols * w.cols > 0);
    let (m, k, n) = (x.rows, x.cols, w.cols);
    let parallel = m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD;
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let blocks = column_blocks(n, w.col_stride, parallel);
    let (dst, xp, wp) = (
        Shared(out.as_mut_ptr()),
        Shared(x.ptr() as *mut f32),
        Shared(w.ptr() as *mut f32),
    );
    let (x_rs, x_cs, w_rs, w_cs) = (x.row_stride, x.col_stride, w.row_stride, w.col_stride);
    let run = |(c0, c1): (usize, usize), parallelism| {
        // SAFETY: the operands address [m, k] and [k, c1 - c0] matrices inside their tensors'
        // storage (offset and strides from their layouts, the weight's columns from c0); the
        // destination block is columns c0..c1 of the vector's capacity of m * n floats,
        // row-major, disjoint from every other block's.
        unsafe {
            gemm_into(
                (m, c1 - c0, k),
                dst.at(c0),
                n as isize,
                (xp.at(0), x_rs, x_cs),
                (wp.at(0).wrapping_offset(c0 as isize * w_cs), w_rs, w_cs),
                parallelism,
            );
        }
    };
    match blocks {
        None if parallel => run((0, n), gemm::Parallelism::Rayon(0)),
        None => run((0, n), gemm::Parallelism::None),
        Some(blocks) => blocks
            .into_par_iter()
            .for_each(|block| run(block, gemm::Parallelism::None)),
    }
    // SAFETY: with k > 0, the calls above wrote every one of the m * n floats.
    unsafe { out.set_len(m * n) };
    new_flex(out, &[m, n])
}

/// The column blocks `[c0, c1)` that a parallel product of a weight whose columns are not
/// contiguous (`col_stride != 1`: the `[out, in]` layout the loaders keep, see
/// `linear::out_in_layout`) runs as one single-threaded gemm call each, one block per thread;
/// `None`: one gemm call over all columns.
///
/// Why: gemm computes `x · w` as the transposed problem `wᵀ · xᵀ`, and a left operand whose
/// rows are not contiguous and that has at most two of its row blocks (`n` up to 512-1024
/// here) is packed whole, on the calling thread, before the threads start: the 768-column
/// projections of a T5-base PPO step spent ~2.5 s of its ~35 s packing weights on one core
/// while the other waited (`perf`, BENCHMARKS.md). One call per thread packs its own block.
/// Every output element is the same dot product in the same order either way (gemm's depth
/// blocking depends on `k` alone).
fn column_blocks(n: usize, col_stride: isize, parallel: bool) -> Option<Vec<(usize, usize)>> {
    let threads = rayon::current_num_threads();
    if !parallel || col_stride == 1 || threads < 2 || n < 2 * BLOCK_COLUMNS {
        return None;
    }
    let width = n.div_ceil(threads).next_multiple_of(BLOCK_COLUMNS);
    Some(
        (0..n)
            .step_by(width)
            .map(|c0| (c0, (c0 + width).min(n)))
            .collect(),
    )
}

/// Column blocks are multiples of this (a multiple of every gemm kernel's row block).
const BLOCK_COLUMNS: usize = 64;

/// A pointer into a buffer that parallel tasks share, each writing its own disjoint block (the
/// destinations of [`gemm_into`] calls run from rayon tasks).
#[derive(Clone, Copy)]
pub(crate) struct Shared(pub(crate) *mut f32);
// SAFETY: the tasks that hold it write disjoint blocks of a buffer that outlives them (each
// user says which).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The element `offset` places in (a method, so closures capture the whole `Shared`).
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
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
        for (m, k, n) in [(3, 5, 7), (300, 256, 200), (257, 200, 333), (1, 768, 64)] {
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
