//! `detox annotations stats`: statistics over the human judgments that
//! `detox annotations export` writes (JSONL, one [`Judgment`] a line).
//!
//! - [`read_judgments`] reads and validates a file; a bad line is an
//!   [`AgreementError::Line`] naming `FILE:LINE`, what is wrong and what was expected.
//! - [`compute`] gives the [`Stats`]: per model the win rate with its Wilson 95% interval
//!   ([`wilson`]) and the mean / sample std of its ratings ([`likert`]); Krippendorff's alpha of
//!   the preferences (nominal) and of both rating axes (ordinal and interval), as the Python
//!   `krippendorff` package 0.8 computes it ([`krippendorff`]); Cohen's kappa of the preferences
//!   for every pair of annotators with items in common ([`kappa`]).
//! - Serialized with serde, [`Stats`] is the JSON of `--json`; [`render_text`] is the text for
//!   people.
//!
//! One judgment per (annotator, item) counts: when a file has several, the last one wins
//! ([`deduplicate`]).
//!
//! The numbers are checked against the Python reference stack (`krippendorff`, numpy, scipy,
//! scikit-learn) by the fixtures of `tools/make_agreement_fixtures.py`.

mod error;
pub mod judgment;
pub mod kappa;
pub mod krippendorff;
pub mod likert;
mod render;
pub mod stats;
pub mod wilson;

use std::path::Path;

pub use error::AgreementError;
pub use judgment::{
    deduplicate, parse_judgments, read_judgments, Judgment, Preference, Ratings, TIE,
};
pub use likert::Summary;
pub use render::render_text;
pub use stats::{compute, Alphas, Likert, PairKappa, Stats, WinRate};

/// [`read_judgments`] then [`compute`].
pub fn stats_from_file(path: &Path) -> Result<Stats, AgreementError> {
    Ok(compute(&read_judgments(path)?))
}
