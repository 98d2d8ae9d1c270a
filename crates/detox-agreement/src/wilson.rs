//! Wilson score interval of a binomial proportion.

/// The standard normal quantile at 0.975 (scipy's `ndtri(0.975)`): a two-sided 95% interval.
pub const Z95: f64 = 1.959963984540054;

/// The Wilson score interval `[lo, hi]` of `successes` out of `n` trials at normal quantile `z`:
/// `(p + z²/2n ± z √(p(1 − p)/n + z²/4n²)) / (1 + z²/n)` with `p = successes / n`, clamped to
/// `[0, 1]`, and exactly 0 when `successes == 0`, exactly 1 when `successes == n` (the values
/// of the formula there, which rounding otherwise misses by an ulp or so). `None` when `n == 0`.
pub fn wilson_interval(successes: u64, n: u64, z: f64) -> Option<[f64; 2]> {
    if n == 0 {
        return None;
    }
    let nf = n as f64;
    let p = successes as f64 / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let center = (p + z2 / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    let lo = if successes == 0 {
        0.0
    } else {
        (center - half).max(0.0)
    };
    let hi = if successes >= n {
        1.0
    } else {
        (center + half).min(1.0)
    };
    Some([lo, hi])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // scipy.stats.binomtest(k, n).proportion_ci(method="wilson"), scipy 1.17.1.
        let [lo, hi] = wilson_interval(7, 10, Z95).unwrap();
        assert!((lo - 0.39677814746114526).abs() < 1e-12, "{lo}");
        assert!((hi - 0.892208732593699).abs() < 1e-12, "{hi}");
        let [lo, hi] = wilson_interval(0, 5, Z95).unwrap();
        assert_eq!(lo, 0.0);
        assert!((hi - 0.43448246478317476).abs() < 1e-12, "{hi}");
        let [lo, hi] = wilson_interval(5, 5, Z95).unwrap();
        assert!((lo - 0.5655175352168251).abs() < 1e-12, "{lo}");
        assert_eq!(hi, 1.0);
        assert_eq!(wilson_interval(0, 0, Z95), None);
    }

    #[test]
    fn symmetric_and_contains_the_rate() {
        for n in 1..40u64 {
            for k in 0..=n {
                let [lo, hi] = wilson_interval(k, n, Z95).unwrap();
                let [lo2, hi2] = wilson_interval(n - k, n, Z95).unwrap();
                let p = k as f64 / n as f64;
                assert!(
                    0.0 <= lo && lo <= p && p <= hi && hi <= 1.0,
                    "{k}/{n}: {lo} {hi}"
                );
                assert!((lo - (1.0 - hi2)).abs() < 1e-12 && (hi - (1.0 - lo2)).abs() < 1e-12);
            }
        }
    }
}
