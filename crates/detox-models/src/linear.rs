//! `x W + b` as one 2-D matrix product over all leading dimensions of `x`.
//!
//! burn's `linear` on a `[batch, len, in]` input is a batched matmul against a broadcast `[1, in,
//! out]` weight. burn-flex runs that as `batch` separate GEMMs (one per row block, each packing the
//! whole weight again) and, when each block is a single row — every decoding step at batch > 1 —
//! as `batch` matrix-vector products that each stream the full weight from memory. Flattening to
//! `[batch * len, in]` turns it into one GEMM that reads the weight once and splits its rows over
//! the cores; the backward pass becomes one `x^T · grad` GEMM instead of a batch of them and a sum.
//! The result is the same product (every output element is the same dot product over `in`).
//! Products of at most 16 rows on burn-flex (decoding steps) take `kernels_few_rows`.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::module::linear;

/// `x · weight (+ bias)` over the last dimension of `x` (`weight` is `[in, out]`, burn's layout).
pub fn linear_flat<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    if D < 2 {
        return linear(x, weight, bias);
    }
    let dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    let y = match crate::kernels_few_rows::linear(x.reshape([rows, dims[D - 1]]), weight, bias) {
        Ok(y) => y,
        // on burn-flex without autodiff: the product straight into its output buffer
        // (`kernels_matmul`), and the bias added in parallel, in place (burn adds it as a
        // separate broadcast op on one core)
        Err((x, weight, bias)) if !B::ad_enabled(&x.device()) => {
            let y = match crate::kernels_matmul::matmul_2d(x, weight) {
                Ok(y) => y,
                Err((x, weight)) => linear(x, weight, None),
            };
            match bias {
                None => y,
                Some(bias) => match crate::kernels::add_bias(y, bias) {
                    Ok(y) => y,
                    // what burn's `linear` computes: the product, then the broadcast bias
                    Err((y, bias)) => y + bias.unsqueeze(),
                },
            }
        }
        // on burn-flex under autodiff: the same product with its own backward
        Err((x, weight, bias)) => match crate::kernels_autodiff::matmul_2d(x, weight) {
            Ok(y) => match bias {
                None => y,
                Some(bias) => y + bias.unsqueeze(),
            },
            Err((x, weight)) => linear(x, weight, bias),
        },
    };
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

/// The same `[in, out]` weight, stored as PyTorch stores it: `[out, in]` row-major data seen
/// through a transposed view (no values change; the parameter keeps its id and trainability).
///
/// Why: with `[in, out]` row-major data, every output column of a product with few rows — one
/// decoding step, 1 to 16 rows — is read as `in` scattered floats, one per cache line (gemm does
/// not pack the weight for so few rows). In `[out, in]` order each column is contiguous: the
/// weight streams from memory once, as in `torch.nn.Linear`. Large products pack the weight
/// either way. An optimizer step writes a new tensor in the backend's default layout.
pub fn out_in_layout<B: Backend>(weight: Param<Tensor<B, 2>>) -> Param<Tensor<B, 2>> {
    let w = weight.val();
    let device = w.device();
    let out_in = Tensor::<B, 2>::from_data(w.transpose().into_data(), &device);
    Param::initialized(weight.id, out_in.transpose()).set_require_grad(weight.is_require_grad())
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    #[test]
    fn flat_linear_equals_the_batched_one() {
        let _rng = crate::test_rng_lock();
        let device = Default::default();
        let x = Tensor::<B, 3>::random([3, 5, 7], burn::tensor::Distribution::Default, &device);
        let w = Tensor::<B, 2>::random([7, 4], burn::tensor::Distribution::Default, &device);
        let b = Tensor::<B, 1>::random([4], burn::tensor::Distribution::Default, &device);
        let want = linear(x.clone(), w.clone(), Some(b.clone()));
        let got = linear_flat(x, w, Some(b));
        assert_eq!(got.dims(), [3, 5, 4]);
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::absolute(1e-6));
    }

    #[test]
    fn out_in_layout_keeps_values_and_products() {
        let _rng = crate::test_rng_lock();
        let device = Default::default();
        let w = Tensor::<B, 2>::random([7, 4], burn::tensor::Distribution::Default, &device);
        let x = Tensor::<B, 2>::random([3, 7], burn::tensor::Distribution::Default, &device);
        let p = out_in_layout(Param::from_tensor(w.clone()));
        assert_eq!(p.val().dims(), [7, 4]);
        assert_eq!(p.val().into_data(), w.clone().into_data());
        linear_flat(x.clone(), p.val(), None)
            .into_data()
            .assert_approx_eq::<f32>(
                &x.matmul(w).into_data(),
                burn::tensor::Tolerance::absolute(1e-6),
            );
    }
}
