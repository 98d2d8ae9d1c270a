//! The seq2seq language-modelling loss of `T5ForConditionalGeneration(labels=...)` and T5's
//! `_shift_right`.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Label value that the loss ignores (torch's `CrossEntropyLoss(ignore_index=-100)`).
pub const IGNORE_INDEX: i64 = -100;

/// Per-token negative log-likelihood `[batch, tgt_len]`: `-log softmax(logits[b, t])[labels[b, t]]`,
/// 0 where `labels == -100`.
pub fn token_nll<B: Backend>(logits: Tensor<B, 3>, labels: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let ignored = labels.clone().equal_elem(IGNORE_INDEX);
    let safe = labels.mask_fill(ignored.clone(), 0);
    let picked = log_softmax(logits, 2)
        .gather(2, safe.unsqueeze_dim::<3>(2))
        .squeeze_dim::<2>(2);
    picked.neg().mask_fill(ignored, 0.0)
}

/// `CrossEntropyLoss(ignore_index=-100)` over `logits [batch, tgt_len, vocab]` and
/// `labels [batch, tgt_len]`: the mean NLL over all non-ignored tokens of the batch (a `[1]`
/// tensor). With no label token at all torch returns NaN; this returns 0 instead.
pub fn seq2seq_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
) -> Tensor<B, 1> {
    let count = labels
        .clone()
        .not_equal_elem(IGNORE_INDEX)
        .float()
        .sum()
        .clamp_min(1.0);
    token_nll(logits, labels).sum() / count
}

/// T5's `_shift_right`: `decoder_start` prepended, the last label dropped, `-100` replaced by `pad`.
pub fn shift_right<B: Backend>(
    labels: Tensor<B, 2, Int>,
    decoder_start: u32,
    pad: u32,
) -> Tensor<B, 2, Int> {
    let [b, t] = labels.dims();
    let device = labels.device();
    let start = Tensor::<B, 2, Int>::full([b, 1], decoder_start as i64, &device);
    let shifted = if t > 1 {
        Tensor::cat(vec![start, labels.slice([0..b, 0..t - 1])], 1)
    } else {
        start
    };
    let ignored = shifted.clone().equal_elem(IGNORE_INDEX);
    shifted.mask_fill(ignored, pad as i64)
}

/// [`shift_right`] on host rows (one row of labels).
pub fn shift_right_row(labels: &[i64], decoder_start: u32, pad: u32) -> Vec<i64> {
    std::iter::once(decoder_start as i64)
        .chain(labels.iter().take(labels.len().saturating_sub(1)).copied())
        .map(|v| if v == IGNORE_INDEX { pad as i64 } else { v })
        .take(labels.len())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Cpu = burn::backend::NdArray<f32>;

    #[test]
    fn cross_entropy_is_the_mean_over_kept_tokens() {
        let device = Default::default();
        // Two positions kept, one ignored; uniform logits over 4 classes → ln 4 each.
        let logits = Tensor::<Cpu, 3>::zeros([1, 3, 4], &device);
        let labels =
            Tensor::<Cpu, 2, Int>::from_data(TensorData::new(vec![1i64, 3, -100], [1, 3]), &device);
        let loss: f32 = seq2seq_cross_entropy(logits, labels).into_scalar();
        assert!((loss - 4f32.ln()).abs() < 1e-6, "{loss}");
    }

    #[test]
    fn cross_entropy_picks_the_label_logit() {
        let device = Default::default();
        let logits = Tensor::<Cpu, 3>::from_data(
            TensorData::new(vec![0.0f32, 2.0, 0.0, 1.0], [1, 2, 2]),
            &device,
        );
        let labels =
            Tensor::<Cpu, 2, Int>::from_data(TensorData::new(vec![1i64, 0], [1, 2]), &device);
        let nll: Vec<f32> = token_nll(logits, labels).into_data().into_vec().unwrap();
        let want0 = -(2f32 - (1f32 + 2f32.exp()).ln());
        let want1 = -(0f32 - (1f32 + 1f32.exp()).ln());
        assert!(
            (nll[0] - want0).abs() < 1e-6 && (nll[1] - want1).abs() < 1e-6,
            "{nll:?}"
        );
    }

    #[test]
    fn shift_right_prepends_start_and_replaces_ignored() {
        let device = Default::default();
        let labels = Tensor::<Cpu, 2, Int>::from_data(
            TensorData::new(vec![5i64, 6, 1, -100, 7, 1, -100, -100], [2, 4]),
            &device,
        );
        let got: Vec<i64> = shift_right(labels, 0, 0)
            .into_data()
            .convert::<i64>()
            .into_vec()
            .unwrap();
        assert_eq!(got, vec![0, 5, 6, 1, 0, 7, 1, 0]);
        assert_eq!(shift_right_row(&[5, 6, 1, -100], 0, 0), vec![0, 5, 6, 1]);
        assert_eq!(shift_right_row(&[7, 1, -100, -100], 0, 0), vec![0, 7, 1, 0]);
    }
}
