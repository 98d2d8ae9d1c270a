//! T5's pre-training objective, span corruption (`random_spans_noise_mask` of the T5 paper and
//! its reference implementation): about `density` of a text's tokens, in spans of mean length
//! `mean_span`, are cut out; the source keeps the rest with one sentinel (`<extra_id_0>`,
//! `<extra_id_1>`, ...) in place of each span, the target lists each sentinel followed by its span.
//! Mixed into fine-tuning (`detox finetune --denoise`) it makes a model trained from scratch use
//! its encoder: the cut-out tokens cannot be predicted without reading the source.

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::Rng;

use crate::data::Tokenized;

/// `n` items split into `parts` non-empty consecutive segments at random: their lengths.
fn random_segmentation(n: usize, parts: usize, rng: &mut StdRng) -> Vec<usize> {
    let parts = parts.clamp(1, n.max(1));
    let mut cuts: Vec<usize> = sample(rng, n - 1, parts - 1)
        .into_iter()
        .map(|c| c + 1)
        .collect();
    cuts.sort_unstable();
    let mut out = Vec::with_capacity(parts);
    let mut prev = 0;
    for c in cuts.into_iter().chain(std::iter::once(n)) {
        out.push(c - prev);
        prev = c;
    }
    out
}

/// Which of `len` tokens are noise: alternating kept / noise spans, starting with kept tokens,
/// `round(len · density)` noise tokens (at least 1, at most `len - 1`) in
/// `round(noise / mean_span)` spans (at least 1).
pub fn noise_mask(len: usize, density: f64, mean_span: f64, rng: &mut StdRng) -> Vec<bool> {
    if len < 2 {
        return vec![false; len];
    }
    let noise = ((len as f64 * density).round() as usize).clamp(1, len - 1);
    let spans = ((noise as f64 / mean_span).round() as usize).clamp(1, noise.min(len - noise));
    let noise_lens = random_segmentation(noise, spans, rng);
    let keep_lens = random_segmentation(len - noise, spans, rng);
    let mut mask = Vec::with_capacity(len);
    for (k, n) in keep_lens.iter().zip(&noise_lens) {
        mask.extend(std::iter::repeat_n(false, *k));
        mask.extend(std::iter::repeat_n(true, *n));
    }
    mask
}

/// Span corruption of `tokens` (the text's ids without the final `eos`): the source and target
/// of one denoising example, both ending with `eos`. `first_sentinel` is `<extra_id_0>`'s id;
/// T5's sentinels count down from it (`<extra_id_1>` = `first_sentinel - 1`, ...).
pub fn span_corrupt(
    tokens: &[u32],
    density: f64,
    mean_span: f64,
    first_sentinel: u32,
    eos: u32,
    rng: &mut StdRng,
) -> Tokenized {
    let mask = noise_mask(tokens.len(), density, mean_span, rng);
    let (mut source, mut target) = (Vec::new(), Vec::new());
    let mut sentinel = first_sentinel;
    for (i, (&t, &noisy)) in tokens.iter().zip(&mask).enumerate() {
        if !noisy {
            source.push(t);
            continue;
        }
        if i == 0 || !mask[i - 1] {
            source.push(sentinel);
            target.push(sentinel);
            sentinel = sentinel.saturating_sub(1);
        }
        target.push(t);
    }
    source.push(eos);
    target.push(eos);
    Tokenized {
        input_ids: source,
        labels: target,
    }
}

/// A seeded RNG for example `index` of a run with `seed` (the same corruption on every resume).
pub fn example_rng(seed: u64, index: usize) -> StdRng {
    use rand::SeedableRng;
    let mut base = StdRng::seed_from_u64(seed ^ 0xD1B5_4A32_D192_ED03);
    let salt: u64 = base.random();
    StdRng::seed_from_u64(salt.wrapping_add(index as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_keeps_every_token_once_and_numbers_the_sentinels() {
        let tokens: Vec<u32> = (100..300).collect();
        let mut rng = example_rng(1, 0);
        let ex = span_corrupt(&tokens, 0.15, 3.0, 32099, 1, &mut rng);
        assert_eq!(*ex.input_ids.last().unwrap(), 1);
        assert_eq!(*ex.labels.last().unwrap(), 1);
        let is_sentinel = |t: &u32| (32000..=32099).contains(t);
        let kept: Vec<u32> = ex
            .input_ids
            .iter()
            .filter(|t| !is_sentinel(t) && **t != 1)
            .copied()
            .collect();
        let cut: Vec<u32> = ex
            .labels
            .iter()
            .filter(|t| !is_sentinel(t) && **t != 1)
            .copied()
            .collect();
        assert_eq!(cut.len(), 30, "15% of 200");
        // Source sentinels and target sentinels are the same sequence 32099, 32098, ...
        let s: Vec<u32> = ex
            .input_ids
            .iter()
            .filter(|t| is_sentinel(t))
            .copied()
            .collect();
        let t: Vec<u32> = ex
            .labels
            .iter()
            .filter(|t| is_sentinel(t))
            .copied()
            .collect();
        assert_eq!(s, t);
        assert_eq!(
            s,
            (0..s.len() as u32).map(|i| 32099 - i).collect::<Vec<_>>()
        );
        assert_eq!(s.len(), 10, "30 noise tokens in spans of mean 3");
        // Putting the spans back where the sentinels are restores the text.
        let mut spans: Vec<Vec<u32>> = Vec::new();
        for &x in &ex.labels[..ex.labels.len() - 1] {
            if is_sentinel(&x) {
                spans.push(Vec::new());
            } else {
                spans.last_mut().unwrap().push(x);
            }
        }
        let mut restored = Vec::new();
        let mut k = 0;
        for &x in &ex.input_ids[..ex.input_ids.len() - 1] {
            if is_sentinel(&x) {
                restored.extend(&spans[k]);
                k += 1;
            } else {
                restored.push(x);
            }
        }
        assert_eq!(restored, tokens);
        assert!(kept.len() + cut.len() == tokens.len());
    }

    #[test]
    fn the_mask_starts_kept_and_short_texts_survive() {
        for seed in 0..20 {
            let mut rng = example_rng(seed, 3);
            let m = noise_mask(37, 0.15, 3.0, &mut rng);
            assert_eq!(m.len(), 37);
            assert!(!m[0]);
            assert_eq!(m.iter().filter(|&&x| x).count(), 6);
        }
        let mut rng = example_rng(0, 0);
        assert_eq!(noise_mask(1, 0.15, 3.0, &mut rng), vec![false]);
        assert_eq!(noise_mask(2, 0.15, 3.0, &mut rng), vec![false, true]);
        let ex = span_corrupt(&[], 0.15, 3.0, 32099, 1, &mut rng);
        assert_eq!((ex.input_ids, ex.labels), (vec![1], vec![1]));
    }

    #[test]
    fn the_rng_depends_on_seed_and_index() {
        let draw = |s, i| example_rng(s, i).random::<u64>();
        assert_eq!(draw(1, 2), draw(1, 2));
        assert_ne!(draw(1, 2), draw(1, 3));
        assert_ne!(draw(1, 2), draw(2, 2));
    }
}
