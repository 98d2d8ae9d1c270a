//! The tensor bookkeeping of `PPOTrainer.batched_forward_pass` (trl 0.11.4) for an
//! encoder-decoder model (`is_encoder_decoder = True`, e.g. T5), given the model's outputs.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Result, RlError};
use crate::trl_core::{logprobs_from_logits, to_vec_f32};

/// What `batched_forward_pass(..., return_logits=True)` returns, each over `n - 1` positions
/// for decoder inputs of length `n`.
#[derive(Debug, Clone)]
pub struct ForwardOutputs<B: Backend> {
    /// `logprobs_from_logits(logits[:, :-1, :], decoder_input_ids[:, 1:])`, `[b, n-1]`.
    pub logprobs: Tensor<B, 2>,
    /// `logits[:, :-1]`, `[b, n-1, v]`.
    pub logits: Tensor<B, 3>,
    /// `values[:, :-1]`, `[b, n-1]`.
    pub values: Tensor<B, 2>,
    /// The response mask, `[b, n-1]` (float 0/1), see [`seq2seq_response_masks`].
    pub masks: Tensor<B, 2>,
}

/// The masks `batched_forward_pass` builds for an encoder-decoder:
///
/// ```text
/// masks = zeros_like(attention_mask); masks[:, :-1] = attention_mask[:, 1:]
/// for each row j: start = 1; end = attention_mask[j].sum() - 1
///                 masks[j, :start] = 0; masks[j, end:] = 0
/// return masks[:, :-1]
/// ```
///
/// For a response `[start_token, t1, ..., tk, eos]` (n real tokens, right-padded) position `i`
/// holds the log-prob of token `i + 1`, and only positions `1 ..= n - 2` are kept: the log-prob
/// of the **first generated token `t1` (position 0) is masked out**, the eos is kept. A response
/// of 2 tokens (`[start, eos]`) gets an all-zero mask row.
///
/// `decoder_attention_mask`: `[b, n]` Int 0/1. Reads it back to the host.
pub fn seq2seq_response_masks<B: Backend>(
    decoder_attention_mask: Tensor<B, 2, Int>,
) -> Tensor<B, 2> {
    let [b, n] = decoder_attention_mask.dims();
    let device = decoder_attention_mask.device();
    let attn = to_vec_f32(decoder_attention_mask.float());
    let w = n.saturating_sub(1);
    let mut out = vec![0.0f32; b * w];
    for j in 0..b {
        let row = &attn[j * n..(j + 1) * n];
        let end = row.iter().sum::<f32>() as i64 - 1;
        for i in 0..w {
            // `masks[j, end:] = 0` with end == -1 (empty attention) only clears the last column,
            // whose `attention_mask[j, i+1]` is 0 anyway.
            let keep = i >= 1 && (i as i64) < end;
            out[j * w + i] = if keep { row[i + 1] } else { 0.0 };
        }
    }
    Tensor::from_data(TensorData::new(out, [b, w]), &device)
}

/// `batched_forward_pass` for an encoder-decoder, given the (value-head) model's outputs on the
/// whole batch: `logits` `[b, n, v]`, `values` `[b, n]`, the padded `decoder_input_ids` `[b, n]`
/// and `decoder_attention_mask` `[b, n]` (both Int).
pub fn seq2seq_forward_outputs<B: Backend>(
    logits: Tensor<B, 3>,
    values: Tensor<B, 2>,
    decoder_input_ids: Tensor<B, 2, Int>,
    decoder_attention_mask: Tensor<B, 2, Int>,
) -> Result<ForwardOutputs<B>> {
    let [b, n, v] = logits.dims();
    if values.dims() != [b, n]
        || decoder_input_ids.dims() != [b, n]
        || decoder_attention_mask.dims() != [b, n]
    {
        return Err(RlError::Shape(format!(
            "logits {:?}, values {:?}, decoder_input_ids {:?}, decoder_attention_mask {:?}",
            logits.dims(),
            values.dims(),
            decoder_input_ids.dims(),
            decoder_attention_mask.dims()
        )));
    }
    if n < 2 {
        return Err(RlError::Shape(format!("decoder length {n} < 2")));
    }
    let logits = logits.slice([0..b, 0..n - 1, 0..v]);
    let labels = decoder_input_ids.slice([0..b, 1..n]);
    let logprobs = logprobs_from_logits(logits.clone(), labels);
    let values = values.slice([0..b, 0..n - 1]);
    let masks = seq2seq_response_masks(decoder_attention_mask);
    Ok(ForwardOutputs {
        logprobs,
        logits,
        values,
        masks,
    })
}
