//! A sequence classifier directory ready to score texts: the RoBERTa model, its tokenizer and
//! its labels. `detox score` and the PPO reward / toxicity measurement both use it.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use detox_models::RobertaForSequenceClassification;

use crate::{load_roberta, HubError, TextTokenizer};

/// A sequence classifier with its tokenizer, scoring texts in batches.
pub struct Classifier<B: Backend> {
    pub model: RobertaForSequenceClassification<B>,
    /// Inputs longer than the model's positions are truncated on the right (the `truncation=True`
    /// of transformers' text-classification pipeline), with a warning unless
    /// `tokenizer.warn_truncation` is turned off.
    pub tokenizer: TextTokenizer,
    pub batch_size: usize,
    device: B::Device,
    dir: PathBuf,
}

impl<B: Backend> Classifier<B> {
    /// Loads a RoBERTa classifier directory (config.json with `id2label`, weights,
    /// tokenizer.json); `batch_size` texts go through one forward pass.
    pub fn load(dir: &Path, batch_size: usize, device: &B::Device) -> Result<Self, HubError> {
        let model = load_roberta::<B>(dir, device)?;
        let c = &model.config;
        let tokenizer =
            TextTokenizer::from_dir(dir, c.pad_token_id, c.max_input_len(), c.vocab_size)?;
        Ok(Self {
            model,
            tokenizer,
            batch_size: batch_size.max(1),
            device: device.clone(),
            dir: dir.to_path_buf(),
        })
    }

    /// The model's label names, by index (`id2label`).
    pub fn labels(&self) -> &[String] {
        &self.model.labels
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
        let n = self.model.labels.len();
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch_size) {
            let (ids, mask) = self
                .tokenizer
                .encode_batch(chunk)?
                .tensors::<B>(&self.device);
            let logits: Vec<f32> = self
                .model
                .forward(ids, mask)
                .into_data()
                .convert::<f32>()
                .into_vec()
                .expect("float logits");
            out.extend(logits.chunks(n).map(<[f32]>::to_vec));
        }
        Ok(out)
    }
}
