//! Training a reward model from preference pairs, as trl 0.11's `RewardTrainer` does it: a
//! RoBERTa sequence classifier with one output scores the chosen and the rejected text of each
//! pair (two forward passes, each side padded on its own), the loss is
//! `-logsigmoid(r_chosen - r_rejected - margin).mean()` plus, when set,
//! `center_rewards_coefficient * mean((r_chosen + r_rejected)^2)` ([`pairwise_loss`]); the
//! optimizer, schedule and clipping are transformers' Trainer's (AdamW, linear warmup/decay,
//! global norm). Held-out pairs are scored by trl's `compute_accuracy` ([`pairwise_accuracy`]:
//! the chosen text's reward at least the rejected's).
//!
//! One difference from trl 0.11.4, on purpose: its loss subtracts the batch's margins, shape
//! `[B]`, from rewards of shape `[B, 1]`, which broadcasts to every pair minus every margin; here
//! each pair has its own margin, as trl documents the loss (tools/make_reward_fixtures.py).
//!
//! A model with other than one label gets a fresh one-output head ([`with_reward_head`]:
//! transformers' `num_labels=1, ignore_mismatched_sizes=True`), whose single label names the
//! reward (`detox ppo --reward-label`). The run directory is laid out as the classifier's
//! ([`crate::classifier`]: metrics, checkpoints, `best/`, `final/`, lock, `--resume`); at the end
//! the selected model (`best/` when pairs were held out, else `final/`) is also written at the
//! top of the directory, so the directory itself is a reward model.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Param};
use burn::nn::LinearConfig;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::AutodiffBackend;
use detox_hub::atomic::{write_dir_atomic, write_file_atomic};
use detox_hub::tokenizer::pad_batch;
use detox_hub::TextTokenizer;
use detox_models::init::{draw, Init};
use detox_models::RobertaForSequenceClassification;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    checkpoint_dir, load_optimizer, save_optimizer, write_json_pretty, Checkpointed, LastSave,
    OPTIMIZER_FILE, TRAINER_STATE_FILE,
};
use crate::data::{BatchStream, StreamPosition};
use crate::finetune::{
    apply_update, io_err, resume_checkpoint, step_seed, Duration, Start, TrainError,
};
use crate::preferences::PreferencePair;
use crate::runlock::{open_run_dir, RunLock};
use crate::runlog;
use crate::schedule::LinearSchedule;
use crate::scored_loop::{LoopSettings, ScoredRun};

pub type Roberta<B> = RobertaForSequenceClassification<B>;
type RewardOptimizer<B> = OptimizerAdaptor<AdamW, Roberta<B>, B>;

const METRICS_FILE: &str = "metrics.jsonl";
/// The held-out numbers of the model at the top of the run directory.
pub const REWARD_METRICS_FILE: &str = "reward_metrics.json";
/// The model files written at the top of the run directory at the end.
const MODEL_FILES: &[&str] = &[
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
];
/// What a reward run writes into its directory (`--overwrite` deletes these, and only these).
pub const REWARD_OUTPUTS: &[&str] = &[
    METRICS_FILE,
    "checkpoint-*",
    "final",
    "best",
    REWARD_METRICS_FILE,
    runlog::RUN_INFO_FILE,
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
];

/// `-logsigmoid(chosen - rejected - margin).mean()`, plus `center · mean((chosen + rejected)²)`
/// when `center` is set (trl 0.11's `RewardTrainer.compute_loss`, each pair with its own margin).
pub fn pairwise_loss<B: Backend>(
    chosen: Tensor<B, 1>,
    rejected: Tensor<B, 1>,
    margin: Tensor<B, 1>,
    center: Option<f64>,
) -> Tensor<B, 1> {
    let diff = chosen.clone() - rejected.clone() - margin;
    let loss = log_sigmoid(diff).mean().neg();
    match center {
        Some(c) => loss + (chosen + rejected).powi_scalar(2).mean() * c,
        None => loss,
    }
}

/// [`pairwise_loss`] on host numbers, in `f64` (evaluation).
pub fn pairwise_loss_host(
    chosen: &[f32],
    rejected: &[f32],
    margin: &[f32],
    center: Option<f64>,
) -> f64 {
    let n = chosen.len().max(1) as f64;
    let (mut loss, mut sq) = (0.0, 0.0);
    for ((&c, &r), &m) in chosen.iter().zip(rejected).zip(margin) {
        let x = c as f64 - r as f64 - m as f64;
        // -log σ(x) = softplus(-x), in a form that stays finite for large |x|
        loss += if x >= 0.0 {
            (-x).exp().ln_1p()
        } else {
            x.exp().ln_1p() - x
        };
        sq += (c as f64 + r as f64).powi(2);
    }
    loss / n + center.map_or(0.0, |k| k * sq / n)
}

/// trl's `compute_accuracy`: the share of pairs whose chosen reward is at least the rejected's
/// (`argmax([chosen, rejected]) == 0`; an exact tie counts as right, as argmax takes the first).
pub fn pairwise_accuracy(chosen: &[f32], rejected: &[f32]) -> f64 {
    if chosen.is_empty() {
        return f64::NAN;
    }
    let right = chosen.iter().zip(rejected).filter(|(c, r)| c >= r).count();
    right as f64 / chosen.len() as f64
}

/// `model` with one output named `label`: a model that already has one output keeps its head
/// (and takes the name); any other gets a fresh `out_proj` — weight N(0, initializer_range), bias
/// 0, as transformers initializes a mismatched head — drawn from `seed`. Returns whether the
/// head was replaced.
pub fn with_reward_head<B: Backend>(
    mut model: Roberta<B>,
    label: &str,
    seed: u64,
) -> (Roberta<B>, bool) {
    let replaced = model.labels.len() != 1;
    if replaced {
        let d = model.config.hidden_size;
        let device = model.classifier.out_proj.weight.device();
        let mut head = LinearConfig::new(d, 1).init::<B>(&device);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let w = draw(
            Init::Normal {
                std: model.config.initializer_range,
                zero_row: None,
            },
            &[d, 1],
            &mut rng,
        );
        head.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [d, 1]), &device));
        head.bias = Some(Param::from_tensor(Tensor::zeros([1], &device)));
        model.classifier.out_proj = head;
    }
    model.labels = vec![label.to_string()];
    model.config.num_labels = Some(1);
    model.config.id2label = [("0".to_string(), label.to_string())].into();
    (model, replaced)
}

/// The run's settings (transformers' TrainingArguments defaults where trl keeps them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardConfig {
    pub lr: f64,
    pub batch_size: usize,
    pub duration: Duration,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub max_grad_norm: Option<f64>,
    /// Pairs with a text longer than this many tokens are dropped (trl's `max_length` filter).
    pub max_len: usize,
    pub center_rewards_coefficient: Option<f64>,
    pub eval_every: Option<usize>,
    pub save_every: Option<usize>,
    pub log_every: usize,
    pub seed: u64,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            lr: 5e-5,
            batch_size: 8,
            duration: Duration::Epochs(3.0),
            warmup_steps: 0,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
            max_len: 512,
            center_rewards_coefficient: None,
            eval_every: None,
            save_every: None,
            log_every: 10,
            seed: 42,
        }
    }
}

impl RewardConfig {
    fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("--lr must be a positive number");
        }
        if self.batch_size == 0 || self.log_every == 0 || self.max_len < 3 {
            return bad("--batch-size and --log-every must be at least 1, --max-len at least 3");
        }
        if self.eval_every == Some(0) || self.save_every == Some(0) {
            return bad("--eval-every and --save-every must be at least 1");
        }
        if self
            .center_rewards_coefficient
            .is_some_and(|c| !(c.is_finite() && c >= 0.0))
        {
            return bad("--center-rewards-coefficient must be a number >= 0");
        }
        match self.duration {
            Duration::MaxSteps(0) => bad("--max-steps must be at least 1"),
            Duration::Epochs(e) if !(e.is_finite() && e > 0.0) => bad("--epochs must be positive"),
            _ => Ok(()),
        }
    }
}

/// The best held-out result so far: highest accuracy, then lowest loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub step: usize,
    pub accuracy: f64,
    pub loss: f64,
}

impl Best {
    fn beaten_by(&self, e: &RewardEval) -> bool {
        e.accuracy > self.accuracy || (e.accuracy == self.accuracy && e.loss < self.loss)
    }
}

/// `trainer_state.json` of a reward checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RewardState {
    pub step: usize,
    pub total_steps: usize,
    pub stream: StreamPosition,
    pub epoch: f64,
    pub base_model: String,
    pub label: String,
    pub config: RewardConfig,
    pub best: Option<Best>,
    pub optimizer_params: Vec<String>,
}

/// The held-out numbers of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RewardEval {
    pub loss: f64,
    pub accuracy: f64,
    pub reward_chosen_mean: f64,
    pub reward_rejected_mean: f64,
    pub pairs: usize,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RewardSummary {
    pub steps: usize,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub best: Option<Best>,
    /// The held-out numbers of the model at the top of the run directory (with held-out pairs).
    pub selected: Option<RewardEval>,
    pub final_dir: PathBuf,
}

/// An encoded pair.
#[derive(Debug, Clone)]
pub struct EncodedPair {
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    pub margin: f32,
}

/// Encodes `pairs` with `tok` (no truncation); pairs with a side longer than `max_len` tokens
/// are dropped (trl's example filter). Returns the kept pairs and how many were dropped.
pub fn encode_pairs(
    tok: &TextTokenizer,
    pairs: &[PreferencePair],
    max_len: usize,
) -> Result<(Vec<EncodedPair>, usize), TrainError> {
    let mut kept = Vec::with_capacity(pairs.len());
    let mut dropped = 0;
    for p in pairs {
        let chosen = tok.encode(&p.chosen)?;
        let rejected = tok.encode(&p.rejected)?;
        if chosen.len() > max_len || rejected.len() > max_len {
            dropped += 1;
            continue;
        }
        kept.push(EncodedPair {
            chosen,
            rejected,
            margin: p.margin.unwrap_or(0.0) as f32,
        });
    }
    Ok((kept, dropped))
}

/// Rewards `[batch]` of texts (`rows` of ids, right-padded here).
fn rewards<B: Backend>(
    model: &Roberta<B>,
    rows: Vec<Vec<u32>>,
    pad: u32,
    device: &B::Device,
) -> Tensor<B, 1> {
    let b = rows.len();
    let (ids, mask) = pad_batch(rows, pad).tensors::<B>(device);
    model.forward(ids, mask).reshape([b])
}

/// The loss of `rows` under `model` (trl's `compute_loss`), as a graph.
pub fn batch_loss<B: Backend>(
    model: &Roberta<B>,
    rows: &[&EncodedPair],
    pad: u32,
    center: Option<f64>,
    device: &B::Device,
) -> Tensor<B, 1> {
    let chosen = rewards(
        model,
        rows.iter().map(|r| r.chosen.clone()).collect(),
        pad,
        device,
    );
    let rejected = rewards(
        model,
        rows.iter().map(|r| r.rejected.clone()).collect(),
        pad,
        device,
    );
    let margins: Vec<f32> = rows.iter().map(|r| r.margin).collect();
    let margin = Tensor::from_data(TensorData::new(margins, [rows.len()]), device);
    pairwise_loss(chosen, rejected, margin, center)
}

/// Held-out loss, accuracy and mean rewards of `model` on `rows`, `batch_size` at a time.
pub fn evaluate_pairs<B: Backend>(
    model: &Roberta<B>,
    rows: &[EncodedPair],
    batch_size: usize,
    pad: u32,
    center: Option<f64>,
    device: &B::Device,
) -> RewardEval {
    let host = |t: Tensor<B, 1>| -> Vec<f32> {
        t.into_data().convert::<f32>().into_vec().expect("floats")
    };
    let (mut chosen, mut rejected) = (Vec::new(), Vec::new());
    for chunk in rows.chunks(batch_size.max(1)) {
        chosen.extend(host(rewards(
            model,
            chunk.iter().map(|r| r.chosen.clone()).collect(),
            pad,
            device,
        )));
        rejected.extend(host(rewards(
            model,
            chunk.iter().map(|r| r.rejected.clone()).collect(),
            pad,
            device,
        )));
    }
    let margin: Vec<f32> = rows.iter().map(|r| r.margin).collect();
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
    RewardEval {
        loss: pairwise_loss_host(&chosen, &rejected, &margin, center),
        accuracy: pairwise_accuracy(&chosen, &rejected),
        reward_chosen_mean: mean(&chosen),
        reward_rejected_mean: mean(&rejected),
        pairs: rows.len(),
    }
}

/// A reward-model training run: model, optimizer, data and position.
pub struct RewardTrainer<B: AutodiffBackend> {
    model: Option<Roberta<B>>,
    optim: RewardOptimizer<B>,
    cfg: RewardConfig,
    schedule: LinearSchedule,
    train: Vec<EncodedPair>,
    eval: Vec<EncodedPair>,
    stream: BatchStream,
    step: usize,
    pad: u32,
    label: String,
    model_dir: PathBuf,
    out: PathBuf,
    device: B::Device,
    best: Option<Best>,
    last_save: LastSave,
    resumed_from: Option<PathBuf>,
    /// Pairs dropped for length: (train, held out).
    pub dropped: (usize, usize),
    /// Whether the starting model got a fresh one-output head.
    pub new_head: bool,
    _lock: RunLock,
}

impl<B: AutodiffBackend> RewardTrainer<B> {
    /// Loads the model (from the checkpoint when resuming; else `model_dir` with a reward head
    /// named `label`), encodes the pairs, builds the optimizer, takes the run directory's lock.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model_dir: &Path,
        label: &str,
        train: &[PreferencePair],
        eval: &[PreferencePair],
        out: &Path,
        cfg: RewardConfig,
        start: Start,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        let lock = open_run_dir(out, start.run_start(), REWARD_OUTPUTS)?;
        let checkpoint = resume_checkpoint(out, &start)?;
        let state = checkpoint.as_deref().map(read_state).transpose()?;
        if let Some(s) = &state {
            if s.label != label {
                return Err(TrainError::Config(format!(
                    "the run was started with reward label {:?}, not {label:?}",
                    s.label
                )));
            }
        }
        B::seed(device, cfg.seed);
        let loaded =
            detox_hub::load_roberta::<B>(checkpoint.as_deref().unwrap_or(model_dir), device)?;
        let (model, new_head) = with_reward_head(loaded, label, cfg.seed);
        let c = &model.config;
        let max_len = cfg.max_len.min(c.max_input_len());
        let mut tok = TextTokenizer::from_dir(model_dir, c.pad_token_id, usize::MAX, c.vocab_size)?;
        tok.warn_truncation = false;
        let (train, dropped_train) = encode_pairs(&tok, train, max_len)?;
        let (eval, dropped_eval) = encode_pairs(&tok, eval, max_len)?;
        if train.is_empty() {
            return Err(TrainError::Config(format!(
                "no training pairs (of those given, {dropped_train} are longer than {max_len} tokens)"
            )));
        }
        let pad = c.pad_token_id;
        let mut optim = crate::optim::adamw(cfg.weight_decay).init::<B, Roberta<B>>();
        if let Some(ck) = &checkpoint {
            optim = load_optimizer(optim, &model, &ck.join(OPTIMIZER_FILE), device)?;
        }
        let total = cfg.duration.total_steps(train.len(), cfg.batch_size, 1);
        let pos = state.as_ref().map(|s| s.stream).unwrap_or_default();
        Ok(Self {
            model: Some(model),
            optim,
            schedule: LinearSchedule::new(cfg.lr, cfg.warmup_steps, total),
            stream: BatchStream::at(train.len(), cfg.batch_size, cfg.seed, pos),
            step: state.as_ref().map_or(0, |s| s.step),
            best: state.as_ref().and_then(|s| s.best),
            last_save: checkpoint
                .clone()
                .zip(state.as_ref().map(|s| s.step))
                .map_or_else(LastSave::default, |(d, s)| LastSave::resumed(d, s)),
            train,
            eval,
            pad,
            label: label.to_string(),
            model_dir: model_dir.to_path_buf(),
            out: out.to_path_buf(),
            device: device.clone(),
            resumed_from: checkpoint,
            dropped: (dropped_train, dropped_eval),
            new_head: new_head && state.is_none(),
            cfg,
            _lock: lock,
        })
    }

    pub fn model(&self) -> &Roberta<B> {
        self.model.as_ref().expect("model present between steps")
    }

    pub fn step(&self) -> usize {
        self.step
    }

    pub fn total_steps(&self) -> usize {
        self.schedule.total
    }

    pub fn train_pairs(&self) -> usize {
        self.train.len()
    }

    pub fn eval_pairs(&self) -> usize {
        self.eval.len()
    }

    pub fn resumed_from(&self) -> Option<&Path> {
        self.resumed_from.as_deref()
    }

    /// One optimizer step on the next batch; returns `(loss, lr, grad_norm, pairs)`.
    pub fn train_step(&mut self) -> Result<(f64, f64, f64, usize), TrainError> {
        let lr = self.schedule.lr(self.step);
        B::seed(&self.device, step_seed(self.cfg.seed, self.step));
        let idx = self.stream.next_indices();
        let rows: Vec<&EncodedPair> = idx.iter().map(|&i| &self.train[i]).collect();
        let model = self.model.take().expect("model present between steps");
        let center = self.cfg.center_rewards_coefficient;
        let loss = batch_loss(&model, &rows, self.pad, center, &self.device);
        let value = loss.clone().into_scalar().elem::<f64>();
        if !value.is_finite() {
            self.model = Some(model);
            return Err(TrainError::NonFinite {
                what: "training loss",
                value,
                step: self.step + 1,
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (model, norm) = apply_update(model, &mut self.optim, grads, self.cfg.max_grad_norm, lr);
        self.model = Some(model);
        self.step += 1;
        Ok((value, lr, norm, rows.len()))
    }

    /// The held-out numbers, dropout off (`None` without held-out pairs).
    pub fn evaluate(&self) -> Option<RewardEval> {
        if self.eval.is_empty() {
            return None;
        }
        Some(evaluate_pairs(
            &self.model().valid(),
            &self.eval,
            self.cfg.batch_size,
            self.pad,
            self.cfg.center_rewards_coefficient,
            &self.device,
        ))
    }

    /// Writes the model directory (config, weights, tokenizer) into the existing `dir`.
    fn write_model(&self, dir: &Path) -> Result<(), TrainError> {
        detox_hub::save::write_roberta_files(&self.model().valid(), dir)?;
        detox_hub::copy_companion_files(&self.model_dir, dir)?;
        Ok(())
    }

    /// Writes `checkpoint-{step}` atomically.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf, TrainError> {
        let dir = checkpoint_dir(&self.out, self.step);
        write_dir_atomic(&dir, |tmp| {
            self.write_model(tmp)?;
            let optimizer_params =
                save_optimizer(&self.optim, self.model(), &tmp.join(OPTIMIZER_FILE))?;
            let state = RewardState {
                step: self.step,
                total_steps: self.schedule.total,
                stream: self.stream.position(),
                epoch: self.stream.epoch_progress(),
                base_model: self.model_dir.display().to_string(),
                label: self.label.clone(),
                config: self.cfg.clone(),
                best: self.best,
                optimizer_params,
            };
            let path = tmp.join(TRAINER_STATE_FILE);
            write_json_pretty(&path, &state).map_err(io_err(&path))
        })?;
        self.last_save.saved(self.step);
        Ok(dir)
    }

    /// Evaluates; when the result beats the best so far, writes `best/` (model + its numbers).
    fn evaluate_and_keep_best(&mut self) -> Result<Option<RewardEval>, TrainError> {
        let Some(e) = self.evaluate() else {
            return Ok(None);
        };
        if !e.loss.is_finite() {
            return Err(TrainError::NonFinite {
                what: "held-out loss",
                value: e.loss,
                step: self.step,
            });
        }
        if self.best.is_none_or(|b| b.beaten_by(&e)) {
            let step = self.step;
            write_dir_atomic(&self.out.join("best"), |tmp| {
                self.write_model(tmp)?;
                let path = tmp.join(REWARD_METRICS_FILE);
                let v = serde_json::json!({"step": step, "held_out": e});
                write_json_pretty(&path, &v).map_err(io_err(&path))
            })?;
            self.best = Some(Best {
                step,
                accuracy: e.accuracy,
                loss: e.loss,
            });
        }
        Ok(Some(e))
    }

    /// Copies the model files of `from` (a model directory of this run) to the top of the run
    /// directory, each by temp file + rename, `config.json` last.
    fn publish(&self, from: &Path) -> Result<(), TrainError> {
        for name in MODEL_FILES.iter().chain([&REWARD_METRICS_FILE]) {
            let src = from.join(name);
            if !src.is_file() {
                continue;
            }
            let bytes = std::fs::read(&src).map_err(io_err(&src))?;
            let dst = self.out.join(name);
            write_file_atomic(&dst, &bytes).map_err(io_err(&dst))?;
        }
        Ok(())
    }

    /// Trains to the end: logs, evaluates (keeping `best/`), checkpoints, writes `final/` and the
    /// selected model at the top of the run directory.
    pub fn run(&mut self, show_progress: bool) -> Result<RewardSummary, TrainError> {
        let metrics = self.out.join(METRICS_FILE);
        let resumed = self.resumed_from.is_some();
        let (first_loss, last_loss) =
            crate::scored_loop::run_scored(self, &metrics, resumed, show_progress)?;
        self.checkpoint_of_step()?;
        let final_dir = self.out.join("final");
        write_dir_atomic(&final_dir, |tmp| self.write_model(tmp))?;
        let best_dir = self.out.join("best");
        let selected = if self.best.is_some() && best_dir.is_dir() {
            self.publish(&best_dir)?;
            let path = best_dir.join(REWARD_METRICS_FILE);
            let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
                    path: path.clone(),
                    msg: e.to_string(),
                })?;
            serde_json::from_value::<RewardEval>(v["held_out"].clone()).ok()
        } else {
            self.publish(&final_dir)?;
            None
        };
        Ok(RewardSummary {
            steps: self.step,
            first_loss,
            last_loss,
            best: self.best,
            selected,
            final_dir,
        })
    }
}

fn read_state(dir: &Path) -> Result<RewardState, TrainError> {
    let path = dir.join(TRAINER_STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path,
        msg: format!("not a detox reward trainer state: {e}"),
    })
}

impl<B: AutodiffBackend> ScoredRun for RewardTrainer<B> {
    type Eval = RewardEval;

    fn train_step(&mut self) -> Result<(f64, f64, f64, usize), TrainError> {
        RewardTrainer::train_step(self)
    }

    fn evaluate_and_keep_best(&mut self) -> Result<Option<RewardEval>, TrainError> {
        RewardTrainer::evaluate_and_keep_best(self)
    }

    fn eval_line(&self, e: &RewardEval) -> String {
        format!(
            "held-out loss {:.4} accuracy {:.4} (chosen {:.3}, rejected {:.3})",
            e.loss, e.accuracy, e.reward_chosen_mean, e.reward_rejected_mean
        )
    }

    fn total_steps(&self) -> usize {
        self.schedule.total
    }

    fn epoch_progress(&self) -> f64 {
        self.stream.epoch_progress()
    }

    fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            eval_every: self.cfg.eval_every,
            save_every: self.cfg.save_every,
            log_every: self.cfg.log_every,
            rate_key: "pairs_per_s",
        }
    }
}

impl<B: AutodiffBackend> Checkpointed for RewardTrainer<B> {
    fn steps_done(&self) -> usize {
        self.step
    }

    fn save_checkpoint_dir(&mut self) -> Result<PathBuf, TrainError> {
        self.save_checkpoint()
    }

    fn saved_checkpoint(&self) -> Option<PathBuf> {
        self.last_save.holding(&self.out, self.step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type Cpu = NdArray<f32>;

    fn t(v: &[f32]) -> Tensor<Cpu, 1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Default::default())
    }

    #[test]
    fn the_loss_is_trls_formula_on_graph_and_host() {
        let (c, r, m) = ([1.0f32, -0.5, 2.0], [0.0f32, 0.5, 2.5], [0.0f32, 0.25, 1.0]);
        let want = |center: f64| {
            let mut l = 0.0;
            let mut sq = 0.0;
            for i in 0..3 {
                let x = (c[i] - r[i] - m[i]) as f64;
                l += (1.0 + (-x).exp()).ln();
                sq += ((c[i] + r[i]) as f64).powi(2);
            }
            l / 3.0 + center * sq / 3.0
        };
        for center in [None, Some(0.1)] {
            let got = pairwise_loss(t(&c), t(&r), t(&m), center).into_scalar() as f64;
            let w = want(center.unwrap_or(0.0));
            assert!((got - w).abs() < 1e-6, "{got} vs {w}");
            let host = pairwise_loss_host(&c, &r, &m, center);
            assert!((host - w).abs() < 1e-12, "{host} vs {w}");
        }
        // stays finite far out in both directions
        let big = pairwise_loss_host(&[100.0, -100.0], &[-100.0, 100.0], &[0.0, 0.0], None);
        assert!((big - 100.0).abs() < 1e-9, "{big}");
    }

    #[test]
    fn accuracy_counts_ties_as_right_like_argmax() {
        assert_eq!(
            pairwise_accuracy(&[1.0, 0.0, 2.0, -1.0], &[0.0, 0.0, 3.0, 0.0]),
            0.5
        );
        assert!(pairwise_accuracy(&[], &[]).is_nan());
    }
}
