//! FLAN-T5 and RoBERTa as burn modules, generic over the backend.
// Module fields carry transformers' names (`SelfAttention`, `LayerNorm`, ...) so weight paths read
// the same on both sides.
#![allow(non_snake_case)]
//!
//! Module field names mirror transformers' parameter names so that a safetensors checkpoint maps
//! onto the struct tree almost one to one (see `detox-hub` for the few renames).

pub mod config;
pub mod dropout;
pub mod init;
pub mod kernels;
pub(crate) mod kernels_attention;
pub(crate) mod kernels_attention_full;
pub(crate) mod kernels_attention_train;
pub mod kernels_autodiff;
pub(crate) mod kernels_few_rows;
pub mod kernels_logits;
pub mod kernels_math;
pub mod kernels_matmul;
pub mod kv_cache;
pub mod linear;
pub mod lora;
pub mod mask;
pub mod roberta;
pub mod t5;
pub mod value_head;

pub use config::{RobertaConfig, T5Config};
pub use lora::{LoraConfig, LoraLinear, LoraTarget, TargetModules};
pub use roberta::RobertaForSequenceClassification;
pub use t5::{EncoderOutput, T5DecoderCache, T5ForConditionalGeneration};
pub use value_head::ValueHead;

/// burn-flex keeps one random generator per process: tests that seed it and then draw from it
/// (or draw from it at all) hold this lock, so that another test's draws cannot land between a
/// seed and the draws that depend on it.
#[cfg(test)]
pub(crate) fn test_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// `n` draws of N(0, std^2) from burn-flex's generator seeded with `seed` (under
/// [`test_rng_lock`]): the inputs the kernel tests compare paths on.
#[cfg(test)]
pub(crate) fn test_normal(n: usize, std: f64, seed: u64) -> Vec<f32> {
    use burn::prelude::*;
    use burn::tensor::Distribution;
    type F = burn::backend::Flex;
    let _rng = test_rng_lock();
    F::seed(&Default::default(), seed);
    Tensor::<F, 1>::random([n], Distribution::Normal(0.0, std), &Default::default())
        .into_data()
        .to_vec::<f32>()
        .expect("f32 draws")
}
