//! Which rows of a batch each peer takes, and how much its loss weighs.
//!
//! The global batch is split, not multiplied: `n` rows go to `world` peers in contiguous shares,
//! the first `n % world` peers taking one row more. A loss that is a mean over tokens (T5's
//! seq2seq cross-entropy) is then the token-weighted sum of the shares' means,
//! `L = Σ_i (T_i / T) · L_i`, so each peer back-propagates `(T_i / T) · L_i` and the all-reduced
//! sum of the gradients is the gradient of `L`.

use std::ops::Range;

/// The rows of a batch of `n` rows that peer `rank` of `world` takes (possibly empty when
/// `n < world`).
pub fn share(n: usize, world: usize, rank: usize) -> Range<usize> {
    assert!(world > 0 && rank < world, "rank {rank} of {world} peers");
    let (base, extra) = (n / world, n % world);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    start..start + len
}

/// The weight of a share holding `share_tokens` of the batch's `total_tokens` loss tokens in the
/// batch's token-averaged loss (0 for an empty batch).
pub fn token_weight(share_tokens: usize, total_tokens: usize) -> f64 {
    if total_tokens == 0 {
        0.0
    } else {
        share_tokens as f64 / total_tokens as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_batch_once_in_order() {
        for n in 0..20 {
            for world in 1..6 {
                let mut next = 0;
                for rank in 0..world {
                    let r = share(n, world, rank);
                    assert_eq!(r.start, next, "n {n} world {world} rank {rank}");
                    assert!(r.len() == n / world || r.len() == n / world + 1);
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
        assert_eq!(share(10, 4, 0), 0..3);
        assert_eq!(share(10, 4, 1), 3..6);
        assert_eq!(share(10, 4, 2), 6..8);
        assert_eq!(share(10, 4, 3), 8..10);
        assert_eq!(share(1, 2, 1), 1..1);
    }

    #[test]
    fn token_weights_of_a_batch_sum_to_one() {
        let tokens = [7usize, 0, 12, 5];
        let total: usize = tokens.iter().sum();
        let w: f64 = tokens.iter().map(|&t| token_weight(t, total)).sum();
        assert!((w - 1.0).abs() < 1e-12);
        assert_eq!(token_weight(0, 0), 0.0);
        assert_eq!(token_weight(3, 12), 0.25);
    }
}
