//! A sequence classifier directory ready to score texts: the RoBERTa model, its tokenizer and
//! its labels. `detox score` and the PPO reward / toxicity measurement both use it.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use detox_models::RobertaForSequenceClassification;

use crate::tokenizer::pad_batch;
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

    /// Logits `[n][num_labels]` of `texts`, in their order. At most `batch_size` texts go
    /// through one forward pass, grouped by length ([`length_groups`]) so that little of a
    /// pass is padding: a text's logits do not depend on the others in its pass (its attention
    /// mask hides their padding), up to float rounding.
    pub fn logits<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>, HubError> {
        let rows = texts
            .iter()
            .map(|t| self.tokenizer.encode(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(logits_in_groups(
            &self.model,
            &rows,
            self.batch_size,
            self.tokenizer.pad_id,
            &self.device,
        ))
    }
}

/// `model`'s logits `[n][num_labels]` of the token-id `rows`, in their order, at most
/// `max_batch` rows per forward pass in [`length_groups`], each pass right-padded with `pad_id`
/// under its attention mask.
pub fn logits_in_groups<B: Backend>(
    model: &RobertaForSequenceClassification<B>,
    rows: &[Vec<u32>],
    max_batch: usize,
    pad_id: u32,
    device: &B::Device,
) -> Vec<Vec<f32>> {
    let n = model.labels.len();
    let lens: Vec<usize> = rows.iter().map(Vec::len).collect();
    let mut out = vec![Vec::new(); rows.len()];
    for group in length_groups(&lens, max_batch) {
        let batch = pad_batch(group.iter().map(|&i| rows[i].clone()).collect(), pad_id);
        let (ids, mask) = batch.tensors::<B>(device);
        let logits: Vec<f32> = model
            .forward(ids, mask)
            .into_data()
            .convert::<f32>()
            .into_vec()
            .expect("float logits");
        for (&i, l) in group.iter().zip(logits.chunks(n)) {
            out[i] = l.to_vec();
        }
    }
    out
}

/// The forward passes of texts of token lengths `lens`: indices from the longest text to the
/// shortest, at most `max_batch` per pass, and a new pass wherever the next text is shorter
/// than 3/4 of its pass's longest, so that at most a quarter of a pass is padding (a batch of
/// 16 lab texts of 150-500 tokens padded to its longest spends about a third of its work on
/// padding).
pub fn length_groups(lens: &[usize], max_batch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by(|&a, &b| lens[b].cmp(&lens[a]).then(a.cmp(&b)));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match groups.last_mut() {
            Some(g) if g.len() < max_batch.max(1) && 4 * lens[i] >= 3 * lens[g[0]] => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_groups_cover_every_text_once_with_little_padding() {
        let lens = [100, 512, 90, 400, 380, 120, 505, 200, 10, 0];
        let groups = length_groups(&lens, 3);
        let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lens.len()).collect::<Vec<_>>());
        for g in &groups {
            assert!(!g.is_empty() && g.len() <= 3, "{groups:?}");
            let longest = lens[g[0]];
            let work = longest * g.len();
            let padding: usize = g.iter().map(|&i| longest - lens[i]).sum();
            assert!(4 * padding <= work, "{g:?} of {lens:?}");
        }
        assert_eq!(groups[0], vec![1, 6, 3]);
        // one pass when lengths are alike, as many as needed for max_batch
        assert_eq!(length_groups(&[50, 50, 49], 16), vec![vec![0, 1, 2]]);
        assert_eq!(length_groups(&[50, 50, 49], 2).len(), 2);
        assert!(length_groups(&[], 4).is_empty());
    }
}
