//! A supervised pointer: an auxiliary loss that teaches one cross-attention head where the next
//! summary token sits in the source (`detox finetune --pointer-loss W`).
//!
//! A T5 trained from scratch on DialogSum learns the summaries' language long before its
//! cross-attention learns to pick source positions: with ~250 source positions and nearly uniform
//! attention, the gradient that would sharpen it is spread thin, and the decoder settles on one
//! sentence for every dialogue. Supervised attention (as in alignment-supervised NMT) gives that
//! head a direct target: at decoder position `t`, put the weight on the source positions whose
//! token is the label `y_t` (positions where the label occurs nowhere in the source, padding and
//! `</s>` are left out). The head then works as the pointer of a pointer-generator network, and
//! the model stays a plain T5 (the loss only shapes its weights during training).
//!
//! Loss: `-log(sum_s attn[b, h, t, s] * align[b, t, s])`, averaged over the heads and the
//! positions that have an alignment.

use burn::prelude::*;

use crate::loss::IGNORE_INDEX;

/// Where each label occurs in its row's source.
#[derive(Debug, Clone, PartialEq)]
pub struct Alignment {
    /// `[batch, tgt_len, src_len]`, row-major: 1 where `input_ids[b, s] == labels[b, t]`.
    pub targets: Vec<f32>,
    /// `[batch, tgt_len]`: 1 where the label occurs in the source (those positions count).
    pub counted: Vec<f32>,
    pub batch: usize,
    pub tgt_len: usize,
    pub src_len: usize,
}

/// The alignment of a collated batch (`input_ids` `[batch, src_len]`, `labels`
/// `[batch, tgt_len]`, row-major). Labels equal to `pad`, `eos` or [`IGNORE_INDEX`] and source
/// padding (`pad`) are never aligned.
pub fn alignment(
    input_ids: &[i64],
    labels: &[i64],
    batch: usize,
    src_len: usize,
    tgt_len: usize,
    pad: i64,
    eos: i64,
) -> Alignment {
    let mut targets = vec![0f32; batch * tgt_len * src_len];
    let mut counted = vec![0f32; batch * tgt_len];
    for b in 0..batch {
        let src = &input_ids[b * src_len..(b + 1) * src_len];
        for t in 0..tgt_len {
            let y = labels[b * tgt_len + t];
            if y == pad || y == eos || y == IGNORE_INDEX {
                continue;
            }
            let row = &mut targets[(b * tgt_len + t) * src_len..(b * tgt_len + t + 1) * src_len];
            for (s, &x) in src.iter().enumerate() {
                if x == y && x != pad {
                    row[s] = 1.0;
                    counted[b * tgt_len + t] = 1.0;
                }
            }
        }
    }
    Alignment {
        targets,
        counted,
        batch,
        tgt_len,
        src_len,
    }
}

/// The pointer loss of attention `weights` `[batch, heads, tgt_len, src_len]` (softmax rows)
/// against `align`: the mean over heads and counted positions of `-log` of the weight on the
/// aligned source positions (a `[1]` tensor; 0 when nothing is counted).
pub fn pointer_loss<B: Backend>(weights: Tensor<B, 4>, align: &Alignment) -> Tensor<B, 1> {
    let device = weights.device();
    let [b, heads, t, s] = weights.dims();
    assert_eq!(
        [b, t, s],
        [align.batch, align.tgt_len, align.src_len],
        "pointer loss: attention and alignment shapes differ"
    );
    let targets =
        Tensor::<B, 3>::from_data(TensorData::new(align.targets.clone(), [b, t, s]), &device);
    let counted =
        Tensor::<B, 2>::from_data(TensorData::new(align.counted.clone(), [b, t]), &device);
    let n = align.counted.iter().sum::<f32>() as f64 * heads as f64;
    let mass = (weights * targets.unsqueeze_dim::<4>(1))
        .sum_dim(3)
        .squeeze_dim::<3>(3); // [b, h, t]
    let nll = mass.clamp_min(1e-6).log().neg() * counted.unsqueeze_dim::<3>(1);
    nll.sum() / n.max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Cpu = burn::backend::NdArray<f32>;

    #[test]
    fn labels_align_with_every_source_position_holding_them() {
        // source [5 7 5 0(pad)], labels [5 9 1(eos) -100]
        let a = alignment(&[5, 7, 5, 0], &[5, 9, 1, IGNORE_INDEX], 1, 4, 4, 0, 1);
        assert_eq!(&a.targets[0..4], &[1.0, 0.0, 1.0, 0.0]);
        assert!(
            a.targets[4..].iter().all(|&v| v == 0.0),
            "9, </s> and -100 align nowhere"
        );
        assert_eq!(a.counted, vec![1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn pad_labels_do_not_align_with_source_padding() {
        let a = alignment(&[3, 0], &[0, 3], 1, 2, 2, 0, 1);
        assert_eq!(a.targets, vec![0.0, 0.0, 1.0, 0.0]);
        assert_eq!(a.counted, vec![0.0, 1.0]);
    }

    #[test]
    fn loss_is_minus_log_of_the_aligned_mass_over_counted_positions() {
        let device = Default::default();
        // one row, one head, two target positions, three source positions
        let w = Tensor::<Cpu, 4>::from_data(
            TensorData::new(vec![0.5f32, 0.25, 0.25, 0.1, 0.1, 0.8], [1, 1, 2, 3]),
            &device,
        );
        let a = Alignment {
            targets: vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0],
            counted: vec![1.0, 0.0],
            batch: 1,
            tgt_len: 2,
            src_len: 3,
        };
        let l: f32 = pointer_loss(w, &a).into_scalar();
        assert!((l - (-(0.75f32).ln())).abs() < 1e-6, "{l}");
    }

    #[test]
    fn loss_is_zero_when_nothing_aligns() {
        let device = Default::default();
        let w = Tensor::<Cpu, 4>::ones([1, 2, 1, 2], &device) * 0.5;
        let a = alignment(&[4, 5], &[6], 1, 2, 1, 0, 1);
        let l: f32 = pointer_loss(w, &a).into_scalar();
        assert_eq!(l, 0.0);
    }
}
