//! `tokenizer.json` through the `tokenizers` crate: special tokens from the file's post-processor
//! (T5 appends `</s>`, RoBERTa wraps in `<s> … </s>`), truncation with a warning, batch padding.

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use burn::prelude::*;

use crate::HubError;

/// A batch of right-padded token ids with its attention mask, row-major `[batch, len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedBatch {
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
    pub batch: usize,
    pub len: usize,
    /// Unpadded ids per row.
    pub rows: Vec<Vec<u32>>,
}

impl EncodedBatch {
    /// `(input_ids, attention_mask)` as `[batch, len]` tensors on `device`.
    pub fn tensors<B: Backend>(
        &self,
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
        let shape = [self.batch, self.len];
        let t = |v: &[i64]| Tensor::from_data(TensorData::new(v.to_vec(), shape), device);
        (t(&self.ids), t(&self.mask))
    }

    /// The `[len(rows), len]` ids and mask tensors of some of the batch's rows.
    pub fn rows_tensors<B: Backend>(
        &self,
        rows: &[usize],
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
        let w = self.len;
        let t = |v: &[i64]| {
            let data: Vec<i64> = rows
                .iter()
                .flat_map(|&r| v[r * w..(r + 1) * w].iter().copied())
                .collect();
            Tensor::from_data(TensorData::new(data, [rows.len(), w]), device)
        };
        (t(&self.ids), t(&self.mask))
    }
}

/// A tokenizer bound to a model: its pad id and the longest input the model takes.
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    pub pad_id: u32,
    pub max_len: usize,
    /// Print a warning when an input is truncated (on by default; batch scorers turn it off).
    pub warn_truncation: bool,
}

impl TextTokenizer {
    /// Loads `dir/tokenizer.json` and checks that its vocabulary fits `model_vocab`.
    pub fn from_dir(
        dir: &Path,
        pad_id: u32,
        max_len: usize,
        model_vocab: usize,
    ) -> Result<Self, HubError> {
        Self::from_file(&dir.join("tokenizer.json"), pad_id, max_len, model_vocab)
    }

    pub fn from_file(
        path: &Path,
        pad_id: u32,
        max_len: usize,
        model_vocab: usize,
    ) -> Result<Self, HubError> {
        if !path.is_file() {
            return Err(HubError::Tokenizer {
                path: path.to_path_buf(),
                msg: "no tokenizer.json here".into(),
            });
        }
        let inner = Tokenizer::from_file(path).map_err(|e| HubError::Tokenizer {
            path: path.to_path_buf(),
            msg: format!("not a valid tokenizer.json: {e}"),
        })?;
        let vocab = inner.get_vocab_size(true);
        if vocab > model_vocab {
            return Err(HubError::Tokenizer {
                path: path.to_path_buf(),
                msg: format!(
                    "the tokenizer has {vocab} tokens but the model's vocab_size is {model_vocab}: they do not belong together"
                ),
            });
        }
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            pad_id,
            max_len,
            warn_truncation: true,
        })
    }

    /// Token ids of one text with the model's special tokens, truncated to `max_len`
    /// (a warning is printed when that happens).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, HubError> {
        let err = |e: tokenizers::Error| HubError::Tokenizer {
            path: self.path.clone(),
            msg: format!("cannot encode text: {e}"),
        };
        let full = self.inner.encode(text, true).map_err(err)?;
        if full.len() <= self.max_len {
            return Ok(full.get_ids().to_vec());
        }
        if self.warn_truncation {
            eprintln!(
                "warning: input of {} tokens truncated to the model's maximum of {}",
                full.len(),
                self.max_len
            );
        }
        let mut tok = self.inner.clone();
        tok.with_truncation(Some(TruncationParams {
            max_length: self.max_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(err)?;
        Ok(tok.encode(text, true).map_err(err)?.get_ids().to_vec())
    }

    /// Encodes and right-pads a batch.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<EncodedBatch, HubError> {
        let rows = texts
            .iter()
            .map(|t| self.encode(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(pad_batch(rows, self.pad_id))
    }

    /// Text of `ids`, special tokens skipped (`skip_special_tokens=True`).
    pub fn decode(&self, ids: &[u32]) -> Result<String, HubError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| HubError::Tokenizer {
                path: self.path.clone(),
                msg: format!("cannot decode ids: {e}"),
            })
    }

    /// Text of `ids` with the special tokens written out (`skip_special_tokens=False`, what
    /// `tokenizer.decode(ids)` gives in transformers).
    pub fn decode_with_special(&self, ids: &[u32]) -> Result<String, HubError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| HubError::Tokenizer {
                path: self.path.clone(),
                msg: format!("cannot decode ids: {e}"),
            })
    }

    /// The id of the token spelled `token` (special tokens included), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// Right-pads rows of ids with `pad_id` into a rectangular batch with its mask.
pub fn pad_batch(rows: Vec<Vec<u32>>, pad_id: u32) -> EncodedBatch {
    let len = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut mask = Vec::with_capacity(rows.len() * len);
    for row in &rows {
        ids.extend(row.iter().map(|&i| i as i64));
        mask.extend(std::iter::repeat_n(1, row.len()));
        ids.extend(std::iter::repeat_n(pad_id as i64, len - row.len()));
        mask.extend(std::iter::repeat_n(0, len - row.len()));
    }
    EncodedBatch {
        ids,
        mask,
        batch: rows.len(),
        len,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_batch_right_pads_and_masks() {
        let b = pad_batch(vec![vec![5, 6, 1], vec![7, 1]], 0);
        assert_eq!((b.batch, b.len), (2, 3));
        assert_eq!(b.ids, vec![5, 6, 1, 7, 1, 0]);
        assert_eq!(b.mask, vec![1, 1, 1, 1, 1, 0]);
    }
}
