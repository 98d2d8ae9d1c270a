//! A tokenized batch as the `[batch, len]` id and attention-mask tensors a model takes (what
//! `summarize`, `score` and `evaluate` feed their models).

use burn::prelude::*;
use detox_hub::EncodedBatch;

/// `(input_ids, attention_mask)` of `batch`, each `[batch.batch, batch.len]`, on `device`.
pub fn batch_tensors<B: Backend>(
    batch: &EncodedBatch,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let shape = [batch.batch, batch.len];
    let tensor = |data: &[i64]| Tensor::from_data(TensorData::new(data.to_vec(), shape), device);
    (tensor(&batch.ids), tensor(&batch.mask))
}
