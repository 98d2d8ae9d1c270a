//! The reward model of the lab and the toxicity measurement of `evaluate.load("toxicity")`.

use std::path::Path;

use burn::prelude::*;
pub use detox_hub::Classifier;
use detox_hub::HubError;
use serde::{Deserialize, Serialize};

/// What the reward of a text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewardOutput {
    /// The raw logit of the label (the lab: `function_to_apply="none"`).
    #[default]
    Logit,
    /// Its softmax probability.
    Probability,
}

/// The reward model of a PPO run: a classifier loaded without truncation warnings (query +
/// response often exceed its positions; truncating is the documented behaviour here, not worth
/// a line per text).
pub fn load_reward_model<B: Backend>(
    dir: &Path,
    batch_size: usize,
    device: &B::Device,
) -> Result<Classifier<B>, HubError> {
    let mut classifier = Classifier::load(dir, batch_size, device)?;
    classifier.tokenizer.warn_truncation = false;
    Ok(classifier)
}

/// The score of label `label` for each text: its logit or its softmax probability.
pub fn scores<B: Backend, S: AsRef<str>>(
    classifier: &Classifier<B>,
    texts: &[S],
    label: usize,
    output: RewardOutput,
) -> Result<Vec<f32>, HubError> {
    Ok(classifier
        .logits(texts)?
        .into_iter()
        .map(|row| match output {
            RewardOutput::Logit => row[label],
            RewardOutput::Probability => detox_generate::logits::softmax(&row)[label] as f32,
        })
        .collect())
}

/// Mean and population standard deviation (`np.mean`, `np.std`), in `f64`.
pub fn mean_std(xs: &[f32]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// `(after - before) / before * 100`, the lab's "percentage improvement" (with the sign the lab
/// prints: `mean_before - mean_after` over `mean_before`, so a drop in toxicity is positive).
pub fn improvement_pct(before: f64, after: f64) -> f64 {
    (before - after) / before * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_is_numpys_population_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((s - 1.25f64.sqrt()).abs() < 1e-12);
        assert!(mean_std(&[]).0.is_nan());
    }

    #[test]
    fn improvement_is_positive_when_toxicity_drops() {
        assert!((improvement_pct(0.2, 0.1) - 50.0).abs() < 1e-12);
        assert!(improvement_pct(0.1, 0.2) < 0.0);
    }
}
