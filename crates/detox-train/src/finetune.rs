//! The fine-tuning loop: full or LoRA, as transformers' `Seq2SeqTrainer` runs it.
//!
//! One optimizer step = `grad_accum` micro-batches, each `loss / grad_accum` back-propagated
//! (transformers' behaviour for models without `num_items_in_batch` support, such as T5), the
//! gradients summed, clipped to `max_grad_norm` globally ([`crate::clip`]), then AdamW at the
//! lr of [`LinearSchedule`]. Dropout is active during training (the autodiff backend) and off
//! for evaluation (`model.valid()`, the inner backend). In LoRA mode the base model is frozen
//! (`Module::no_grad`) before the adapters are added, so only adapter parameters get gradients
//! and optimizer state.
//!
//! Data order: every epoch is a seeded shuffle of the training set ([`BatchStream`]);
//! micro-batches run on across epoch boundaries, so with `--epochs E` the run has
//! `ceil(E · batches_per_epoch / grad_accum)` steps. Dropout masks are drawn after re-seeding the
//! backend with `(seed, step)` at every step, so a resumed run reproduces an uninterrupted one
//! (to the floating-point noise of multi-threaded CPU kernels, about 1e-6).
//!
//! Output directory:
//! - `metrics.jsonl`: one JSON object per logged step (`step`, `epoch`, `loss` — the mean over
//!   the steps since the last log —, `lr`, `grad_norm` — of the logged step, before clipping —,
//!   `tokens_per_s`, and `eval_loss` when computed: mean token NLL over the whole eval set);
//! - `checkpoint-N/`: the model (peft adapter files, or a transformers model directory with its
//!   tokenizer), `optimizer.mpk` (AdamW moments, burn's named MessagePack recorder, keyed by
//!   parameter path) and `trainer_state.json` (step, data position, seed, config), the files of
//!   [`crate::checkpoint`];
//! - `final/`: the model alone, after the last step;
//! - `.detox.lock`: the run's lock ([`crate::runlock`]), held by the one process writing here.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use detox_hub::atomic::write_dir_atomic;
use detox_hub::models::{load_t5_with_dropout, set_lora_dropout};
use detox_hub::HubError;
use detox_models::{LoraConfig, LoraTarget, T5Config, T5ForConditionalGeneration};
use detox_parallel::Peer;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    checkpoint_dir, latest_checkpoint, load_optimizer, read_trainer_state, save_optimizer,
    write_trainer_state, Checkpointed, LastSave, TrainerState, OPTIMIZER_FILE, TRAINER_STATE_FILE,
};
use crate::clip::{clip_grad_norm, grad_norm};
use crate::data::{Batch, BatchStream, DataError, Encoder, Example, PromptTemplate, Tokenized};
use crate::interrupt::Interrupted;
use crate::loss::{seq2seq_cross_entropy, shift_right, shift_right_row, token_nll};
use crate::runlock::{open_run_dir, RunDirError, RunLock, RunStart};
use crate::runlog;
use crate::schedule::LinearSchedule;

pub type T5<B> = T5ForConditionalGeneration<B>;
/// burn's AdamW over a T5 model.
pub type T5Optimizer<B> = OptimizerAdaptor<AdamW, T5<B>, B>;

const METRICS_FILE: &str = "metrics.jsonl";
/// What a fine-tuning run writes into its directory (`--overwrite` deletes these, and only these).
pub const RUN_OUTPUTS: &[&str] = &[METRICS_FILE, "checkpoint-*", "final", runlog::RUN_INFO_FILE];

/// Everything that stops a fine-tuning run; each names what is at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    Config(String),
    #[error("{path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Parallel(#[from] detox_parallel::ParallelError),
    #[error("the {what} is not finite ({value}) at step {step}: lower --lr or check the data")]
    NonFinite {
        what: &'static str,
        value: f64,
        step: usize,
    },
}

/// Maps an I/O error on `path` to [`TrainError::Io`].
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |err| TrainError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Which parameters train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every parameter.
    Full,
    /// LoRA adapters only; the base model is frozen.
    Lora,
}

/// How long to train.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Duration {
    MaxSteps(usize),
    Epochs(f64),
}

impl Duration {
    /// From `--max-steps` / `--epochs`: the steps when given, else the epochs, else one epoch.
    pub fn from_flags(max_steps: Option<usize>, epochs: Option<f64>) -> Self {
        match (max_steps, epochs) {
            (Some(n), _) => Duration::MaxSteps(n),
            (None, Some(e)) => Duration::Epochs(e),
            (None, None) => Duration::Epochs(1.0),
        }
    }

    /// Optimizer steps for `n_train` examples in batches of `batch_size`, `grad_accum`
    /// batches per step (a partial last batch counts).
    pub fn total_steps(self, n_train: usize, batch_size: usize, grad_accum: usize) -> usize {
        match self {
            Duration::MaxSteps(n) => n,
            Duration::Epochs(e) => {
                let batches = n_train.div_ceil(batch_size) as f64 * e;
                ((batches / grad_accum as f64).ceil() as usize).max(1)
            }
        }
    }
}

/// The run's settings (transformers' `Seq2SeqTrainingArguments` that detox supports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    pub mode: Mode,
    /// The adapter to add in LoRA mode (ignored in full mode).
    pub lora: LoraConfig,
    pub lr: f64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub duration: Duration,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Global gradient-norm clipping; `None` (or 0) turns it off.
    pub max_grad_norm: Option<f64>,
    pub max_source_len: usize,
    pub max_target_len: usize,
    /// Overrides the model config's `dropout_rate` during training.
    pub dropout_rate: Option<f64>,
    pub eval_every: Option<usize>,
    pub save_every: Option<usize>,
    pub log_every: usize,
    pub seed: u64,
    pub template: PromptTemplate,
    /// Batch examples of similar source length together (transformers' `group_by_length`).
    #[serde(default)]
    pub group_by_length: bool,
    /// Also train on one span-corrupted copy of every training dialogue (T5's pre-training
    /// objective, [`crate::denoise`]): for models trained from scratch.
    #[serde(default)]
    pub denoise: bool,
    /// Also train on copying the first N tokens of every training dialogue (source and target:
    /// those tokens, [`crate::copy_task`]): 0 for none.
    #[serde(default)]
    pub copy_prefix: usize,
    /// Replace each decoder input token (after the start token) by `<unk>` with this probability
    /// during training ([`crate::word_dropout`]): 0 for none.
    #[serde(default)]
    pub decoder_word_dropout: f64,
    /// Also train on listing the summary's rare words found in the dialogue
    /// ([`crate::keywords`]): for models trained from scratch.
    #[serde(default)]
    pub keywords: bool,
    /// Weight of the supervised pointer loss ([`crate::pointer`]) added to the summaries' loss:
    /// 0 for none.
    #[serde(default)]
    pub pointer_loss: f64,
    /// How many heads of the last decoder block's cross-attention the pointer loss trains.
    #[serde(default = "one")]
    pub pointer_heads: usize,
}

fn one() -> usize {
    1
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Lora,
            lora: LoraConfig::lab(),
            lr: 1e-3,
            batch_size: 8,
            grad_accum: 1,
            duration: Duration::Epochs(1.0),
            warmup_steps: 0,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
            max_source_len: 512,
            max_target_len: 128,
            dropout_rate: None,
            eval_every: None,
            save_every: None,
            log_every: 10,
            seed: 42,
            template: PromptTemplate::default(),
            group_by_length: false,
            denoise: false,
            copy_prefix: 0,
            decoder_word_dropout: 0.0,
            keywords: false,
            pointer_loss: 0.0,
            pointer_heads: 1,
        }
    }
}

impl FinetuneConfig {
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("--lr must be a positive number, got {}", self.lr));
        }
        if self.batch_size == 0 || self.grad_accum == 0 || self.log_every == 0 {
            return bad("--batch-size, --grad-accum and --log-every must be at least 1".into());
        }
        match self.duration {
            Duration::MaxSteps(0) => return bad("--max-steps must be at least 1".into()),
            Duration::Epochs(e) if !(e.is_finite() && e > 0.0) => {
                return bad(format!("--epochs must be a positive number, got {e}"))
            }
            _ => {}
        }
        if self.max_source_len == 0 || self.max_target_len == 0 {
            return bad("--max-source-len and --max-target-len must be at least 1".into());
        }
        if let Some(n) = self.max_grad_norm {
            if !(n.is_finite() && n > 0.0) {
                return bad(format!(
                    "--max-grad-norm must be a positive number (0 turns clipping off), got {n}"
                ));
            }
        }
        if self.eval_every == Some(0) || self.save_every == Some(0) {
            return bad("--eval-every and --save-every must be at least 1".into());
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "--weight-decay must be >= 0, got {}",
                self.weight_decay
            ));
        }
        if let Some(p) = self.dropout_rate {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("--dropout-rate must be in [0, 1), got {p}"));
            }
        }
        if !(0.0..1.0).contains(&self.decoder_word_dropout) {
            return bad(format!(
                "--decoder-word-dropout must be in [0, 1), got {}",
                self.decoder_word_dropout
            ));
        }
        if !(self.pointer_loss.is_finite() && self.pointer_loss >= 0.0) {
            return bad(format!(
                "--pointer-loss must be >= 0, got {}",
                self.pointer_loss
            ));
        }
        if self.pointer_heads == 0 {
            return bad("--pointer-heads must be at least 1".into());
        }
        if self.mode == Mode::Lora {
            self.lora.validate().map_err(TrainError::Config)?;
        }
        Ok(())
    }

    /// Optimizer steps of the run for `n_train` examples.
    pub fn total_steps(&self, n_train: usize) -> usize {
        self.duration
            .total_steps(n_train, self.batch_size, self.grad_accum)
    }
}

/// One optimizer step's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: usize,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub steps: usize,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub eval_loss: Option<f64>,
    pub final_dir: PathBuf,
    pub last_checkpoint: PathBuf,
}

// ---------------------------------------------------------------------------------------------
// Building blocks (also what the parity tests drive)
// ---------------------------------------------------------------------------------------------

/// Mean token NLL of `batch` (`model(input_ids, attention_mask, labels=labels).loss`).
pub fn batch_loss<B: Backend>(model: &T5<B>, batch: &Batch, device: &B::Device) -> Tensor<B, 1> {
    batch_loss_with(model, batch, None, None, device).0
}

/// What a training loss adds to the summaries' NLL: the supervised pointer
/// ([`crate::pointer`]) with its weight and the number of heads it trains.
#[derive(Debug, Clone, Copy)]
struct PointerTerm {
    weight: f64,
    heads: usize,
}

/// [`batch_loss`] with these decoder input ids (row-major, `batch x tgt_len`) instead of the
/// shifted labels (`None`: the shifted labels). Returns the NLL and the training loss (the NLL
/// plus the weighted pointer loss when `pointer` is given).
fn batch_loss_with<B: Backend>(
    model: &T5<B>,
    batch: &Batch,
    decoder_input_ids: Option<Vec<i64>>,
    pointer: Option<PointerTerm>,
    device: &B::Device,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let (ids, mask, labels) = batch.tensors::<B>(device);
    let c = &model.config;
    let dec = match decoder_input_ids {
        Some(d) => Tensor::from_data(TensorData::new(d, [batch.batch, batch.tgt_len]), device),
        None => shift_right(labels.clone(), c.decoder_start_token_id(), c.pad_token_id),
    };
    let Some(p) = pointer else {
        let nll = seq2seq_cross_entropy(model.forward(ids, mask, dec), labels);
        return (nll.clone(), nll);
    };
    let (logits, weights) = model.forward_with_pointer(ids, mask, dec, p.heads);
    let nll = seq2seq_cross_entropy(logits, labels);
    let align = crate::pointer::alignment(
        &batch.input_ids,
        &batch.labels,
        batch.batch,
        batch.src_len,
        batch.tgt_len,
        c.pad_token_id as i64,
        c.eos_token_id as i64,
    );
    let total = nll.clone() + crate::pointer::pointer_loss(weights, &align) * p.weight;
    (nll, total)
}

/// The decoder inputs of `batch` (its labels shifted right) with word dropout applied
/// ([`crate::word_dropout`]).
fn dropped_decoder_inputs(
    batch: &Batch,
    config: &T5Config,
    p: f64,
    unk: u32,
    rng: &mut impl rand::Rng,
) -> Vec<i64> {
    let (start, pad) = (config.decoder_start_token_id(), config.pad_token_id);
    let mut dec: Vec<i64> = batch
        .labels
        .chunks(batch.tgt_len.max(1))
        .flat_map(|row| shift_right_row(row, start, pad))
        .collect();
    crate::word_dropout::drop_words(&mut dec, batch.tgt_len, p, unk as i64, pad as i64, rng);
    dec
}

/// Forward and backward of one micro-batch, the loss divided by `accum` before backward.
/// Returns the (undivided) loss and the gradients.
pub fn micro_step<B: AutodiffBackend>(
    model: &T5<B>,
    batch: &Batch,
    accum: usize,
    device: &B::Device,
) -> (f64, GradientsParams) {
    micro_step_with(model, batch, None, None, accum, None, device)
}

/// [`micro_step`] with these decoder input ids ([`batch_loss_with`]), the loss also multiplied
/// by `weight` before backward (a data-parallel share's token weight, [`detox_parallel::shard`]).
fn micro_step_with<B: AutodiffBackend>(
    model: &T5<B>,
    batch: &Batch,
    decoder_input_ids: Option<Vec<i64>>,
    pointer: Option<PointerTerm>,
    accum: usize,
    weight: Option<f64>,
    device: &B::Device,
) -> (f64, GradientsParams) {
    let (nll, loss) = batch_loss_with(model, batch, decoder_input_ids, pointer, device);
    let value = nll.into_scalar().elem::<f64>();
    let loss = if accum > 1 { loss / accum as f64 } else { loss };
    let loss = match weight {
        Some(w) => loss * w,
        None => loss,
    };
    (value, GradientsParams::from_grads(loss.backward(), model))
}

/// Clips `grads` globally to `max_grad_norm` (if set) and applies one optimizer step at `lr`.
/// Returns the updated module and the gradient norm before clipping.
pub fn apply_update<B, M, O>(
    model: M,
    optim: &mut O,
    mut grads: GradientsParams,
    max_grad_norm: Option<f64>,
    lr: f64,
) -> (M, f64)
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let norm = match max_grad_norm {
        Some(m) if m > 0.0 => clip_grad_norm(&model, &mut grads, m),
        _ => grad_norm(&model, &grads),
    };
    (optim.step(lr, model, grads), norm)
}

/// Where to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The latest `checkpoint-N` in the output directory.
    Latest,
    Dir(PathBuf),
}

/// How a run starts in its output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A directory that holds no run yet (else refused).
    New,
    /// Delete the run the directory holds, then start afresh (`--overwrite`).
    Overwrite,
    /// Continue a run (`--resume`).
    Resume(Resume),
}

impl Start {
    /// From `--resume [CHECKPOINT]` and `--overwrite` (which clap keeps apart).
    pub fn from_flags(resume: Option<Option<PathBuf>>, overwrite: bool) -> Self {
        match resume {
            Some(Some(dir)) => Start::Resume(Resume::Dir(dir)),
            Some(None) => Start::Resume(Resume::Latest),
            None if overwrite => Start::Overwrite,
            None => Start::New,
        }
    }

    pub(crate) fn run_start(&self) -> RunStart {
        match self {
            Start::New => RunStart::New,
            Start::Overwrite => RunStart::Overwrite,
            Start::Resume(_) => RunStart::Resume,
        }
    }

    fn resume(&self) -> Option<&Resume> {
        match self {
            Start::Resume(r) => Some(r),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The trainer
// ---------------------------------------------------------------------------------------------

/// A fine-tuning run: model, optimizer, data and position.
pub struct Trainer<B: AutodiffBackend> {
    model: Option<T5<B>>,
    optim: T5Optimizer<B>,
    cfg: FinetuneConfig,
    lora: Option<LoraConfig>,
    schedule: LinearSchedule,
    train: Vec<Tokenized>,
    eval: Option<Vec<Tokenized>>,
    stream: BatchStream,
    step: usize,
    pad: u32,
    /// The tokenizer's `<unk>` (what decoder word dropout puts in), when it has one.
    unk: Option<u32>,
    model_dir: PathBuf,
    out: PathBuf,
    device: B::Device,
    last_save: LastSave,
    resumed_from: Option<PathBuf>,
    /// The output directory's lock, held for the trainer's life (by the main peer only: a
    /// data-parallel replica writes nothing).
    _lock: Option<RunLock>,
    /// This trainer's place in a data-parallel run (`None`: it trains alone).
    peer: Option<Peer>,
}

impl<B: AutodiffBackend> Trainer<B> {
    /// Loads the model (and, when resuming, the checkpoint), tokenizes the data, builds the
    /// optimizer. Of the output directory, only its lock ([`crate::runlock`]) is written yet
    /// (and, with [`Start::Overwrite`], the previous run deleted).
    pub fn new(
        model_dir: &Path,
        train: &[Example],
        eval: Option<&[Example]>,
        out: &Path,
        cfg: FinetuneConfig,
        start: Start,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        Self::build(model_dir, train, eval, out, cfg, start, device, true)
    }

    /// A data-parallel replica of the run the main peer's [`Trainer::new`] sets up in `out`: the
    /// same model, data and (when resuming) checkpoint, but it takes no lock and writes nothing;
    /// it only trains ([`Trainer::run_replica`]). Build it after the main peer's trainer, then
    /// give each its [`Peer`] ([`Trainer::set_peer`]).
    #[allow(clippy::too_many_arguments)]
    pub fn replica(
        model_dir: &Path,
        train: &[Example],
        eval: Option<&[Example]>,
        out: &Path,
        cfg: FinetuneConfig,
        start: Start,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let start = match start {
            // the main peer deletes the previous run; a replica starts afresh
            Start::Overwrite => Start::New,
            s => s,
        };
        Self::build(model_dir, train, eval, out, cfg, start, device, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        model_dir: &Path,
        train: &[Example],
        eval: Option<&[Example]>,
        out: &Path,
        cfg: FinetuneConfig,
        start: Start,
        device: &B::Device,
        main: bool,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        let data = tokenize(model_dir, train, eval, &cfg)?;
        let lock = if main {
            Some(open_run_dir(out, start.run_start(), RUN_OUTPUTS)?)
        } else {
            None
        };
        let checkpoint = resume_checkpoint(out, &start)?;
        let state = checkpoint.as_deref().map(read_trainer_state).transpose()?;
        if let Some(s) = &state {
            check_resumed_state(s, &cfg)?;
        }

        let (model, lora) = {
            let _draws = detox_parallel::seeded_draws();
            B::seed(device, cfg.seed);
            load_model::<B>(model_dir, checkpoint.as_deref(), &cfg, device)?
        };
        let mut cfg = cfg;
        if let Some(lc) = &lora {
            // Checkpoints record the adapter actually trained (on resume: the checkpoint's).
            cfg.lora = lc.clone();
        }
        let mut optim = crate::optim::adamw(cfg.weight_decay).init::<B, T5<B>>();
        if let Some(ck) = &checkpoint {
            optim = load_optimizer(optim, &model, &ck.join(OPTIMIZER_FILE), device)?;
        }

        let total = cfg.total_steps(data.train.len());
        let pos = state.as_ref().map(|s| s.stream).unwrap_or_default();
        let step = state.as_ref().map_or(0, |s| s.step);
        Ok(Self {
            model: Some(model),
            optim,
            schedule: LinearSchedule::new(cfg.lr, cfg.warmup_steps, total),
            stream: {
                let stream = BatchStream::at(data.train.len(), cfg.batch_size, cfg.seed, pos);
                if cfg.group_by_length {
                    stream.grouped_by_length(data.train.iter().map(|t| t.input_ids.len()).collect())
                } else {
                    stream
                }
            },
            train: data.train,
            eval: data.eval,
            step,
            pad: data.pad_token_id,
            unk: data.unk_token_id,
            model_dir: model_dir.to_path_buf(),
            out: out.to_path_buf(),
            device: device.clone(),
            last_save: checkpoint
                .clone()
                .zip(state.as_ref().map(|s| s.step))
                .map_or_else(LastSave::default, |(d, s)| LastSave::resumed(d, s)),
            resumed_from: checkpoint,
            lora,
            cfg,
            _lock: lock,
            peer: None,
        })
    }

    /// Makes this trainer `peer` of a data-parallel run: each step it trains on its share of
    /// every micro-batch and sums its token-weighted gradients with the other peers' before the
    /// (identical) update. Every replica first takes the main peer's parameters
    /// ([`Peer::broadcast_module`]), so they start equal whatever their initialization drew.
    pub fn set_peer(&mut self, peer: Peer) -> Result<(), TrainError> {
        let model = self.model.take().expect("model present between steps");
        self.model = Some(peer.broadcast_module(model)?);
        self.peer = Some(peer);
        Ok(())
    }

    /// Trains a data-parallel replica to the end: the steps only (the main peer logs, evaluates
    /// and checkpoints). It stops when the run ends or when a collective operation fails (the
    /// main peer stopped).
    pub fn run_replica(&mut self) -> Result<(), TrainError> {
        while self.step < self.schedule.total {
            self.train_step()?;
        }
        Ok(())
    }

    /// Drops the optimizer state (AdamW moments): the next step starts them afresh.
    pub fn reset_optimizer(&mut self) {
        self.optim = crate::optim::adamw(self.cfg.weight_decay).init::<B, T5<B>>();
    }

    pub fn model(&self) -> &T5<B> {
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

    pub fn epoch(&self) -> f64 {
        self.stream.epoch_progress()
    }

    pub fn num_train_examples(&self) -> usize {
        self.train.len()
    }

    /// `(trainable, all)` parameter counts (peft's `get_nb_trainable_parameters`).
    pub fn parameter_counts(&self) -> (usize, usize) {
        let mut m = self.model().clone();
        let all = m.num_params();
        match self.cfg.mode {
            Mode::Full => (all, all),
            Mode::Lora => (m.lora_param_count(), all),
        }
    }

    /// One optimizer step over `grad_accum` micro-batches.
    pub fn train_step(&mut self) -> Result<StepStats, TrainError> {
        let lr = self.schedule.lr(self.step);
        let seed = step_seed(self.cfg.seed, self.step);
        B::seed(&self.device, seed);
        let model = self.model.take().expect("model present between steps");
        let mut accum = GradientsAccumulator::<T5<B>>::new();
        let (mut loss_sum, mut tokens) = (0.0, 0);
        for micro in 0..self.cfg.grad_accum {
            let idx = self.stream.next_indices();
            let rows: Vec<&Tokenized> = idx.iter().map(|&i| &self.train[i]).collect();
            tokens += rows
                .iter()
                .map(|r| r.input_ids.len() + r.labels.len())
                .sum::<usize>();
            let (rows, weight) = match &self.peer {
                None => (rows, None),
                Some(p) => peer_share(rows, p),
            };
            let batch = Batch::collate(&rows, self.pad);
            let dec = self
                .unk
                .filter(|_| self.cfg.decoder_word_dropout > 0.0)
                .map(|unk| {
                    let rank = self.peer.as_ref().map_or(0, |p| p.rank);
                    let mut rng = crate::word_dropout::micro_batch_rng(seed, micro + rank);
                    let p = self.cfg.decoder_word_dropout;
                    dropped_decoder_inputs(&batch, &model.config, p, unk, &mut rng)
                });
            let pointer = (self.cfg.pointer_loss > 0.0).then_some(PointerTerm {
                weight: self.cfg.pointer_loss,
                heads: self.cfg.pointer_heads,
            });
            let (loss, grads) = micro_step_with(
                &model,
                &batch,
                dec,
                pointer,
                self.cfg.grad_accum,
                weight,
                &self.device,
            );
            loss_sum += loss * weight.unwrap_or(1.0);
            accum.accumulate(&model, grads);
        }
        let mut grads = accum.grads();
        if let Some(p) = &self.peer {
            // the step's loss and gradients over the whole batch: the shares' weighted sums
            grads = match p.all_reduce_grads(&model, grads, &self.device) {
                Ok(g) => g,
                Err(e) => {
                    self.model = Some(model);
                    return Err(e.into());
                }
            };
            loss_sum =
                p.all_reduce_sum::<B::InnerBackend>(&[loss_sum as f32], &self.device)?[0] as f64;
        }
        let loss = loss_sum / self.cfg.grad_accum as f64;
        if !loss.is_finite() {
            self.model = Some(model);
            return Err(TrainError::NonFinite {
                what: "training loss",
                value: loss,
                step: self.step + 1,
            });
        }
        let (model, norm) = apply_update(model, &mut self.optim, grads, self.cfg.max_grad_norm, lr);
        self.model = Some(model);
        self.step += 1;
        if !norm.is_finite() {
            return Err(TrainError::NonFinite {
                what: "gradient norm",
                value: norm,
                step: self.step,
            });
        }
        Ok(StepStats {
            loss,
            lr,
            grad_norm: norm,
            tokens,
        })
    }

    /// Mean token NLL over the eval set, dropout off (`None` without an eval set).
    pub fn evaluate(&self) -> Option<f64> {
        let eval = self.eval.as_ref()?;
        let model = self.model().valid();
        let (mut nll, mut count) = (0.0f64, 0usize);
        for chunk in eval.chunks(self.cfg.batch_size) {
            let rows: Vec<&Tokenized> = chunk.iter().collect();
            let batch = Batch::collate(&rows, self.pad);
            let (ids, mask, labels) = batch.tensors::<B::InnerBackend>(&self.device);
            let c = &model.config;
            let dec = shift_right(labels.clone(), c.decoder_start_token_id(), c.pad_token_id);
            let s = token_nll(model.forward(ids, mask, dec), labels)
                .sum()
                .into_scalar();
            nll += s.elem::<f64>();
            count += batch.num_label_tokens();
        }
        Some(nll / count.max(1) as f64)
    }

    /// Writes the model alone into the existing directory `dir`.
    fn write_model(&self, dir: &Path) -> Result<(), TrainError> {
        let model = self.model().valid();
        match &self.lora {
            Some(lc) => {
                let to_hf = detox_hub::models::t5_name_map_to_hf();
                detox_hub::write_adapter_files(&model, lc, dir, &to_hf)?;
            }
            None => {
                detox_hub::save::write_t5_files(&model, dir)?;
                detox_hub::copy_companion_files(&self.model_dir, dir)?;
            }
        }
        Ok(())
    }

    /// Writes `checkpoint-{step}` atomically: model, optimizer state, trainer state.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf, TrainError> {
        let dir = checkpoint_dir(&self.out, self.step);
        write_dir_atomic(&dir, |tmp| {
            self.write_model(tmp)?;
            let optimizer_params =
                save_optimizer(&self.optim, self.model(), &tmp.join(OPTIMIZER_FILE))?;
            let state = TrainerState {
                step: self.step,
                total_steps: self.schedule.total,
                stream: self.stream.position(),
                epoch: self.stream.epoch_progress(),
                base_model: self.model_dir.display().to_string(),
                config: self.cfg.clone(),
                optimizer_params,
            };
            write_trainer_state(tmp, &state)
        })?;
        self.last_save.saved(self.step);
        Ok(dir)
    }

    /// Writes the model alone to `dir`, atomically (a peft adapter dir, or a transformers model
    /// dir with the base model's tokenizer files).
    pub fn save_model(&self, dir: &Path) -> Result<(), TrainError> {
        write_dir_atomic(dir, |tmp| self.write_model(tmp))
    }

    fn append_metrics(&self, row: &MetricsRow) -> Result<(), TrainError> {
        let path = self.out.join(METRICS_FILE);
        runlog::append_jsonl(&path, row).map_err(io_err(&path))
    }

    /// Drops metrics rows past the resumed step (left by a run that stopped after its last
    /// checkpoint), so the file reads as one run.
    fn trim_metrics(&self) -> Result<(), TrainError> {
        let path = self.out.join(METRICS_FILE);
        runlog::trim_jsonl_to_step(&path, self.step).map_err(io_err(&path))
    }

    /// Trains to the end: logs, evaluates, checkpoints, and writes `OUT/final`.
    pub fn run(&mut self, show_progress: bool) -> Result<RunSummary, TrainError> {
        if self.resumed_from.is_some() {
            self.trim_metrics()?;
        }
        let total = self.schedule.total;
        let pb = runlog::progress_bar(total, self.step, show_progress);
        let (mut first_loss, mut last_loss, mut eval_loss) = (None, None, None);
        let mut window = LogWindow::new();
        while self.step < total {
            let s = self.train_step()?;
            first_loss.get_or_insert(s.loss);
            last_loss = Some(s.loss);
            window.add(&s);
            let tps = window.tokens_per_s();
            pb.set_position(self.step as u64);
            pb.set_message(format!(
                "loss {:.4} lr {:.2e} {:.0} tok/s",
                s.loss, s.lr, tps
            ));
            if let Some(e) = self.log_step(&s, tps, &mut window, &pb)? {
                eval_loss = Some(e);
            }
            crate::checkpoint::after_step(self, self.cfg.save_every, total, &pb)?;
        }
        pb.finish_and_clear();
        let last_checkpoint = self.checkpoint_of_step()?;
        let final_dir = self.out.join("final");
        self.save_model(&final_dir)?;
        Ok(RunSummary {
            steps: self.step,
            first_loss,
            last_loss,
            eval_loss,
            final_dir,
            last_checkpoint,
        })
    }

    /// After the step just done: when it is logged (every `log_every` steps and at the end) or
    /// evaluated (every `eval_every` steps and at the end, with an eval set), appends its metrics
    /// row, and when logged starts a new `window`. Returns the eval loss if computed.
    fn log_step(
        &mut self,
        s: &StepStats,
        tokens_per_s: f64,
        window: &mut LogWindow,
        pb: &ProgressBar,
    ) -> Result<Option<f64>, TrainError> {
        let at_end = self.step == self.schedule.total;
        let eval_due = at_end || self.cfg.eval_every.is_some_and(|n| self.step % n == 0);
        let do_log = at_end || self.step % self.cfg.log_every == 0;
        // `evaluate` is None without an eval set
        let eval_loss = if eval_due { self.evaluate() } else { None };
        if !do_log && eval_loss.is_none() {
            return Ok(None);
        }
        let row = MetricsRow {
            epoch: (self.stream.epoch_progress() * 1e4).round() / 1e4,
            eval_loss,
            grad_norm: s.grad_norm,
            loss: window.mean_loss(),
            lr: s.lr,
            step: self.step,
            tokens_per_s,
        };
        if let Some(e) = eval_loss {
            if !e.is_finite() {
                return Err(TrainError::NonFinite {
                    what: "eval loss",
                    value: e,
                    step: self.step,
                });
            }
            pb.suspend(|| eprintln!("step {}: eval_loss {e:.4}", self.step));
        }
        self.append_metrics(&row)?;
        if do_log {
            *window = LogWindow::new();
        }
        Ok(eval_loss)
    }
}

/// One row of `metrics.jsonl` (fields in the order the file has always had: by name).
#[derive(Debug, Clone, Serialize)]
struct MetricsRow {
    epoch: f64,
    /// Only on evaluated steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_loss: Option<f64>,
    grad_norm: f64,
    loss: f64,
    lr: f64,
    step: usize,
    tokens_per_s: f64,
}

/// The steps since the last logged one: the logged loss is their mean, the token rate theirs.
struct LogWindow {
    loss: f64,
    steps: usize,
    tokens: usize,
    start: Instant,
}

impl LogWindow {
    fn new() -> Self {
        Self {
            loss: 0.0,
            steps: 0,
            tokens: 0,
            start: Instant::now(),
        }
    }

    fn add(&mut self, s: &StepStats) {
        self.loss += s.loss;
        self.steps += 1;
        self.tokens += s.tokens;
    }

    fn mean_loss(&self) -> f64 {
        self.loss / self.steps as f64
    }

    fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.start.elapsed().as_secs_f64().max(1e-9)
    }
}

/// A run's examples, tokenized for its model.
struct TokenizedData {
    pad_token_id: u32,
    unk_token_id: Option<u32>,
    /// Never empty.
    train: Vec<Tokenized>,
    eval: Option<Vec<Tokenized>>,
}

/// The training and eval examples tokenized for the model in `model_dir` (whose config is
/// checked).
fn tokenize(
    model_dir: &Path,
    train: &[Example],
    eval: Option<&[Example]>,
    cfg: &FinetuneConfig,
) -> Result<TokenizedData, TrainError> {
    let config: T5Config = detox_hub::read_config(model_dir)?;
    config.validate().map_err(|msg| HubError::Config {
        path: model_dir.join("config.json"),
        msg,
    })?;
    let encoder = Encoder::from_dir(
        model_dir,
        config.pad_token_id,
        config.vocab_size,
        cfg.template.clone(),
        cfg.max_source_len,
        cfg.max_target_len,
    )?;
    let mut train_tok = encoder.encode_all(train)?;
    train_tok.extend(from_scratch_examples(
        &encoder,
        train,
        cfg,
        config.eos_token_id,
    )?);
    let eval_tok = eval.map(|e| encoder.encode_all(e)).transpose()?;
    if train_tok.is_empty() {
        return Err(TrainError::Config("no training examples".into()));
    }
    let unk_token_id = encoder.tokenizer().token_id("<unk>");
    if cfg.decoder_word_dropout > 0.0 && unk_token_id.is_none() {
        return Err(TrainError::Config(
            "--decoder-word-dropout needs an <unk> token in the model's tokenizer".into(),
        ));
    }
    Ok(TokenizedData {
        pad_token_id: config.pad_token_id,
        unk_token_id,
        train: train_tok,
        eval: eval_tok,
    })
}

/// The examples of the from-scratch objectives, each training dialogue tokenized once (its own
/// tokens, no template): with `--denoise` one span-corrupted copy of each, seeded by the run's
/// seed and the example's index (the same on every resume), then with `--copy-prefix N` one copy
/// example of each.
fn from_scratch_examples(
    encoder: &Encoder,
    train: &[Example],
    cfg: &FinetuneConfig,
    eos: u32,
) -> Result<Vec<Tokenized>, TrainError> {
    if !cfg.denoise && cfg.copy_prefix == 0 && !cfg.keywords {
        return Ok(Vec::new());
    }
    let sentinel = if cfg.denoise {
        Some(
            encoder
                .tokenizer()
                .token_id("<extra_id_0>")
                .ok_or_else(|| {
                    TrainError::Config(
                        "--denoise needs T5's sentinel tokens (<extra_id_0>, ...) in the tokenizer"
                            .into(),
                    )
                })?,
        )
    } else {
        None
    };
    let dialogues = train
        .iter()
        .map(|e| dialogue_ids(encoder, e, eos))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    if let Some(sentinel) = sentinel {
        out.extend(dialogues.iter().enumerate().map(|(i, ids)| {
            let ids = &ids[..ids.len().min(cfg.max_source_len - 1)];
            let mut rng = crate::denoise::example_rng(cfg.seed, i);
            let mut ex = crate::denoise::span_corrupt(ids, 0.15, 3.0, sentinel, eos, &mut rng);
            ex.labels = encoder.truncate(ex.labels, cfg.max_target_len);
            ex
        }));
    }
    if cfg.copy_prefix > 0 {
        let max_len = cfg.max_source_len.min(cfg.max_target_len);
        out.extend(
            dialogues
                .iter()
                .map(|ids| crate::copy_task::copy_prefix(ids, cfg.copy_prefix, max_len, eos)),
        );
    }
    if cfg.keywords {
        out.extend(keyword_examples(encoder, train)?);
    }
    Ok(out)
}

/// One keyword example ([`crate::keywords`]) per training example whose summary has keywords.
fn keyword_examples(encoder: &Encoder, train: &[Example]) -> Result<Vec<Tokenized>, TrainError> {
    use crate::keywords::{keyword_target, SummaryWordFrequency, KEYWORDS_TEMPLATE};
    let freq = SummaryWordFrequency::new(train.iter().map(|e| e.summary.as_str()));
    let template = PromptTemplate::new(KEYWORDS_TEMPLATE)?;
    let mut out = Vec::new();
    for e in train {
        let target = keyword_target(&e.summary, &e.dialogue, &freq);
        if target.is_empty() {
            continue;
        }
        out.push(Tokenized {
            input_ids: encoder.encode_source_with(&template, &e.dialogue)?,
            labels: encoder.encode_target(&target)?,
        });
    }
    Ok(out)
}

/// The ids of an example's dialogue as it stands (no template), without the final `eos`.
fn dialogue_ids(encoder: &Encoder, e: &Example, eos: u32) -> Result<Vec<u32>, TrainError> {
    let mut ids = encoder.tokenizer().encode(&e.dialogue)?;
    if ids.last() == Some(&eos) {
        ids.pop();
    }
    Ok(ids)
}

/// The checkpoint a `--resume` run continues from (`None` for a run that starts afresh).
pub(crate) fn resume_checkpoint(out: &Path, start: &Start) -> Result<Option<PathBuf>, TrainError> {
    Ok(match start.resume() {
        None => None,
        Some(Resume::Latest) => Some(latest_checkpoint(out).ok_or_else(|| {
            TrainError::Config(format!(
                "--resume: no checkpoint-N directory with {TRAINER_STATE_FILE} in {}",
                out.display()
            ))
        })?),
        Some(Resume::Dir(d)) => Some(d.clone()),
    })
}

/// A checkpoint of another `--mode` is refused; another batch size or seed only warned about.
fn check_resumed_state(state: &TrainerState, cfg: &FinetuneConfig) -> Result<(), TrainError> {
    if state.config.mode != cfg.mode {
        return Err(TrainError::Config(format!(
            "--resume: the checkpoint was trained with --mode {:?}, this run asks for {:?}",
            state.config.mode, cfg.mode
        )));
    }
    if state.config.batch_size != cfg.batch_size
        || state.config.seed != cfg.seed
        || state.config.group_by_length != cfg.group_by_length
        || state.config.denoise != cfg.denoise
        || state.config.copy_prefix != cfg.copy_prefix
        || state.config.keywords != cfg.keywords
    {
        eprintln!(
            "warning: resuming with a different --batch-size, --seed, --group-by-length, --denoise, --copy-prefix or --keywords than the checkpoint's: the data order changes"
        );
    }
    Ok(())
}

/// The model to train with the run's dropout: the base model (full mode: or the checkpoint's
/// weights), in LoRA mode frozen, with a fresh adapter or the checkpoint's. Returns the adapter
/// config in LoRA mode.
fn load_model<B: AutodiffBackend>(
    model_dir: &Path,
    checkpoint: Option<&Path>,
    cfg: &FinetuneConfig,
    device: &B::Device,
) -> Result<(T5<B>, Option<LoraConfig>), TrainError> {
    let dropout = cfg.dropout_rate;
    if cfg.mode == Mode::Full {
        let dir = checkpoint.unwrap_or(model_dir);
        return Ok((load_t5_with_dropout::<B>(dir, dropout, device)?, None));
    }
    let mut m = load_t5_with_dropout::<B>(model_dir, dropout, device)?.no_grad();
    let lc = match checkpoint {
        None => {
            let mut lc = cfg.lora.clone();
            lc.base_model_name_or_path = Some(model_dir.display().to_string());
            m.add_lora(&lc, device).map_err(TrainError::Config)?;
            // burn draws a new parameter's values when it is first read: draw the adapter's now,
            // right after the run's seeding, so that every trainer built with this seed (the
            // replicas of a data-parallel run too) starts from the same adapter.
            detox_models::init::materialize(&m);
            lc
        }
        Some(ck) => {
            let names = detox_hub::t5_name_map(&m.config);
            let lc = detox_hub::load_adapter(&mut m, ck, &names, device)?;
            // load_adapter sets peft's inference-mode dropout; train with the run's.
            set_lora_dropout(&mut m, lc.lora_dropout);
            lc
        }
    };
    Ok((m, Some(lc)))
}

/// Peer `p`'s share of a micro-batch's `rows` and its token weight
/// ([`detox_parallel::shard`]). A peer whose share is empty (fewer rows than peers) trains on the
/// first row with weight 0, so that it still contributes a (zero) gradient for every parameter.
fn peer_share<'r>(rows: Vec<&'r Tokenized>, p: &Peer) -> (Vec<&'r Tokenized>, Option<f64>) {
    let total: usize = rows.iter().map(|r| r.labels.len()).sum();
    let range = detox_parallel::share(rows.len(), p.world, p.rank);
    if range.is_empty() {
        return (rows.into_iter().take(1).collect(), Some(0.0));
    }
    let mine: Vec<&Tokenized> = rows[range].to_vec();
    let tokens: usize = mine.iter().map(|r| r.labels.len()).sum();
    (mine, Some(detox_parallel::token_weight(tokens, total)))
}

/// The backend seed of step `step`'s dropout masks.
pub(crate) fn step_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(step as u64 + 1)
}

impl<B: AutodiffBackend> Checkpointed for Trainer<B> {
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
