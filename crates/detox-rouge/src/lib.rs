//! ROUGE scores that match Python's `rouge_score` 0.1.2 exactly.
//!
//! The reference is
//!
//! ```python
//! from rouge_score import rouge_scorer
//! scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
//! scorer.score(target=reference, prediction=prediction)
//! ```
//!
//! with NLTK 3.9.1's Porter stemmer. Everything that scorer does is reproduced, including the
//! details that change numbers: its tokenizer ([`tokenize`]), NLTK's Porter stemmer in its
//! default `NLTK_EXTENSIONS` mode ([`PorterStemmer`] — not the Snowball/Porter2 stemmer),
//! clipped n-gram counts, the LCS for rougeL, the summary-level union LCS over `"\n"`-separated
//! sentences for rougeLsum, and `fmeasure = 2PR / (P + R)` (0 when `P + R == 0`). Scores are
//! computed with the same integer counts and float operations, so they agree to the last bit
//! in practice; the parity tests require agreement to 1e-9 on the fixtures in
//! `tests/fixtures/rouge/` (written by `tools/make_rouge_fixtures.py`).
//!
//! # API
//!
//! * [`score`]`(prediction, reference) -> `[`RougeScores`] — the four scores of one pair
//!   (**prediction first**); each a [`Score`] `{precision, recall, fmeasure}`.
//!   `RougeScores` serializes with rouge_score's keys `"rouge1"`, `"rouge2"`, `"rougeL"`,
//!   `"rougeLsum"`.
//! * [`tokenize`]`(text, use_stemmer) -> Vec<String>` — rouge_score's tokenizer.
//! * [`PorterStemmer`]`::new().stem(word) -> String` — NLTK's Porter stemmer.
//! * [`mean_fmeasure`]`(&[RougeScores]) -> `[`RougeMeans`] — mean F-measure per type
//!   (also [`mean_scores`] for mean precision / recall / F-measure).
//! * [`bootstrap`]`(&[RougeScores], n_samples, seed) -> Result<`[`BootstrapScores`]`, _>` —
//!   rouge_score's `BootstrapAggregator` confidence intervals (low / mid / high = 2.5 / 50 /
//!   97.5th percentiles of bootstrap means), seeded and reproducible; the random draws are not
//!   numpy's. [`percentile`] is numpy's default (linear) `percentile`.
//! * [`read_pairs`]`(path)` / [`read_parallel`]`(predictions, references) -> Result<Vec<`[`Example`]`>, `[`FileError`]`>`
//!   — the examples of a JSONL file of `{"prediction", "reference"}` objects, or of two text
//!   files with one text per line; bad input names the file and line.
//!
//! ```
//! let s = detox_rouge::score("The cats were sitting on the mat.", "A cat sat on the mat.");
//! // tokens: [the cat were sit on the mat] vs [a cat sat on the mat]
//! assert_eq!(s.rouge1.precision, 4.0 / 7.0);
//! assert_eq!(s.rouge1.recall, 4.0 / 6.0);
//! let mean = detox_rouge::mean_fmeasure(&[s]);
//! assert_eq!(mean.rouge_l, s.rouge_l.fmeasure);
//! ```

mod aggregate;
mod files;
mod porter;
mod score;
mod tokenize;

pub use aggregate::{
    bootstrap, bootstrap_percentiles, mean_fmeasure, mean_scores, percentile, AggregateError,
    AggregateScore, BootstrapScores, RougeMeans,
};
pub use files::{read_pairs, read_parallel, Example, FileError};
pub use porter::PorterStemmer;
pub use score::{fmeasure, score, RougeScores, Score};
pub use tokenize::tokenize;

/// A JSON fixture of `tests/fixtures/rouge/` (rouge_score's numbers, written by
/// `tools/make_rouge_fixtures.py`).
#[cfg(test)]
pub(crate) fn test_fixture(name: &str) -> serde_json::Value {
    let path = format!(
        "{}/../../tests/fixtures/rouge/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}
