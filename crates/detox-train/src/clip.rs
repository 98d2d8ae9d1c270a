//! `torch.nn.utils.clip_grad_norm_(params, max_norm)` (norm type 2) over the gradients of a
//! module's parameters.
//!
//! torch: `total = ||(||g_1||, …, ||g_n||)||₂ = sqrt(Σ_i Σ g_i²)`,
//! `coef = max_norm / (total + 1e-6)`, and every gradient is multiplied by `min(coef, 1)`
//! (so only when `coef < 1` does anything change). The pre-clip `total` is returned. The
//! arithmetic (`total`, `coef`) is `detox_rl::grad`'s; this file walks a module's gradients.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use detox_rl::{global_grad_norm, global_norm_scale};

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads
                .register::<B::InnerBackend, D>(param.id, g.mul_scalar(self.factor));
        }
    }
}

struct SquaredSums<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sums: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredSums<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.sums.push(g.square().sum());
        }
    }
}

/// `sum(g ** 2)` of every gradient of `module`'s parameters in `grads`, one per tensor, read back
/// in one transfer (the input of `detox_rl::global_norm_scale`).
pub fn squared_sums<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> Vec<f32> {
    let mut v = SquaredSums::<B> {
        grads,
        sums: Vec::new(),
    };
    module.visit(&mut v);
    if v.sums.is_empty() {
        return Vec::new();
    }
    Tensor::cat(v.sums, 0)
        .into_data()
        .convert::<f32>()
        .into_vec()
        .expect("float data")
}

/// Multiplies every gradient of `module`'s parameters in `grads` by `factor`.
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    factor: f32,
) {
    let mut v = Scale { grads, factor };
    module.visit(&mut v);
}

/// The L2 norm of all gradients of `module`'s parameters in `grads` (0 when there are none):
/// [`global_grad_norm`] of their [`squared_sums`].
pub fn grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    global_grad_norm(&squared_sums(module, grads)) as f64
}

/// `clip_grad_norm_(module.parameters(), max_norm)`: scales the gradients in place by
/// [`global_norm_scale`] when their global norm exceeds `max_norm` and returns the norm before
/// clipping. A non-finite norm is returned as is and, as in torch (`error_if_nonfinite=False`),
/// turns the gradients non-finite; the caller decides what to do with such a step. The one
/// clipping function of fine-tuning and PPO.
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let sq = squared_sums(module, grads);
    let scale = global_norm_scale(&sq, max_norm as f32);
    if scale != 1.0 {
        scale_grads(module, grads, scale);
    }
    global_grad_norm(&sq) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    type Ad = burn::backend::Autodiff<burn::backend::NdArray<f32>>;

    fn setup() -> (Linear<Ad>, GradientsParams, Vec<f32>, Vec<f32>) {
        let device = Default::default();
        let lin: Linear<Ad> = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<Ad, 2>::from_data(
            TensorData::new(vec![1.0f32, -2.0, 3.0, 0.5, 4.0, -1.0], [2, 3]),
            &device,
        );
        let loss = lin.forward(x).powi_scalar(2).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &lin);
        let gw: Vec<f32> = grads
            .get::<burn::backend::NdArray<f32>, 2>(lin.weight.id)
            .unwrap()
            .into_data()
            .into_vec()
            .unwrap();
        let gb: Vec<f32> = grads
            .get::<burn::backend::NdArray<f32>, 1>(lin.bias.as_ref().unwrap().id)
            .unwrap()
            .into_data()
            .into_vec()
            .unwrap();
        (lin, grads, gw, gb)
    }

    #[test]
    fn norm_covers_every_gradient_and_clipping_scales_to_max_norm() {
        let (lin, mut grads, gw, gb) = setup();
        let want = gw
            .iter()
            .chain(&gb)
            .map(|g| (*g as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let total = clip_grad_norm(&lin, &mut grads, 0.5);
        assert!((total - want).abs() / want < 1e-6, "{total} vs {want}");
        let after = grad_norm(&lin, &grads);
        let coef = 0.5 / (want + 1e-6);
        assert!((after - want * coef).abs() < 1e-5, "{after}");
    }

    #[test]
    fn no_clipping_below_max_norm() {
        let (lin, mut grads, gw, _) = setup();
        let total = clip_grad_norm(&lin, &mut grads, 1e9);
        assert!(total > 0.0);
        let got: Vec<f32> = grads
            .get::<burn::backend::NdArray<f32>, 2>(lin.weight.id)
            .unwrap()
            .into_data()
            .into_vec()
            .unwrap();
        assert_eq!(got, gw);
    }
}
