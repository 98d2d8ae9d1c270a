//! Decoder word dropout for models trained from scratch (Bowman et al. 2016, "Generating
//! Sentences from a Continuous Space"): during training, each decoder input token after the
//! start token is replaced by `<unk>` with probability `p`; the labels stay as they are. A
//! decoder that sees only part of the summary it has written so far cannot predict the next
//! token from that prefix alone, so the loss gains more from the source: this pushes a
//! from-scratch T5 on DialogSum out of the state where it models the summaries' language and
//! ignores the encoder. Off at evaluation and generation. Mixed into fine-tuning by
//! `detox finetune --decoder-word-dropout P`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Replaces tokens of `decoder_input_ids` (`batch` rows of `len`, row-major; position 0 of each
/// row is the decoder start token and is kept; `pad` tokens are kept) by `replacement`, each with
/// probability `p`. Returns how many were replaced.
pub fn drop_words(
    decoder_input_ids: &mut [i64],
    len: usize,
    p: f64,
    replacement: i64,
    pad: i64,
    rng: &mut impl Rng,
) -> usize {
    if p <= 0.0 || len == 0 {
        return 0;
    }
    let mut dropped = 0;
    for row in decoder_input_ids.chunks_mut(len) {
        for t in row.iter_mut().skip(1) {
            if *t != pad && rng.random::<f64>() < p {
                *t = replacement;
                dropped += 1;
            }
        }
    }
    dropped
}

/// The generator of one micro-batch's word-dropout draws: seeded by the run's step seed and the
/// micro-batch's index in the step, so a resumed run draws the same masks.
pub fn micro_batch_rng(step_seed: u64, micro_batch: usize) -> StdRng {
    StdRng::seed_from_u64(step_seed ^ 0xD1B5_4A32_D192_ED03u64.wrapping_mul(micro_batch as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_start_and_padding_and_drops_about_p() {
        let (len, rows) = (50, 200);
        let mut ids: Vec<i64> = (0..rows)
            .flat_map(|_| (0..len as i64).map(|t| if t >= 40 { 0 } else { t + 10 }))
            .collect();
        let before = ids.clone();
        let mut rng = micro_batch_rng(7, 0);
        let n = drop_words(&mut ids, len, 0.25, 2, 0, &mut rng);
        let eligible = rows * 39; // positions 1..40 of each row
        let frac = n as f64 / eligible as f64;
        assert!((frac - 0.25).abs() < 0.03, "dropped fraction {frac}");
        for (r, row) in ids.chunks(len).enumerate() {
            let orig = &before[r * len..(r + 1) * len];
            assert_eq!(row[0], orig[0], "start token kept");
            assert!(row[40..].iter().all(|&t| t == 0), "padding kept");
            for (a, b) in row.iter().zip(orig) {
                assert!(a == b || *a == 2, "only replaced by the replacement token");
            }
        }
        assert_eq!(ids.iter().filter(|&&t| t == 2).count(), n);
    }

    #[test]
    fn zero_probability_changes_nothing_and_draws_repeat() {
        let mut ids = vec![0i64, 5, 6, 7, 0, 8, 9, 10];
        let before = ids.clone();
        assert_eq!(
            drop_words(&mut ids, 4, 0.0, 2, 0, &mut micro_batch_rng(1, 0)),
            0
        );
        assert_eq!(ids, before);
        let mut a = vec![1i64; 400];
        let mut b = a.clone();
        drop_words(&mut a, 20, 0.5, 2, 0, &mut micro_batch_rng(3, 1));
        drop_words(&mut b, 20, 0.5, 2, 0, &mut micro_batch_rng(3, 1));
        assert_eq!(a, b, "same seed, same mask");
        let mut c = vec![1i64; 400];
        drop_words(&mut c, 20, 0.5, 2, 0, &mut micro_batch_rng(3, 2));
        assert_ne!(a, c, "another micro-batch, another mask");
    }
}
