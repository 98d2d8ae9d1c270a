//! Corpus-level aggregation: plain means and rouge_score's `BootstrapAggregator`.

use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::score::{RougeScores, Score};

/// One number per ROUGE type, serialized with rouge_score's key names.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RougeMeans {
    #[serde(rename = "rouge1")]
    pub rouge1: f64,
    #[serde(rename = "rouge2")]
    pub rouge2: f64,
    #[serde(rename = "rougeL")]
    pub rouge_l: f64,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: f64,
}

/// Mean F-measure of each ROUGE type over `scores` (plain left-to-right sum divided by the
/// count). An empty slice gives NaN everywhere (like `numpy.mean([])`).
pub fn mean_fmeasure(scores: &[RougeScores]) -> RougeMeans {
    let m = mean_scores(scores);
    RougeMeans {
        rouge1: m.rouge1.fmeasure,
        rouge2: m.rouge2.fmeasure,
        rouge_l: m.rouge_l.fmeasure,
        rouge_lsum: m.rouge_lsum.fmeasure,
    }
}

/// Mean precision, recall and F-measure of each ROUGE type over `scores`, each averaged on its
/// own (so the mean F-measure is not the F-measure of the mean precision and recall) — the
/// same as rouge_score's `np.mean(matrix, axis=0)`. An empty slice gives NaN everywhere.
pub fn mean_scores(scores: &[RougeScores]) -> RougeScores {
    let rows: Vec<[Score; 4]> = scores.iter().map(RougeScores::as_array).collect();
    let mut out = [Score::default(); 4];
    for (k, o) in out.iter_mut().enumerate() {
        *o = mean_of(rows.iter().map(|r| r[k]), rows.len());
    }
    RougeScores::from_array(out)
}

fn mean_of(items: impl Iterator<Item = Score>, n: usize) -> Score {
    let (mut p, mut r, mut f) = (0.0, 0.0, 0.0);
    for s in items {
        p += s.precision;
        r += s.recall;
        f += s.fmeasure;
    }
    let n = n as f64;
    Score {
        precision: p / n,
        recall: r / n,
        fmeasure: f / n,
    }
}

/// Low / mid / high bounds of one ROUGE type (rouge_score's `AggregateScore`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct AggregateScore {
    /// 2.5th percentile of the bootstrap means (precision, recall, F-measure separately).
    pub low: Score,
    /// 50th percentile (median) of the bootstrap means.
    pub mid: Score,
    /// 97.5th percentile of the bootstrap means.
    pub high: Score,
}

/// Result of [`bootstrap`]: the settings used and an [`AggregateScore`] per ROUGE type.
///
/// Serializes as `{"n_samples": N, "seed": S, "rouge1": {"low": {...}, "mid": {...},
/// "high": {...}}, "rouge2": ..., "rougeL": ..., "rougeLsum": ...}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapScores {
    pub n_samples: usize,
    pub seed: u64,
    #[serde(rename = "rouge1")]
    pub rouge1: AggregateScore,
    #[serde(rename = "rouge2")]
    pub rouge2: AggregateScore,
    #[serde(rename = "rougeL")]
    pub rouge_l: AggregateScore,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: AggregateScore,
}

/// Why [`bootstrap`] could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateError {
    /// No scores to resample.
    NoScores,
    /// `n_samples` was 0.
    ZeroSamples,
}

impl fmt::Display for AggregateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggregateError::NoScores => write!(f, "bootstrap needs at least one score"),
            AggregateError::ZeroSamples => {
                write!(f, "bootstrap needs a positive number of samples")
            }
        }
    }
}

impl std::error::Error for AggregateError {}

/// The confidence interval of rouge_score's `BootstrapAggregator()` default.
const CONFIDENCE_INTERVAL: f64 = 0.95;

/// The percentiles (in percent) `BootstrapAggregator` takes, computed with the same float
/// operations: `100 * [d, 0.5, 1 - d]` with `d = (1 - 0.95) / 2`
/// (so low is at `2.5000000000000022`, not exactly 2.5).
pub fn bootstrap_percentiles() -> [f64; 3] {
    let delta = (1.0 - CONFIDENCE_INTERVAL) / 2.0;
    [100.0 * delta, 100.0 * 0.5, 100.0 * (1.0 - delta)]
}

/// Bootstrap confidence intervals as rouge_score's `BootstrapAggregator(0.95, n_samples)`
/// computes them: for each ROUGE type, `n_samples` times draw `scores.len()` examples
/// uniformly with replacement and take the mean precision, recall and F-measure of the draw;
/// `low`, `mid` and `high` are the 2.5th, 50th and 97.5th percentiles of those means (numpy's
/// default linear-interpolation `percentile`, see [`percentile`]). Note that `mid` is the
/// median of the bootstrap means, not the plain mean of `scores`.
///
/// The draws come from a `rand::rngs::StdRng` seeded with `seed`, one after another for
/// rouge1, rouge2, rougeL, rougeLsum (rouge_score also draws separately per type): results are
/// reproducible for a given seed (and rand version) but do not equal numpy's random draws.
pub fn bootstrap(
    scores: &[RougeScores],
    n_samples: usize,
    seed: u64,
) -> Result<BootstrapScores, AggregateError> {
    if scores.is_empty() {
        return Err(AggregateError::NoScores);
    }
    if n_samples == 0 {
        return Err(AggregateError::ZeroSamples);
    }
    let rows: Vec<[Score; 4]> = scores.iter().map(RougeScores::as_array).collect();
    let n = rows.len();
    let q = bootstrap_percentiles();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = [AggregateScore::default(); 4];
    for (k, agg) in out.iter_mut().enumerate() {
        let mut means = [
            Vec::with_capacity(n_samples),
            Vec::with_capacity(n_samples),
            Vec::with_capacity(n_samples),
        ];
        for _ in 0..n_samples {
            let m = mean_of((0..n).map(|_| rows[rng.random_range(0..n)][k]), n);
            means[0].push(m.precision);
            means[1].push(m.recall);
            means[2].push(m.fmeasure);
        }
        for v in means.iter_mut() {
            v.sort_by(f64::total_cmp);
        }
        let at = |j: usize| Score {
            precision: percentile_sorted(&means[0], q[j]),
            recall: percentile_sorted(&means[1], q[j]),
            fmeasure: percentile_sorted(&means[2], q[j]),
        };
        *agg = AggregateScore {
            low: at(0),
            mid: at(1),
            high: at(2),
        };
    }
    Ok(BootstrapScores {
        n_samples,
        seed,
        rouge1: out[0],
        rouge2: out[1],
        rouge_l: out[2],
        rouge_lsum: out[3],
    })
}

/// `numpy.percentile(values, q)` with the default `method="linear"` (numpy 1.26), including
/// its interpolation formula (`a + (b - a) * g` for `g < 0.5`, `b - (b - a) * (1 - g)` else).
/// `q` is in percent, `0 <= q <= 100`. Returns NaN for an empty slice or if any value is NaN.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_sorted(&sorted, q)
}

fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let virtual_index = (n - 1) as f64 * (q / 100.0);
    if virtual_index >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if virtual_index < 0.0 {
        return sorted[0];
    }
    let prev = virtual_index.floor();
    let gamma = virtual_index - prev;
    let (a, b) = (sorted[prev as usize], sorted[prev as usize + 1]);
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: f64, r: f64, f: f64) -> Score {
        Score {
            precision: p,
            recall: r,
            fmeasure: f,
        }
    }

    fn example(x: f64) -> RougeScores {
        RougeScores::from_array([
            s(x, x / 2.0, x / 3.0),
            s(x, 0.0, 0.0),
            s(1.0 - x, x, x),
            s(0.0, 0.0, x * x),
        ])
    }

    #[test]
    fn percentile_matches_numpy() {
        let fx = crate::test_fixture("percentile.json");
        // Numbers are stored as Python repr strings; str::parse reads them exactly.
        let nums = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().parse::<f64>().unwrap())
                .collect()
        };
        let q = nums(&fx["q"]);
        assert_eq!(
            q,
            bootstrap_percentiles(),
            "q values differ from BootstrapAggregator's"
        );
        let cases = fx["cases"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for case in cases {
            let values = nums(&case["values"]);
            let want = nums(&case["percentiles"]);
            for (qi, w) in q.iter().zip(&want) {
                let got = percentile(&values, *qi);
                assert_eq!(
                    got.to_bits(),
                    w.to_bits(),
                    "n={} q={qi}: got {got:e}, numpy {w:e}",
                    values.len()
                );
            }
        }
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
        assert_eq!(percentile(&[1.0, 2.0], 25.0), 1.25);
        assert_eq!(percentile(&[1.0, 2.0], 100.0), 2.0);
        assert_eq!(percentile(&[1.0, 2.0], 0.0), 1.0);
    }

    #[test]
    fn means() {
        let scores = [example(0.5), example(0.25), example(1.0)];
        let m = mean_fmeasure(&scores);
        assert_eq!(m.rouge1, (0.5 / 3.0 + 0.25 / 3.0 + 1.0 / 3.0) / 3.0);
        assert_eq!(m.rouge2, 0.0);
        assert_eq!(m.rouge_l, (0.5 + 0.25 + 1.0) / 3.0);
        assert_eq!(m.rouge_lsum, (0.25 + 0.0625 + 1.0) / 3.0);
        let all = mean_scores(&scores);
        assert_eq!(all.rouge_l.precision, (0.5 + 0.75 + 0.0) / 3.0);
        assert!(mean_fmeasure(&[]).rouge1.is_nan());
        let v = serde_json::to_value(m).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 4);
        assert_eq!(v["rougeLsum"], m.rouge_lsum);
    }

    #[test]
    fn bootstrap_is_seeded_and_ordered() {
        let scores: Vec<RougeScores> = (0..50).map(|i| example(i as f64 / 49.0)).collect();
        let a = bootstrap(&scores, 500, 7).unwrap();
        let b = bootstrap(&scores, 500, 7).unwrap();
        let c = bootstrap(&scores, 500, 8).unwrap();
        assert_eq!(a, b, "same seed, same result");
        assert_ne!(a, c, "another seed, another result");
        assert_eq!((a.n_samples, a.seed), (500, 7));
        let mean = mean_scores(&scores);
        let check = |agg: AggregateScore, mean: Score| {
            for (l, m, h, mu) in [
                (
                    agg.low.precision,
                    agg.mid.precision,
                    agg.high.precision,
                    mean.precision,
                ),
                (agg.low.recall, agg.mid.recall, agg.high.recall, mean.recall),
                (
                    agg.low.fmeasure,
                    agg.mid.fmeasure,
                    agg.high.fmeasure,
                    mean.fmeasure,
                ),
            ] {
                assert!(l <= m && m <= h, "{l} {m} {h}");
                // The median of the bootstrap means is close to the sample mean.
                assert!((m - mu).abs() < 0.05, "mid {m} vs mean {mu}");
                if mu > 0.0 {
                    assert!(l < h, "degenerate interval {l}..{h}");
                }
            }
        };
        check(a.rouge1, mean.rouge1);
        check(a.rouge2, mean.rouge2);
        check(a.rouge_l, mean.rouge_l);
        check(a.rouge_lsum, mean.rouge_lsum);
        // rouge2 recall is always 0.
        assert_eq!(a.rouge2.high.recall, 0.0);
    }

    #[test]
    fn bootstrap_of_identical_scores_is_that_score() {
        let scores = vec![example(0.5); 7];
        let b = bootstrap(&scores, 20, 1).unwrap();
        let e = example(0.5);
        let close = |a: Score, b: Score| {
            (a.precision - b.precision).abs() < 1e-15
                && (a.recall - b.recall).abs() < 1e-15
                && (a.fmeasure - b.fmeasure).abs() < 1e-15
        };
        for (agg, want) in [
            (b.rouge1, e.rouge1),
            (b.rouge2, e.rouge2),
            (b.rouge_l, e.rouge_l),
            (b.rouge_lsum, e.rouge_lsum),
        ] {
            for got in [agg.low, agg.mid, agg.high] {
                assert!(close(got, want), "{got:?} vs {want:?}");
            }
        }
        let v = serde_json::to_value(b).unwrap();
        assert_eq!(v["rougeL"]["mid"]["recall"], 0.5);
        assert_eq!(v["n_samples"], 20);
    }

    #[test]
    fn bootstrap_errors() {
        assert_eq!(bootstrap(&[], 10, 0), Err(AggregateError::NoScores));
        assert_eq!(
            bootstrap(&[example(0.1)], 0, 0),
            Err(AggregateError::ZeroSamples)
        );
    }
}
