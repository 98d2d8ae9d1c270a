//! The reward model of the lab and the toxicity measurement of `evaluate.load("toxicity")`.

use std::path::Path;

use burn::prelude::*;
use detox_hub::{HubError, TextTokenizer};
use detox_models::RobertaForSequenceClassification;
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

/// A sequence classifier with its tokenizer, scoring texts in batches.
pub struct Classifier<B: Backend> {
    pub model: RobertaForSequenceClassification<B>,
    pub tokenizer: TextTokenizer,
    pub batch_size: usize,
    device: B::Device,
    dir: std::path::PathBuf,
}

impl<B: Backend> Classifier<B> {
    /// Loads a RoBERTa classifier directory (config.json with `id2label`, weights,
    /// tokenizer.json). Inputs longer than the model's positions are truncated (on the right,
    /// like the `truncation=True` of `evaluate`'s toxicity pipeline), silently.
    pub fn load(dir: &Path, batch_size: usize, device: &B::Device) -> Result<Self, HubError> {
        let model = detox_hub::load_roberta::<B>(dir, device)?;
        let c = &model.config;
        let mut tokenizer =
            TextTokenizer::from_dir(dir, c.pad_token_id, c.max_input_len(), c.vocab_size)?;
        // query + response often exceed the classifier's positions; truncating is the
        // documented behaviour here, not worth a line per text
        tokenizer.warn_truncation = false;
        Ok(Self {
            model,
            tokenizer,
            batch_size: batch_size.max(1),
            device: device.clone(),
            dir: dir.to_path_buf(),
        })
    }

    /// The index of the label called `name`, or an error naming the model's labels.
    pub fn label(&self, name: &str) -> Result<usize, HubError> {
        self.model
            .label_index(name)
            .ok_or_else(|| HubError::Config {
                path: self.dir.join("config.json"),
                msg: format!(
                    "the classifier has no label {name:?} in id2label (its labels: {:?})",
                    self.model.labels
                ),
            })
    }

    /// Logits `[n][num_labels]` of `texts`, `batch_size` texts per forward pass.
    pub fn logits<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>, HubError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch_size) {
            let batch = self.tokenizer.encode_batch(chunk)?;
            let (ids, mask) = batch.tensors::<B>(&self.device);
            let logits: Vec<f32> = self
                .model
                .forward(ids, mask)
                .into_data()
                .convert::<f32>()
                .into_vec()
                .expect("float logits");
            let n = self.model.labels.len();
            out.extend(logits.chunks(n).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    /// The score of label `label` for each text: its logit or its softmax probability.
    pub fn scores<S: AsRef<str>>(
        &self,
        texts: &[S],
        label: usize,
        output: RewardOutput,
    ) -> Result<Vec<f32>, HubError> {
        Ok(self
            .logits(texts)?
            .into_iter()
            .map(|row| match output {
                RewardOutput::Logit => row[label],
                RewardOutput::Probability => detox_generate::logits::softmax(&row)[label] as f32,
            })
            .collect())
    }
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
