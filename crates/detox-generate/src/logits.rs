//! Per-row logit processing and token choice, on the host.

use rand::Rng;

/// Index of the largest value; the first one on ties (as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

/// transformers' `RepetitionPenaltyLogitsProcessor`: the logit of every token already in
/// `decoder_ids` (the decoder start token included, as in transformers) is divided by `penalty`
/// when positive and multiplied by it when negative. `penalty == 1.0` is off.
pub fn repetition_penalty(logits: &mut [f32], decoder_ids: &[u32], penalty: f64) {
    if penalty == 1.0 {
        return;
    }
    let p = penalty as f32;
    // each token once, however often it occurred (transformers gathers, then scatters)
    let mut tokens = decoder_ids.to_vec();
    tokens.sort_unstable();
    tokens.dedup();
    for t in tokens {
        if let Some(v) = logits.get_mut(t as usize) {
            *v = if *v < 0.0 { *v * p } else { *v / p };
        }
    }
}

/// transformers' `NoRepeatNGramLogitsProcessor`: every token that would complete an n-gram of
/// size `n` already present in `decoder_ids` (start token included) gets `-inf`. `n == 0` is
/// off; nothing is banned before `decoder_ids` holds `n - 1` tokens.
pub fn no_repeat_ngram(logits: &mut [f32], decoder_ids: &[u32], n: usize) {
    if n == 0 || decoder_ids.len() + 1 < n {
        return;
    }
    let prefix = &decoder_ids[decoder_ids.len() + 1 - n..];
    for w in decoder_ids.windows(n) {
        if &w[..n - 1] == prefix {
            if let Some(v) = logits.get_mut(w[n - 1] as usize) {
                *v = f32::NEG_INFINITY;
            }
        }
    }
}

/// transformers' sampling warpers, in their order: temperature, top-k (keep values ≥ the k-th
/// largest), top-p (drop the lowest tokens whose cumulative probability is ≤ 1 - top_p, always
/// keeping the most likely). Removed entries become `-inf`. `top_k == 0` and `top_p >= 1` are off.
pub fn warp_logits(logits: &mut [f32], temperature: f64, top_k: usize, top_p: f64) {
    if temperature != 1.0 {
        let t = temperature as f32;
        logits.iter_mut().for_each(|v| *v /= t);
    }
    if top_k > 0 && top_k < logits.len() {
        let mut sorted: Vec<f32> = logits.to_vec();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        let kth = sorted[top_k - 1];
        logits
            .iter_mut()
            .filter(|v| **v < kth)
            .for_each(|v| *v = f32::NEG_INFINITY);
    }
    if top_p < 1.0 {
        // Ascending order, as transformers sorts; a stable sort keeps index order on ties.
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]));
        let probs = softmax(logits);
        let mut cum = 0.0f64;
        let last = order.len() - 1;
        for (rank, &i) in order.iter().enumerate() {
            cum += probs[i];
            if cum <= 1.0 - top_p && rank != last {
                logits[i] = f32::NEG_INFINITY;
            }
        }
    }
}

/// Softmax in f64.
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&v| ((v as f64) - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// `torch.log_softmax` in place, in f32 as transformers' beam search computes it:
/// `x - max - ln(sum(exp(x - max)))` (f32 exponentials, summed in f64).
pub fn log_softmax(logits: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&v| (v - max).exp() as f64).sum();
    let shift = max + sum.ln() as f32;
    logits.iter_mut().for_each(|v| *v -= shift);
}

/// The `k` largest values of `scores` with their indices, largest first; on equal values the
/// lower index first (`torch.topk(..., sorted=True)`). NaN counts as smallest.
pub fn top_k_indices(scores: &[f32], k: usize) -> Vec<(f32, usize)> {
    let better = |a: (f32, usize), b: (f32, usize)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);
    let mut top: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return top;
    }
    for (i, &v) in scores.iter().enumerate() {
        let v = if v.is_nan() { f32::NEG_INFINITY } else { v };
        if top.len() == k && !better((v, i), top[k - 1]) {
            continue;
        }
        let at = top.partition_point(|&t| better(t, (v, i)));
        top.insert(at, (v, i));
        top.truncate(k);
    }
    top
}

/// Draws an index with probability `softmax(logits)`.
pub fn sample<R: Rng>(logits: &[f32], rng: &mut R) -> usize {
    let probs = softmax(logits);
    let u: f64 = rng.random::<f64>();
    let mut cum = 0.0;
    let mut last_possible = 0;
    for (i, p) in probs.iter().enumerate() {
        if *p > 0.0 {
            last_possible = i;
            cum += p;
            if u < cum {
                return i;
            }
        }
    }
    last_possible
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// transformers' processors on random logits (`tools/make_generate_fixtures.py`).
    #[test]
    fn processors_match_transformers() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/generate/processors.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let fx: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cases = fx["cases"].as_array().unwrap();
        assert!(cases.len() >= 6);
        let mut banned = 0;
        for (k, c) in cases.iter().enumerate() {
            let penalty = c["repetition_penalty"].as_f64().unwrap();
            let n = c["no_repeat_ngram_size"].as_u64().unwrap() as usize;
            for row in 0..2 {
                let ids: Vec<u32> = c["input_ids"][row]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect();
                let mut logits: Vec<f32> = c["logits"][row]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                repetition_penalty(&mut logits, &ids, penalty);
                no_repeat_ngram(&mut logits, &ids, n);
                for (i, want) in c["expected"][row].as_array().unwrap().iter().enumerate() {
                    let got = logits[i];
                    match want.as_f64() {
                        None => {
                            assert_eq!(got, f32::NEG_INFINITY, "case {k} row {row} token {i}");
                            banned += 1;
                        }
                        Some(w) => assert!(
                            (got as f64 - w).abs() <= 1e-6 * w.abs().max(1.0),
                            "case {k} row {row} token {i}: {got} vs {w}"
                        ),
                    }
                }
            }
        }
        assert!(banned >= 3, "the fixture must exercise n-gram bans");
    }

    #[test]
    fn log_softmax_normalizes_and_keeps_order() {
        let mut l = vec![1.0f32, 2.0, 3.0, f32::NEG_INFINITY];
        log_softmax(&mut l);
        let total: f64 = l.iter().map(|&v| (v as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!((l[2] - l[1] - 1.0).abs() < 1e-6);
        assert_eq!(l[3], f32::NEG_INFINITY);
        // torch.log_softmax([1, 2, 3])[0]
        assert!((l[0] + 2.407_606).abs() < 1e-5);
    }

    #[test]
    fn top_k_indices_are_sorted_with_lower_index_first_on_ties() {
        let s = [0.5f32, 2.0, -1.0, 2.0, f32::NAN, 1.0];
        assert_eq!(top_k_indices(&s, 3), vec![(2.0, 1), (2.0, 3), (1.0, 5)]);
        assert_eq!(top_k_indices(&s, 10).len(), 6);
        assert!(top_k_indices(&s, 0).is_empty());
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn top_k_keeps_k_largest() {
        let mut l = vec![1.0, 4.0, 2.0, 3.0];
        warp_logits(&mut l, 1.0, 2, 1.0);
        assert_eq!(l, vec![f32::NEG_INFINITY, 4.0, f32::NEG_INFINITY, 3.0]);
    }

    #[test]
    fn top_p_drops_the_tail_but_keeps_the_token_crossing_p() {
        // probs ≈ [0.0321, 0.0871, 0.2369, 0.6439]; ascending cumsum 0.032, 0.119, 0.356, 1.0.
        // top_p 0.7 → remove cum ≤ 0.3: tokens 0 and 1; token 2 (cum 0.356) stays.
        let mut l = vec![0.0, 1.0, 2.0, 3.0];
        warp_logits(&mut l, 1.0, 0, 0.7);
        assert_eq!(l, vec![f32::NEG_INFINITY, f32::NEG_INFINITY, 2.0, 3.0]);
        // top_p small: only the top token survives.
        let mut l = vec![0.0, 1.0, 2.0, 3.0];
        warp_logits(&mut l, 1.0, 0, 0.01);
        assert_eq!(l[..3], [f32::NEG_INFINITY; 3]);
        assert_eq!(l[3], 3.0);
    }

    #[test]
    fn temperature_divides_logits() {
        let mut l = vec![2.0, -4.0];
        warp_logits(&mut l, 2.0, 0, 1.0);
        assert_eq!(l, vec![1.0, -2.0]);
    }

    #[test]
    fn sampling_follows_the_distribution_and_never_picks_removed_tokens() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let logits = [0.0f32, (3.0f32).ln(), f32::NEG_INFINITY];
        let mut counts = [0usize; 3];
        for _ in 0..20_000 {
            counts[sample(&logits, &mut rng)] += 1;
        }
        assert_eq!(counts[2], 0);
        let frac = counts[1] as f64 / 20_000.0;
        assert!((frac - 0.75).abs() < 0.015, "got {frac}");
    }
}
