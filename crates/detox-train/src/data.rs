//! Training data: DialogSum JSONL rows, the lab's instruction template, tokenization with
//! transformers' truncation, padded batches with `-100` labels, and a seeded per-epoch shuffle.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use detox_hub::{HubError, TextTokenizer};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::loss::IGNORE_INDEX;

/// The lab's instruction template; `{dialogue}` is replaced by the dialogue.
pub const DEFAULT_TEMPLATE: &str =
    "Summarize the following conversation.\n\n{dialogue}\n\nSummary: ";

/// What can be wrong with a data file; every variant names the file (and line, and field).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}:{line}: not a JSON object: {msg}")]
    Malformed {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{path}:{line}: missing field `{field}`")]
    MissingField {
        path: PathBuf,
        line: usize,
        field: &'static str,
    },
    #[error("{path}:{line}: field `{field}` must be a string, found {found}")]
    NotAString {
        path: PathBuf,
        line: usize,
        field: &'static str,
        found: String,
    },
    #[error("{path}:{line}: field `{field}` is empty")]
    EmptyField {
        path: PathBuf,
        line: usize,
        field: &'static str,
    },
    #[error("{path}: no examples in this split (the file is empty)")]
    Empty { path: PathBuf },
    #[error("the prompt template must contain `{{dialogue}}`, got {0:?}")]
    Template(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Tokenizer(#[from] HubError),
}

/// An instruction template with one `{dialogue}` slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTemplate(String);

impl Default for PromptTemplate {
    fn default() -> Self {
        Self(DEFAULT_TEMPLATE.to_string())
    }
}

impl PromptTemplate {
    pub fn new(template: impl Into<String>) -> Result<Self, DataError> {
        let t = template.into();
        if !t.contains("{dialogue}") {
            return Err(DataError::Template(t));
        }
        Ok(Self(t))
    }

    pub fn render(&self, dialogue: &str) -> String {
        self.0.replace("{dialogue}", dialogue)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One DialogSum row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub id: Option<String>,
    pub dialogue: String,
    pub summary: String,
    pub topic: Option<String>,
}

fn type_name(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
    .to_string()
}

/// Parses DialogSum JSONL text (`{"id", "dialogue", "summary", "topic"}` per line; `dialogue`
/// and `summary` are required non-empty strings, `id` and `topic` optional strings). Blank lines
/// are skipped. `limit` keeps the first N examples. `path` is only used in error messages.
pub fn parse_jsonl(
    text: &str,
    path: &Path,
    limit: Option<usize>,
) -> Result<Vec<Example>, DataError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if limit.is_some_and(|n| out.len() >= n) {
            break;
        }
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(raw).map_err(|e| DataError::Malformed {
            path: path.to_path_buf(),
            line,
            msg: e.to_string(),
        })?;
        let obj = v.as_object().ok_or_else(|| DataError::Malformed {
            path: path.to_path_buf(),
            line,
            msg: format!("found {}", type_name(&v)),
        })?;
        let get = |field: &'static str, required: bool| -> Result<Option<String>, DataError> {
            match obj.get(field) {
                None | Some(serde_json::Value::Null) if !required => Ok(None),
                None => Err(DataError::MissingField {
                    path: path.to_path_buf(),
                    line,
                    field,
                }),
                Some(serde_json::Value::String(s)) => {
                    if required && s.trim().is_empty() {
                        return Err(DataError::EmptyField {
                            path: path.to_path_buf(),
                            line,
                            field,
                        });
                    }
                    Ok(Some(s.clone()))
                }
                Some(other) => Err(DataError::NotAString {
                    path: path.to_path_buf(),
                    line,
                    field,
                    found: type_name(other),
                }),
            }
        };
        let id = get("id", false)?;
        let dialogue = get("dialogue", true)?.expect("required");
        let summary = get("summary", true)?.expect("required");
        let topic = get("topic", false)?;
        out.push(Example {
            id,
            dialogue,
            summary,
            topic,
        });
    }
    if out.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// Reads a DialogSum JSONL file (see [`parse_jsonl`]).
pub fn read_jsonl(path: &Path, limit: Option<usize>) -> Result<Vec<Example>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|err| DataError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    parse_jsonl(&text, path, limit)
}

/// A tokenized example: source ids and target ids, both ending with the tokenizer's `</s>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    pub input_ids: Vec<u32>,
    pub labels: Vec<u32>,
}

/// Turns examples into token ids as the lab's preprocessing does:
/// `tokenizer(template(dialogue), max_length=max_source_len, truncation=True)` and
/// `tokenizer(text_target=summary, max_length=max_target_len, truncation=True)`.
pub struct Encoder {
    tokenizer: TextTokenizer,
    template: PromptTemplate,
    max_source_len: usize,
    max_target_len: usize,
    /// Special tokens the tokenizer's post-processor appends (T5: `</s>`).
    suffix: Vec<u32>,
}

impl Encoder {
    /// `dir/tokenizer.json` for a model with `pad_id` and `vocab_size`.
    pub fn from_dir(
        dir: &Path,
        pad_id: u32,
        vocab_size: usize,
        template: PromptTemplate,
        max_source_len: usize,
        max_target_len: usize,
    ) -> Result<Self, DataError> {
        // No truncation inside TextTokenizer (it warns per text); done here, as transformers does.
        let tokenizer = TextTokenizer::from_dir(dir, pad_id, usize::MAX, vocab_size)?;
        let suffix = tokenizer.encode("")?;
        if max_source_len <= suffix.len() || max_target_len <= suffix.len() {
            return Err(DataError::Config(format!(
                "--max-source-len and --max-target-len must exceed the {} special token(s) the tokenizer appends",
                suffix.len()
            )));
        }
        Ok(Self {
            tokenizer,
            template,
            max_source_len,
            max_target_len,
            suffix,
        })
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The tokenizer's truncation (`truncation=True`, right side): the text's tokens are cut so
    /// that together with the appended special tokens they fit in `max_len`.
    pub fn truncate(&self, mut ids: Vec<u32>, max_len: usize) -> Vec<u32> {
        if ids.len() <= max_len {
            return ids;
        }
        let n = self.suffix.len();
        let has_suffix = ids.ends_with(&self.suffix);
        if has_suffix {
            ids.truncate(ids.len() - n);
            ids.truncate(max_len - n);
            ids.extend_from_slice(&self.suffix);
        } else {
            ids.truncate(max_len);
        }
        ids
    }

    pub fn encode_source(&self, dialogue: &str) -> Result<Vec<u32>, DataError> {
        self.encode_source_with(&self.template, dialogue)
    }

    /// [`Self::encode_source`] under another instruction template.
    pub fn encode_source_with(
        &self,
        template: &PromptTemplate,
        dialogue: &str,
    ) -> Result<Vec<u32>, DataError> {
        let ids = self.tokenizer.encode(&template.render(dialogue))?;
        Ok(self.truncate(ids, self.max_source_len))
    }

    pub fn encode_target(&self, summary: &str) -> Result<Vec<u32>, DataError> {
        let ids = self.tokenizer.encode(summary)?;
        Ok(self.truncate(ids, self.max_target_len))
    }

    pub fn encode(&self, example: &Example) -> Result<Tokenized, DataError> {
        Ok(Tokenized {
            input_ids: self.encode_source(&example.dialogue)?,
            labels: self.encode_target(&example.summary)?,
        })
    }

    pub fn encode_all(&self, examples: &[Example]) -> Result<Vec<Tokenized>, DataError> {
        examples.iter().map(|e| self.encode(e)).collect()
    }
}

/// A padded batch (`padding="longest"`), row-major: sources padded with `pad`, mask 1/0, labels
/// padded with `-100` (what `DataCollatorForSeq2Seq` builds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub labels: Vec<i64>,
    pub batch: usize,
    pub src_len: usize,
    pub tgt_len: usize,
}

impl Batch {
    pub fn collate(rows: &[&Tokenized], pad_id: u32) -> Self {
        let src_len = rows.iter().map(|r| r.input_ids.len()).max().unwrap_or(0);
        let tgt_len = rows.iter().map(|r| r.labels.len()).max().unwrap_or(0);
        let mut b = Self {
            input_ids: Vec::with_capacity(rows.len() * src_len),
            attention_mask: Vec::with_capacity(rows.len() * src_len),
            labels: Vec::with_capacity(rows.len() * tgt_len),
            batch: rows.len(),
            src_len,
            tgt_len,
        };
        for r in rows {
            let pad = src_len - r.input_ids.len();
            b.input_ids.extend(r.input_ids.iter().map(|&t| t as i64));
            b.input_ids.extend(std::iter::repeat_n(pad_id as i64, pad));
            b.attention_mask
                .extend(std::iter::repeat_n(1, r.input_ids.len()));
            b.attention_mask.extend(std::iter::repeat_n(0, pad));
            b.labels.extend(r.labels.iter().map(|&t| t as i64));
            b.labels
                .extend(std::iter::repeat_n(IGNORE_INDEX, tgt_len - r.labels.len()));
        }
        b
    }

    /// Label tokens the loss counts.
    pub fn num_label_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }

    /// Real (unpadded) source plus label tokens: what tokens/s counts.
    pub fn num_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m == 1).count() + self.num_label_tokens()
    }

    /// `(input_ids, attention_mask, labels)` as tensors.
    pub fn tensors<B: Backend>(
        &self,
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
        let t = |v: &Vec<i64>, len| {
            Tensor::<B, 2, Int>::from_data(TensorData::new(v.clone(), [self.batch, len]), device)
        };
        (
            t(&self.input_ids, self.src_len),
            t(&self.attention_mask, self.src_len),
            t(&self.labels, self.tgt_len),
        )
    }
}

/// The order of `n` examples in epoch `epoch`: a Fisher–Yates shuffle by a `StdRng` seeded from
/// `(seed, epoch)` only, so any epoch can be regenerated (resuming needs no RNG state).
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mixed = seed ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = rand::rngs::StdRng::seed_from_u64(mixed);
    order.shuffle(&mut rng);
    order
}

/// How many batches a length-sorted group spans (transformers' `LengthGroupedSampler`: 50).
pub const MEGABATCH_BATCHES: usize = 50;

/// [`epoch_order`] with transformers' `group_by_length`: the shuffled order is cut into groups of
/// [`MEGABATCH_BATCHES`] · `batch_size` examples and each group is sorted by `lengths`, longest
/// first (ties keep the shuffled order), so a batch holds examples of similar length and pads
/// little; which examples share a group is still random per epoch. As in transformers, the
/// longest example of all is then swapped to the front, so a batch too large for memory fails
/// at once rather than hours in.
pub fn grouped_epoch_order(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Vec<usize> {
    let mut order = epoch_order(lengths.len(), seed, epoch);
    let group = (MEGABATCH_BATCHES * batch_size).max(1);
    for chunk in order.chunks_mut(group) {
        chunk.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    }
    // transformers swaps the longest example (the head of its sorted group) to the very front.
    let longest = (0..order.len().div_ceil(group))
        .max_by_key(|&g| (lengths[order[g * group]], std::cmp::Reverse(g)))
        .unwrap_or(0);
    order.swap(0, longest * group);
    order
}

/// Where a [`BatchStream`] is: epoch and batch index within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StreamPosition {
    pub epoch: u64,
    pub batch: usize,
}

/// Endless micro-batches of example indices: each epoch a fresh [`epoch_order`] cut into
/// `batch_size` chunks (the last one may be smaller, like a DataLoader without `drop_last`).
#[derive(Debug, Clone)]
pub struct BatchStream {
    n: usize,
    batch_size: usize,
    seed: u64,
    pos: StreamPosition,
    order: Vec<usize>,
    /// Example lengths when batches are grouped by length ([`grouped_epoch_order`]).
    lengths: Option<std::sync::Arc<[usize]>>,
}

impl BatchStream {
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Self {
        Self::at(n, batch_size, seed, StreamPosition::default())
    }

    /// A stream continuing from `pos`.
    pub fn at(n: usize, batch_size: usize, seed: u64, pos: StreamPosition) -> Self {
        assert!(
            n > 0 && batch_size > 0,
            "a batch stream needs examples and a batch size"
        );
        Self {
            n,
            batch_size,
            seed,
            pos,
            order: epoch_order(n, seed, pos.epoch),
            lengths: None,
        }
    }

    /// The same stream with each epoch's batches grouped by these example lengths.
    pub fn grouped_by_length(mut self, lengths: Vec<usize>) -> Self {
        assert_eq!(lengths.len(), self.n, "one length per example");
        let lengths: std::sync::Arc<[usize]> = lengths.into();
        self.order = grouped_epoch_order(&lengths, self.batch_size, self.seed, self.pos.epoch);
        self.lengths = Some(lengths);
        self
    }

    fn order_of(&self, epoch: u64) -> Vec<usize> {
        match &self.lengths {
            Some(l) => grouped_epoch_order(l, self.batch_size, self.seed, epoch),
            None => epoch_order(self.n, self.seed, epoch),
        }
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.n.div_ceil(self.batch_size)
    }

    pub fn position(&self) -> StreamPosition {
        self.pos
    }

    /// Fractional epochs consumed so far.
    pub fn epoch_progress(&self) -> f64 {
        self.pos.epoch as f64 + self.pos.batch as f64 / self.batches_per_epoch() as f64
    }

    /// The next batch's example indices.
    pub fn next_indices(&mut self) -> Vec<usize> {
        if self.pos.batch >= self.batches_per_epoch() {
            self.pos = StreamPosition {
                epoch: self.pos.epoch + 1,
                batch: 0,
            };
            self.order = self.order_of(self.pos.epoch);
        }
        let start = self.pos.batch * self.batch_size;
        let end = (start + self.batch_size).min(self.n);
        self.pos.batch += 1;
        self.order[start..end].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("data.jsonl")
    }

    #[test]
    fn reads_dialogsum_rows_and_skips_blank_lines() {
        let text = "{\"id\": \"train_0\", \"dialogue\": \"#Person1#: Hi.\", \"summary\": \"A greeting.\", \"topic\": \"hi\"}\n\n{\"dialogue\": \"d\", \"summary\": \"s\"}\n";
        let ex = parse_jsonl(text, p(), None).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].id.as_deref(), Some("train_0"));
        assert_eq!(ex[0].topic.as_deref(), Some("hi"));
        assert_eq!(ex[1].id, None);
        assert_eq!(parse_jsonl(text, p(), Some(1)).unwrap().len(), 1);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse_jsonl(
            "{\"dialogue\": \"d\", \"summary\": \"s\"}\n{\"dialogue\": \"d\"}\n",
            p(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "data.jsonl:2: missing field `summary`");
        let e = parse_jsonl("{\"dialogue\": \"d\", \"summary\": 3}", p(), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "data.jsonl:1: field `summary` must be a string, found a number"
        );
        let e = parse_jsonl("{\"dialogue\": \" \", \"summary\": \"s\"}", p(), None)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "data.jsonl:1: field `dialogue` is empty");
        let e = parse_jsonl("\n{\"dialogue\": \"d\", \"summ", p(), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("data.jsonl:2: not a JSON object:"), "{e}");
        let e = parse_jsonl("[1, 2]", p(), None).unwrap_err().to_string();
        assert_eq!(e, "data.jsonl:1: not a JSON object: found an array");
        let e = parse_jsonl("\n  \n", p(), None).unwrap_err().to_string();
        assert_eq!(
            e,
            "data.jsonl: no examples in this split (the file is empty)"
        );
        let e = read_jsonl(Path::new("/nonexistent/x.jsonl"), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent/x.jsonl: "), "{e}");
    }

    #[test]
    fn template_needs_the_dialogue_slot() {
        assert_eq!(
            PromptTemplate::default().render("D"),
            "Summarize the following conversation.\n\nD\n\nSummary: "
        );
        assert!(PromptTemplate::new("no slot").is_err());
        assert_eq!(
            PromptTemplate::new("<{dialogue}>").unwrap().render("x"),
            "<x>"
        );
    }

    fn fixture_model() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/t5-tiny")
    }

    #[test]
    fn truncation_is_the_tokenizers_own_keeping_the_final_eos() {
        let dir = fixture_model();
        let text = "#Person1#: Hello, how are you doing today? #Person2#: Fine, thank you, and you? I am going to the market later.";
        for max in [4, 9, 16, 1000] {
            let enc = Encoder::from_dir(&dir, 0, 312, PromptTemplate::default(), 512, max).unwrap();
            let ours = enc.encode_target(text).unwrap();
            // What `tokenizer(text_target=..., max_length=max, truncation=True)` does.
            let mut tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
            tok.with_truncation(Some(tokenizers::TruncationParams {
                max_length: max,
                ..Default::default()
            }))
            .unwrap();
            let want = tok.encode(text, true).unwrap().get_ids().to_vec();
            assert_eq!(ours, want, "max_length {max}");
            assert_eq!(*ours.last().unwrap(), 1, "ends with </s>");
            assert!(ours.len() <= max);
        }
        assert!(Encoder::from_dir(&dir, 0, 312, PromptTemplate::default(), 1, 8).is_err());
    }

    #[test]
    fn collate_pads_sources_and_masks_labels() {
        let a = Tokenized {
            input_ids: vec![5, 6, 1],
            labels: vec![7, 1],
        };
        let b = Tokenized {
            input_ids: vec![8, 1],
            labels: vec![9, 10, 11, 1],
        };
        let batch = Batch::collate(&[&a, &b], 0);
        assert_eq!((batch.batch, batch.src_len, batch.tgt_len), (2, 3, 4));
        assert_eq!(batch.input_ids, vec![5, 6, 1, 8, 1, 0]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 1, 0]);
        assert_eq!(batch.labels, vec![7, 1, -100, -100, 9, 10, 11, 1]);
        assert_eq!(batch.num_label_tokens(), 6);
        assert_eq!(batch.num_tokens(), 11);
    }

    #[test]
    fn shuffles_are_seeded_per_epoch_and_cover_every_example() {
        let a = epoch_order(50, 7, 0);
        assert_eq!(a, epoch_order(50, 7, 0));
        assert_ne!(a, epoch_order(50, 7, 1));
        assert_ne!(a, epoch_order(50, 8, 0));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn grouped_batches_hold_similar_lengths_and_resume() {
        let lengths: Vec<usize> = (0..400).map(|i| (i * 37) % 101 + 1).collect();
        let order = grouped_epoch_order(&lengths, 4, 9, 0);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..400).collect::<Vec<_>>(), "a permutation");
        assert_eq!(lengths[order[0]], 101, "the longest example comes first");
        let group = MEGABATCH_BATCHES * 4;
        for g in order.chunks(group) {
            assert!(g[1..].windows(2).all(|w| lengths[w[0]] >= lengths[w[1]]));
        }
        // Padding: the sum over batches of (batch max - each length) is far below a plain shuffle's.
        let waste = |o: &[usize]| -> usize {
            o.chunks(4)
                .map(|b| {
                    let m = b.iter().map(|&i| lengths[i]).max().unwrap();
                    b.iter().map(|&i| m - lengths[i]).sum::<usize>()
                })
                .sum()
        };
        assert!(waste(&order) * 5 < waste(&epoch_order(400, 9, 0)));
        assert_ne!(order, grouped_epoch_order(&lengths, 4, 9, 1));
        let mut s = BatchStream::new(400, 4, 9).grouped_by_length(lengths.clone());
        let first: Vec<usize> = (0..120).flat_map(|_| s.next_indices()).collect();
        assert_eq!(&first[..400], &order[..]);
        let pos = s.position();
        let mut resumed = BatchStream::at(400, 4, 9, pos).grouped_by_length(lengths);
        assert_eq!(resumed.next_indices(), s.next_indices());
    }

    #[test]
    fn batch_stream_resumes_where_it_stopped() {
        let mut s = BatchStream::new(5, 2, 3);
        assert_eq!(s.batches_per_epoch(), 3);
        let mut seen: Vec<Vec<usize>> = (0..3).map(|_| s.next_indices()).collect();
        assert_eq!(seen[2].len(), 1);
        let mut all: Vec<usize> = seen.concat();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4]);
        seen.push(s.next_indices()); // epoch 1, batch 0
        let pos = s.position();
        assert_eq!(pos, StreamPosition { epoch: 1, batch: 1 });
        let mut resumed = BatchStream::at(5, 2, 3, pos);
        assert_eq!(resumed.next_indices(), s.next_indices());
        assert_eq!(resumed.next_indices(), s.next_indices());
    }
}
