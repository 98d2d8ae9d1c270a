//! Dropout as torch's `nn.Dropout` and burn's `Dropout`: during training (an autodiff backend)
//! each element is zeroed with probability `prob` and the rest scaled by `1 / (1 - prob)`; in
//! inference it is the identity.
//!
//! Why not burn's module: on the CPU backend its mask costs more than the matmuls around it in
//! places (burn-flex draws every element through a scalar distribution sampler on one thread, then
//! burn multiplies twice, by the mask and by the scale). Here, on burn-flex, the scaled mask is
//! drawn in one parallel pass from a counter-based generator seeded from the backend's RNG (so
//! `B::seed` still fixes the masks, as resume needs), and multiplied once. Other backends keep
//! burn's masks, drawn on the device.

use std::any::TypeId;

use burn::prelude::*;
use burn::tensor::Distribution;
use rayon::prelude::*;

/// Elements per parallel task when drawing a mask.
const CHUNK: usize = 1 << 15;

/// Zeroes elements with probability `prob` during training; identity otherwise.
#[derive(Module, Clone, Debug)]
pub struct Dropout {
    /// The probability of zeroing an element during training.
    pub prob: f64,
}

impl Dropout {
    /// Dropout with probability `prob`, in `[0, 1]` (as burn's `DropoutConfig` requires).
    pub fn new(prob: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&prob),
            "dropout probability must be in [0, 1], got {prob}"
        );
        Self { prob }
    }

    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let device = x.device();
        if !B::ad_enabled(&device) || self.prob == 0.0 {
            return x;
        }
        let keep = 1.0 - self.prob;
        if keep == 0.0 {
            return x.zeros_like();
        }
        let shape = x.shape();
        match self.flex_mask::<B>(shape.num_elements(), &device) {
            Some(mask) => x * Tensor::<B, D>::from_data(TensorData::new(mask, shape), &device),
            None => {
                let mask = x.random_like(Distribution::Bernoulli(keep));
                x * mask * (1.0 / keep)
            }
        }
    }

    /// The scaled mask that [`Self::forward`] would multiply a burn-flex tensor of `n` elements
    /// by (drawn the same way, from the same place in the backend's RNG), for kernels that apply
    /// dropout themselves; `None` where `forward` is the identity or not on burn-flex.
    pub(crate) fn flex_mask<B: Backend>(&self, n: usize, device: &B::Device) -> Option<Vec<f32>> {
        if !B::ad_enabled(device) || self.prob == 0.0 || self.prob == 1.0 || !on_burn_flex::<B>() {
            return None;
        }
        Some(scaled_mask(n, 1.0 - self.prob, backend_seed::<B>(device)))
    }
}

/// Whether `B` (or the backend under its autodiff) is burn-flex, whose tensors live in host
/// memory: a mask built there costs no transfer.
fn on_burn_flex<B: Backend>() -> bool {
    TypeId::of::<B::Device>() == TypeId::of::<burn_flex::FlexDevice>()
}

/// 64 bits from the backend's RNG, so that `B::seed` fixes every mask drawn after it.
fn backend_seed<B: Backend>(device: &B::Device) -> u64 {
    let draw = Tensor::<B, 1>::random([2], Distribution::Uniform(0.0, 1.0), device);
    let v = draw
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default();
    v.iter()
        .fold(0u64, |acc, x| (acc << 32) | u64::from(x.to_bits()))
}

/// `n` values, each `1 / keep` with probability `keep` and 0 otherwise; element `i` depends only
/// on `seed` and `i` (so the mask is the same however the work is split).
pub fn scaled_mask(n: usize, keep: f64, seed: u64) -> Vec<f32> {
    let scale = (1.0 / keep) as f32;
    // keep element i when the top 32 bits of its hash fall below this
    let threshold = (keep * 4_294_967_296.0).min(u32::MAX as f64) as u64;
    let mut mask = vec![0f32; n];
    mask.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let base = (c * CHUNK) as u64;
            for (j, m) in chunk.iter_mut().enumerate() {
                let u = splitmix64(seed ^ (base + j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                *m = if (u >> 32) < threshold { scale } else { 0.0 };
            }
        });
    mask
}

/// SplitMix64's output function: a well-mixed 64-bit hash of `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex, NdArray};

    #[test]
    fn masks_keep_the_right_share_at_the_right_scale() {
        for keep in [0.9, 0.95, 0.5] {
            let n = 1 << 20;
            let m = scaled_mask(n, keep, 7);
            let kept = m.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
            assert!((kept - keep).abs() < 3e-3, "keep {keep}: {kept}");
            let scale = (1.0 / keep) as f32;
            assert!(m.iter().all(|&v| v == 0.0 || v == scale));
            // the mean is preserved, as torch's dropout does in expectation
            let mean = m.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            assert!((mean - 1.0).abs() < 5e-3, "keep {keep}: mean {mean}");
        }
    }

    #[test]
    fn masks_depend_on_the_seed_only() {
        assert_eq!(scaled_mask(100_000, 0.9, 3), scaled_mask(100_000, 0.9, 3));
        assert_ne!(scaled_mask(100_000, 0.9, 3), scaled_mask(100_000, 0.9, 4));
        // neighbours are not correlated: runs of zeros are as long as chance makes them
        let m = scaled_mask(1 << 20, 0.5, 11);
        let pairs = m
            .windows(2)
            .filter(|w| (w[0] == 0.0) == (w[1] == 0.0))
            .count();
        let share = pairs as f64 / (m.len() - 1) as f64;
        assert!((share - 0.5).abs() < 3e-3, "{share}");
    }

    fn drop_twice<B: Backend>(device: &B::Device) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let d = Dropout::new(0.1);
        let x = Tensor::<B, 2>::ones([64, 512], device);
        let _rng = crate::test_rng_lock();
        B::seed(device, 5);
        let a = d.forward(x.clone()).into_data().to_vec::<f32>().unwrap();
        let b = d.forward(x.clone()).into_data().to_vec::<f32>().unwrap();
        B::seed(device, 5);
        let c = d.forward(x).into_data().to_vec::<f32>().unwrap();
        (a, b, c)
    }

    #[test]
    fn training_masks_follow_the_backend_seed_on_both_paths() {
        let (a, b, c) = drop_twice::<Autodiff<Flex>>(&Default::default());
        assert_eq!(a, c, "reseeding repeats the mask");
        assert_ne!(a, b, "each call draws a new mask");
        let (a, b, c) = drop_twice::<Autodiff<NdArray>>(&Default::default());
        assert_eq!(a, c);
        assert_ne!(a, b);
        for v in a {
            assert!(v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6, "{v}");
        }
    }

    #[test]
    fn inference_is_the_identity() {
        let x = Tensor::<Flex, 2>::ones([4, 8], &Default::default());
        let y = Dropout::new(0.5).forward(x.clone());
        assert_eq!(y.into_data(), x.into_data());
    }

    #[test]
    fn gradients_flow_through_the_kept_elements() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        let x = Tensor::<A, 1>::ones([1000], &device).require_grad();
        let y = Dropout::new(0.2).forward(x.clone());
        let out = y.clone().into_data().to_vec::<f32>().unwrap();
        let g = y.sum().backward();
        let grad = x.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap();
        assert_eq!(out, grad, "d(x * mask)/dx is the mask");
    }
}
