//! ROUGE-N, ROUGE-L and summary-level ROUGE-Lsum (`rouge_score.rouge_scorer`).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::porter::PorterStemmer;
use crate::tokenize::tokenize_with;

/// Precision, recall and F-measure of one ROUGE type (rouge_score's `Score` tuple).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Score {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl Score {
    /// A score from precision and recall, with rouge_score's F-measure:
    /// `2 * p * r / (p + r)`, or `0` when `p + r == 0`.
    pub fn from_precision_recall(precision: f64, recall: f64) -> Self {
        Score {
            precision,
            recall,
            fmeasure: fmeasure(precision, recall),
        }
    }

    const ZERO: Score = Score {
        precision: 0.0,
        recall: 0.0,
        fmeasure: 0.0,
    };
}

/// rouge_score's `scoring.fmeasure`.
pub fn fmeasure(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// The four ROUGE scores of one prediction/reference pair.
///
/// Serializes as `{"rouge1": {...}, "rouge2": {...}, "rougeL": {...}, "rougeLsum": {...}}`,
/// each a [`Score`] object `{"precision": P, "recall": R, "fmeasure": F}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RougeScores {
    #[serde(rename = "rouge1")]
    pub rouge1: Score,
    #[serde(rename = "rouge2")]
    pub rouge2: Score,
    #[serde(rename = "rougeL")]
    pub rouge_l: Score,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: Score,
}

impl RougeScores {
    /// The metric names, in the order of [`RougeScores::as_array`].
    pub const NAMES: [&'static str; 4] = ["rouge1", "rouge2", "rougeL", "rougeLsum"];

    /// `[rouge1, rouge2, rougeL, rougeLsum]`.
    pub fn as_array(&self) -> [Score; 4] {
        [self.rouge1, self.rouge2, self.rouge_l, self.rouge_lsum]
    }

    /// Inverse of [`RougeScores::as_array`].
    pub fn from_array(a: [Score; 4]) -> Self {
        RougeScores {
            rouge1: a[0],
            rouge2: a[1],
            rouge_l: a[2],
            rouge_lsum: a[3],
        }
    }
}

/// Scores `prediction` against `reference` exactly like rouge_score 0.1.2's
/// `RougeScorer(['rouge1', 'rouge2', 'rougeL', 'rougeLsum'], use_stemmer=True)
/// .score(target=reference, prediction=prediction)`.
///
/// Note the argument order: **prediction first** (rouge_score takes the target first).
///
/// * rouge1 / rouge2: clipped n-gram overlap (`min` of the counts), precision over the
///   prediction's n-grams, recall over the reference's (`max(count, 1)` denominators);
/// * rougeL: longest common subsequence of the token sequences; all zero if either side has
///   no tokens;
/// * rougeLsum: summary-level LCS over sentences split on `"\n"` (empty lines dropped): the
///   union LCS of each reference sentence against every prediction sentence, with hits
///   clipped by the token counts of both summaries (rouge_score's `_summary_level_lcs`).
///   Single-line texts therefore give rougeLsum == rougeL up to tie-breaking of the LCS.
///
/// ```
/// let s = detox_rouge::score("the cat sat on the mat", "the cat was on the mat");
/// assert_eq!(s.rouge1.precision, 5.0 / 6.0);
/// assert_eq!(s.rouge2.recall, 3.0 / 5.0);
/// assert_eq!(s.rouge_l.fmeasure, 5.0 / 6.0);
/// ```
pub fn score(prediction: &str, reference: &str) -> RougeScores {
    let stemmer = PorterStemmer::new();
    let pred = tokenize_with(prediction, Some(&stemmer));
    let refr = tokenize_with(reference, Some(&stemmer));
    let pred_sents: Vec<Vec<String>> = sentences(prediction)
        .map(|s| tokenize_with(s, Some(&stemmer)))
        .collect();
    let ref_sents: Vec<Vec<String>> = sentences(reference)
        .map(|s| tokenize_with(s, Some(&stemmer)))
        .collect();
    RougeScores {
        rouge1: score_ngrams(&refr, &pred, 1),
        rouge2: score_ngrams(&refr, &pred, 2),
        rouge_l: score_lcs(&refr, &pred),
        rouge_lsum: summary_level_lcs(&ref_sents, &pred_sents),
    }
}

/// rougeLsum's sentences: split on `'\n'` only, empty pieces dropped (a line of spaces stays,
/// it just has no tokens).
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').filter(|s| !s.is_empty())
}

fn ratio(num: usize, den: usize) -> f64 {
    // Counts are far below 2^53, so the conversions are exact and the division is the
    // correctly rounded quotient, as Python's int / int.
    num as f64 / den as f64
}

fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    if tokens.len() >= n {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// rouge_score's `_score_ngrams(_create_ngrams(target, n), _create_ngrams(prediction, n))`.
fn score_ngrams(target: &[String], prediction: &[String], n: usize) -> Score {
    let t = ngram_counts(target, n);
    let p = ngram_counts(prediction, n);
    let overlap: usize = t
        .iter()
        .map(|(g, &c)| c.min(p.get(g).copied().unwrap_or(0)))
        .sum();
    let t_total: usize = t.values().sum();
    let p_total: usize = p.values().sum();
    Score::from_precision_recall(
        ratio(overlap, p_total.max(1)),
        ratio(overlap, t_total.max(1)),
    )
}

/// The `(rows + 1) x (cols + 1)` LCS length table, row-major.
struct LcsTable {
    cols: usize,
    cells: Vec<u32>,
}

impl LcsTable {
    fn new(r: &[String], c: &[String]) -> Self {
        let cols = c.len() + 1;
        let mut cells = vec![0u32; (r.len() + 1) * cols];
        for i in 1..=r.len() {
            for j in 1..=c.len() {
                cells[i * cols + j] = if r[i - 1] == c[j - 1] {
                    cells[(i - 1) * cols + j - 1] + 1
                } else {
                    cells[(i - 1) * cols + j].max(cells[i * cols + j - 1])
                };
            }
        }
        LcsTable { cols, cells }
    }

    fn at(&self, i: usize, j: usize) -> u32 {
        self.cells[i * self.cols + j]
    }

    fn last(&self) -> u32 {
        *self.cells.last().expect("table is never empty")
    }
}

/// rouge_score's `_score_lcs(target, prediction)`.
fn score_lcs(target: &[String], prediction: &[String]) -> Score {
    if target.is_empty() || prediction.is_empty() {
        return Score::ZERO;
    }
    let lcs = LcsTable::new(target, prediction).last() as usize;
    Score::from_precision_recall(ratio(lcs, prediction.len()), ratio(lcs, target.len()))
}

/// Indices into `r` of one LCS of `r` and `c`, chosen exactly as rouge_score's
/// `_backtrack_norec` (matches first, then prefer moving left in `c` only on a strict gain).
fn lcs_indices(r: &[String], c: &[String]) -> Vec<usize> {
    let t = LcsTable::new(r, c);
    let (mut i, mut j) = (r.len(), c.len());
    let mut out = Vec::new();
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t.at(i, j - 1) > t.at(i - 1, j) {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out.reverse();
    out
}

/// rouge_score's `_summary_level_lcs(ref_sent, can_sent)`.
fn summary_level_lcs(ref_sents: &[Vec<String>], can_sents: &[Vec<String>]) -> Score {
    if ref_sents.is_empty() || can_sents.is_empty() {
        return Score::ZERO;
    }
    let m: usize = ref_sents.iter().map(Vec::len).sum();
    let n: usize = can_sents.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return Score::ZERO;
    }
    let mut counts_r: HashMap<&str, usize> = HashMap::new();
    let mut counts_c: HashMap<&str, usize> = HashMap::new();
    for tok in ref_sents.iter().flatten() {
        *counts_r.entry(tok).or_insert(0) += 1;
    }
    for tok in can_sents.iter().flatten() {
        *counts_c.entry(tok).or_insert(0) += 1;
    }
    let mut hits = 0usize;
    for r in ref_sents {
        // Union LCS: sorted union of the LCS indices against every candidate sentence.
        let union: BTreeSet<usize> = can_sents.iter().flat_map(|c| lcs_indices(r, c)).collect();
        for i in union {
            let tok = r[i].as_str();
            // Clip by the remaining counts on both sides to prevent double counting.
            if let (Some(cc), Some(cr)) = (counts_c.get_mut(tok), counts_r.get_mut(tok)) {
                if *cc > 0 && *cr > 0 {
                    hits += 1;
                    *cc -= 1;
                    *cr -= 1;
                }
            }
        }
    }
    Score::from_precision_recall(ratio(hits, n), ratio(hits, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn matches_rouge_score_on_fixture_pairs() {
        let fx = crate::test_fixture("pairs.json");
        let pairs = fx["pairs"].as_array().unwrap();
        assert!(pairs.len() >= 30, "only {} pairs", pairs.len());
        let mut failures = Vec::new();
        for (k, p) in pairs.iter().enumerate() {
            let pred = p["prediction"].as_str().unwrap();
            let refr = p["reference"].as_str().unwrap();
            let want: Vec<f64> = p["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(want.len(), 12);
            let got = score(pred, refr);
            let got: Vec<f64> = got
                .as_array()
                .iter()
                .flat_map(|s| [s.precision, s.recall, s.fmeasure])
                .collect();
            for (c, (g, w)) in got.iter().zip(&want).enumerate() {
                if (g - w).abs() > 1e-9 {
                    failures.push(format!(
                        "pair {k} ({pred:?} vs {refr:?}) column {c}: got {g}, rouge_score {w}"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn ngram_counts_are_clipped() {
        // prediction "the the the the" vs target "the cat the dog": overlap min(4, 2) = 2.
        let s = score_ngrams(&toks("the cat the dog"), &toks("the the the the"), 1);
        assert_eq!((s.precision, s.recall), (0.5, 0.5));
        let s = score_ngrams(&toks("a b"), &toks("a"), 2);
        assert_eq!((s.precision, s.recall, s.fmeasure), (0.0, 0.0, 0.0));
    }

    #[test]
    fn fmeasure_zero_handling() {
        assert_eq!(fmeasure(0.0, 0.0), 0.0);
        assert_eq!(fmeasure(1.0, 0.0), 0.0);
        assert_eq!(fmeasure(0.5, 0.25), 2.0 * 0.5 * 0.25 / 0.75);
    }

    #[test]
    fn lcs_backtrack_tie_breaking() {
        // r = a b, c = b a: both "a" and "b" are LCSs; rouge_score's backtrack moves up in r
        // on ties, so it skips r[1] = "b" and picks r[0] = "a" (values checked with Python).
        assert_eq!(lcs_indices(&toks("a b"), &toks("b a")), vec![0]);
        assert_eq!(
            lcs_indices(&toks("a b c d"), &toks("b c a d")),
            vec![1, 2, 3]
        );
        assert_eq!(lcs_indices(&toks("x y"), &toks("z")), Vec::<usize>::new());
    }

    #[test]
    fn summary_level_uses_union_and_clipping() {
        // Reference sentence "a b c d" vs candidates "a b" and "c d": union LCS covers all 4.
        let s = summary_level_lcs(&[toks("a b c d")], &[toks("a b"), toks("c d")]);
        assert_eq!((s.precision, s.recall), (1.0, 1.0));
        // Each candidate token can be hit once only: "a a" vs candidate "a".
        let s = summary_level_lcs(&[toks("a a")], &[toks("a")]);
        assert_eq!((s.precision, s.recall), (1.0, 0.5));
        // ... also when the hits come from different reference sentences.
        let s = summary_level_lcs(&[toks("a b"), toks("a b"), toks("a")], &[toks("a b")]);
        assert_eq!((s.precision, s.recall), (1.0, 2.0 / 5.0));
        assert_eq!(summary_level_lcs(&[], &[toks("a")]), Score::ZERO);
        assert_eq!(summary_level_lcs(&[vec![]], &[toks("a")]), Score::ZERO);
    }

    #[test]
    fn serializes_with_rouge_score_keys() {
        let v = serde_json::to_value(score("a b", "a c")).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in RougeScores::NAMES {
            assert!(keys.contains(&k), "missing {k} in {keys:?}");
        }
        assert_eq!(keys.len(), 4);
        assert_eq!(v["rougeL"]["precision"], 0.5);
        assert!(v["rougeLsum"]["fmeasure"].is_f64());
    }
}
