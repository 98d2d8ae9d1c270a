//! Training a RoBERTa sequence classifier, as transformers' `Trainer` runs
//! `RobertaForSequenceClassification`: cross-entropy over the labels, AdamW ([`crate::optim`]),
//! linear warmup and decay ([`LinearSchedule`]), global gradient clipping, dropout on while
//! training. Every `eval_every` steps the validation set is scored (loss, accuracy, macro-F1,
//! ROC-AUC: [`crate::classify_metrics`]) and the best model so far by `best_metric` is kept in
//! `best/` (transformers' `load_best_model_at_end` with `metric_for_best_model`).
//!
//! The run directory is laid out as fine-tuning's ([`crate::finetune`]): `metrics.jsonl`,
//! `checkpoint-N/` (model directory + `optimizer.mpk` + `trainer_state.json`), `final/`, the
//! run lock, `--resume`, and SIGINT/SIGTERM stopping after a step with a checkpoint; plus
//! `best/` (the model directory and its `eval_metrics.json`).

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use detox_hub::atomic::write_dir_atomic;
use detox_hub::tokenizer::pad_batch;
use detox_hub::TextTokenizer;
use detox_models::RobertaForSequenceClassification;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    checkpoint_dir, load_optimizer, save_optimizer, write_json_pretty, Checkpointed, LastSave,
    OPTIMIZER_FILE, TRAINER_STATE_FILE,
};
use crate::classify_data::LabeledText;
use crate::classify_metrics::{class_metrics, ClassMetrics};
use crate::data::{BatchStream, StreamPosition};
use crate::finetune::{
    apply_update, io_err, resume_checkpoint, step_seed, Duration, Start, TrainError,
};
use crate::runlock::{open_run_dir, RunLock};
use crate::runlog;
use crate::schedule::LinearSchedule;
use crate::scored_loop::{LoopSettings, ScoredRun};

pub type Roberta<B> = RobertaForSequenceClassification<B>;
type RobertaOptimizer<B> = OptimizerAdaptor<AdamW, Roberta<B>, B>;

const METRICS_FILE: &str = "metrics.jsonl";
/// What a classifier run writes into its directory (`--overwrite` deletes these, and only these).
pub const CLASSIFIER_OUTPUTS: &[&str] = &[
    METRICS_FILE,
    "checkpoint-*",
    "final",
    "best",
    runlog::RUN_INFO_FILE,
];
/// The validation metrics of the model in `best/`.
pub const EVAL_METRICS_FILE: &str = "eval_metrics.json";

/// Which validation number picks the best model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BestMetric {
    Loss,
    Accuracy,
    MacroF1,
    RocAuc,
}

impl BestMetric {
    /// The value of this metric in `e`, oriented so that larger is better.
    fn score(self, e: &EvalResult) -> f64 {
        match self {
            BestMetric::Loss => -e.loss,
            BestMetric::Accuracy => e.metrics.accuracy,
            BestMetric::MacroF1 => e.metrics.macro_f1,
            BestMetric::RocAuc => e.metrics.roc_auc.unwrap_or(f64::NEG_INFINITY),
        }
    }
}

/// The run's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    pub lr: f64,
    pub batch_size: usize,
    pub duration: Duration,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub max_grad_norm: Option<f64>,
    /// Longest input in tokens (also bounded by the model's positions).
    pub max_len: usize,
    pub eval_every: Option<usize>,
    pub save_every: Option<usize>,
    pub log_every: usize,
    pub seed: u64,
    pub best_metric: BestMetric,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            lr: 5e-5,
            batch_size: 32,
            duration: Duration::Epochs(1.0),
            warmup_steps: 0,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
            max_len: 128,
            eval_every: None,
            save_every: None,
            log_every: 10,
            seed: 42,
            best_metric: BestMetric::MacroF1,
        }
    }
}

impl ClassifierConfig {
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
        match self.duration {
            Duration::MaxSteps(0) => bad("--max-steps must be at least 1"),
            Duration::Epochs(e) if !(e.is_finite() && e > 0.0) => bad("--epochs must be positive"),
            _ => Ok(()),
        }
    }

    fn total_steps(&self, n_train: usize) -> usize {
        self.duration.total_steps(n_train, self.batch_size, 1)
    }
}

/// The best validation result so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub step: usize,
    pub score: f64,
}

/// `trainer_state.json` of a classifier checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierState {
    pub step: usize,
    pub total_steps: usize,
    pub stream: StreamPosition,
    pub epoch: f64,
    pub base_model: String,
    pub config: ClassifierConfig,
    pub best: Option<Best>,
    pub optimizer_params: Vec<String>,
}

/// Loss and metrics of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalResult {
    pub loss: f64,
    #[serde(flatten)]
    pub metrics: ClassMetrics,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct ClassifierSummary {
    pub steps: usize,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub best: Option<(Best, PathBuf)>,
    pub final_dir: PathBuf,
    pub last_checkpoint: PathBuf,
}

/// An encoded example: token ids (with `<s>` … `</s>`) and the label index.
#[derive(Debug, Clone)]
struct Encoded {
    ids: Vec<u32>,
    label: usize,
}

/// Mean cross-entropy of `logits` `[batch, classes]` against `labels` `[batch]`
/// (`torch.nn.CrossEntropyLoss()`).
pub fn class_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let picked = log_softmax(logits, 1).gather(1, labels.unsqueeze_dim(1));
    picked.mean().neg()
}

/// A classifier training run: model, optimizer, data and position.
pub struct ClassifierTrainer<B: AutodiffBackend> {
    model: Option<Roberta<B>>,
    optim: RobertaOptimizer<B>,
    cfg: ClassifierConfig,
    schedule: LinearSchedule,
    train: Vec<Encoded>,
    eval: Option<Vec<Encoded>>,
    stream: BatchStream,
    step: usize,
    pad: u32,
    model_dir: PathBuf,
    out: PathBuf,
    device: B::Device,
    best: Option<Best>,
    last_save: LastSave,
    resumed_from: Option<PathBuf>,
    _lock: RunLock,
}

impl<B: AutodiffBackend> ClassifierTrainer<B> {
    /// Loads the model (from the checkpoint when resuming), encodes the data, builds the
    /// optimizer, takes the run directory's lock.
    pub fn new(
        model_dir: &Path,
        train: &[LabeledText],
        eval: Option<&[LabeledText]>,
        out: &Path,
        cfg: ClassifierConfig,
        start: Start,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        if train.is_empty() {
            return Err(TrainError::Config("no training examples".into()));
        }
        let lock = open_run_dir(out, start.run_start(), CLASSIFIER_OUTPUTS)?;
        let checkpoint = resume_checkpoint(out, &start)?;
        let state = checkpoint.as_deref().map(read_state).transpose()?;
        B::seed(device, cfg.seed);
        let model =
            detox_hub::load_roberta::<B>(checkpoint.as_deref().unwrap_or(model_dir), device)?;
        let c = &model.config;
        let mut tok = TextTokenizer::from_dir(
            model_dir,
            c.pad_token_id,
            cfg.max_len.min(c.max_input_len()),
            c.vocab_size,
        )?;
        tok.warn_truncation = false;
        let num_labels = model.labels.len();
        let encode = |rows: &[LabeledText]| -> Result<Vec<Encoded>, TrainError> {
            rows.iter()
                .map(|r| {
                    if r.label >= num_labels {
                        return Err(TrainError::Config(format!(
                            "label index {} of data row {} is outside the model's {num_labels} labels",
                            r.label, r.position
                        )));
                    }
                    Ok(Encoded {
                        ids: tok.encode(&r.text)?,
                        label: r.label,
                    })
                })
                .collect()
        };
        let train = encode(train)?;
        let eval = eval.map(encode).transpose()?;
        let pad = c.pad_token_id;
        let mut optim = crate::optim::adamw(cfg.weight_decay).init::<B, Roberta<B>>();
        if let Some(ck) = &checkpoint {
            optim = load_optimizer(optim, &model, &ck.join(OPTIMIZER_FILE), device)?;
        }
        let total = cfg.total_steps(train.len());
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
            model_dir: model_dir.to_path_buf(),
            out: out.to_path_buf(),
            device: device.clone(),
            resumed_from: checkpoint,
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

    pub fn resumed_from(&self) -> Option<&Path> {
        self.resumed_from.as_deref()
    }

    /// One optimizer step on the next batch; returns `(loss, lr, grad_norm, examples)`.
    pub fn train_step(&mut self) -> Result<(f64, f64, f64, usize), TrainError> {
        let lr = self.schedule.lr(self.step);
        B::seed(&self.device, step_seed(self.cfg.seed, self.step));
        let idx = self.stream.next_indices();
        let rows: Vec<&Encoded> = idx.iter().map(|&i| &self.train[i]).collect();
        let (ids, mask, labels) = batch_tensors::<B>(&rows, self.pad, &self.device);
        let model = self.model.take().expect("model present between steps");
        let loss = class_cross_entropy(model.forward(ids, mask), labels);
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

    /// Logits of every eval example, dropout off, then loss and metrics (`None` without an
    /// eval set).
    pub fn evaluate(&self) -> Option<EvalResult> {
        let eval = self.eval.as_ref()?;
        Some(evaluate_encoded(
            &self.model().valid(),
            eval,
            self.cfg.batch_size,
            self.pad,
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
            let state = ClassifierState {
                step: self.step,
                total_steps: self.schedule.total,
                stream: self.stream.position(),
                epoch: self.stream.epoch_progress(),
                base_model: self.model_dir.display().to_string(),
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

    /// Evaluates; when the result beats the best so far, writes `best/` (model + its metrics).
    fn evaluate_and_keep_best(&mut self) -> Result<Option<EvalResult>, TrainError> {
        let Some(e) = self.evaluate() else {
            return Ok(None);
        };
        if !e.loss.is_finite() {
            return Err(TrainError::NonFinite {
                what: "eval loss",
                value: e.loss,
                step: self.step,
            });
        }
        let score = self.cfg.best_metric.score(&e);
        if self.best.is_none_or(|b| score > b.score) {
            let dir = self.out.join("best");
            let step = self.step;
            write_dir_atomic(&dir, |tmp| {
                self.write_model(tmp)?;
                let path = tmp.join(EVAL_METRICS_FILE);
                let v = serde_json::json!({"step": step, "validation": e});
                write_json_pretty(&path, &v).map_err(io_err(&path))
            })?;
            self.best = Some(Best { step, score });
        }
        Ok(Some(e))
    }

    /// Trains to the end: logs, evaluates (keeping `best/`), checkpoints, writes `final/`.
    pub fn run(&mut self, show_progress: bool) -> Result<ClassifierSummary, TrainError> {
        let metrics = self.out.join(METRICS_FILE);
        let resumed = self.resumed_from.is_some();
        let (first_loss, last_loss) =
            crate::scored_loop::run_scored(self, &metrics, resumed, show_progress)?;
        let last_checkpoint = self.checkpoint_of_step()?;
        let final_dir = self.out.join("final");
        write_dir_atomic(&final_dir, |tmp| self.write_model(tmp))?;
        Ok(ClassifierSummary {
            steps: self.step,
            first_loss,
            last_loss,
            best: self.best.map(|b| (b, self.out.join("best"))),
            final_dir,
            last_checkpoint,
        })
    }
}

/// Ids, mask and labels of `rows`, right-padded with `pad`.
fn batch_tensors<B: Backend>(
    rows: &[&Encoded],
    pad: u32,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, Tensor<B, 1, Int>) {
    let (ids, mask) =
        pad_batch(rows.iter().map(|r| r.ids.clone()).collect(), pad).tensors::<B>(device);
    let labels: Vec<i64> = rows.iter().map(|r| r.label as i64).collect();
    let n = labels.len();
    (
        ids,
        mask,
        Tensor::from_data(TensorData::new(labels, [n]), device),
    )
}

/// Loss and metrics of `model` on `rows`, `batch_size` at a time.
fn evaluate_encoded<B: Backend>(
    model: &Roberta<B>,
    rows: &[Encoded],
    batch_size: usize,
    pad: u32,
    device: &B::Device,
) -> EvalResult {
    let mut logits: Vec<Vec<f32>> = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let rows: Vec<&Encoded> = chunk.iter().collect();
        let (ids, mask, _) = batch_tensors::<B>(&rows, pad, device);
        let out: Vec<f32> = model
            .forward(ids, mask)
            .into_data()
            .convert::<f32>()
            .into_vec()
            .expect("float logits");
        let k = out.len() / chunk.len();
        logits.extend(out.chunks(k).map(<[f32]>::to_vec));
    }
    let labels: Vec<usize> = rows.iter().map(|r| r.label).collect();
    scored(&labels, &logits)
}

/// Mean cross-entropy and the metrics of `logits` against `labels`.
fn scored(labels: &[usize], logits: &[Vec<f32>]) -> EvalResult {
    let loss = logits
        .iter()
        .zip(labels)
        .map(|(l, &y)| -crate::classify_metrics::softmax(l)[y].max(1e-300).ln())
        .sum::<f64>()
        / labels.len().max(1) as f64;
    EvalResult {
        loss,
        metrics: class_metrics(labels, logits),
    }
}

/// The classifier in `dir` ([`detox_hub::Classifier`], inputs cut at `max_len` tokens as in
/// training) scored against `rows`' labels: how a finished run is measured on a held-out set.
pub fn evaluate_dir<B: Backend>(
    dir: &Path,
    rows: &[LabeledText],
    batch_size: usize,
    max_len: usize,
    device: &B::Device,
) -> Result<EvalResult, TrainError> {
    let mut classifier = detox_hub::Classifier::<B>::load(dir, batch_size, device)?;
    classifier.tokenizer.max_len = classifier.tokenizer.max_len.min(max_len);
    classifier.tokenizer.warn_truncation = false;
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let logits = classifier.logits(&texts)?;
    let labels: Vec<usize> = rows.iter().map(|r| r.label).collect();
    Ok(scored(&labels, &logits))
}

fn read_state(dir: &Path) -> Result<ClassifierState, TrainError> {
    let path = dir.join(TRAINER_STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path,
        msg: format!("not a detox classifier trainer state: {e}"),
    })
}

impl<B: AutodiffBackend> ScoredRun for ClassifierTrainer<B> {
    type Eval = EvalResult;

    fn train_step(&mut self) -> Result<(f64, f64, f64, usize), TrainError> {
        ClassifierTrainer::train_step(self)
    }

    fn evaluate_and_keep_best(&mut self) -> Result<Option<EvalResult>, TrainError> {
        ClassifierTrainer::evaluate_and_keep_best(self)
    }

    fn eval_line(&self, e: &EvalResult) -> String {
        format!(
            "eval loss {:.4} accuracy {:.4} macro-F1 {:.4} ROC-AUC {}",
            e.loss,
            e.metrics.accuracy,
            e.metrics.macro_f1,
            e.metrics.roc_auc.map_or("-".into(), |a| format!("{a:.4}"))
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
            rate_key: "examples_per_s",
        }
    }
}

impl<B: AutodiffBackend> Checkpointed for ClassifierTrainer<B> {
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
