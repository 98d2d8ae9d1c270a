//! trl's `ValueHead` (of `AutoModelForSeq2SeqLMWithValueHead`): dropout, then a linear
//! `d_model → 1` on the decoder's last hidden state (after the final layer norm, before the LM
//! head), one value per decoder position. Parameters carry trl's names under `v_head.`:
//! `v_head.summary.weight`, `v_head.summary.bias`.

use burn::nn::{Linear, LinearConfig};

use crate::dropout::Dropout;
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct ValueHead<B: Backend> {
    pub summary: Linear<B>,
    pub dropout: Dropout,
}

impl<B: Backend> ValueHead<B> {
    /// `summary_dropout_prob` is trl's kwarg (default 0.1).
    pub fn new(d_model: usize, summary_dropout_prob: f64, device: &B::Device) -> Self {
        Self {
            summary: LinearConfig::new(d_model, 1).init(device),
            dropout: Dropout::new(summary_dropout_prob),
        }
    }

    /// Values `[batch, len]` for decoder hidden states `[batch, len, d_model]`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [b, l, _] = hidden.dims();
        crate::linear::linear_flat(
            self.dropout.forward(hidden),
            self.summary.weight.val(),
            self.summary.bias.as_ref().map(|b| b.val()),
        )
        .reshape([b, l])
    }
}
