//! `detox finetune`: supervised fine-tuning (full or LoRA) of a T5 / FLAN-T5 model on DialogSum-style
//! JSONL, as the lab's `Seq2SeqTrainer` run does it (see `detox-train`).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use detox_models::lora::parameter_report;
use detox_models::LoraConfig;
use detox_parallel::{run_local_peers, PeerJob, Topology};
use detox_train::{Duration, FinetuneConfig, Mode, PromptTemplate, RunSummary, Start, Trainer};

use crate::backend::{AutodiffJob, DeviceArgs, ParallelJob};
use crate::parallel_args::ParallelArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Train every parameter.
    Full,
    /// Train LoRA adapters only (peft), base model frozen.
    Lora,
}

#[derive(clap::Args, Debug, Clone)]
pub struct FinetuneArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json) or Hugging Face hub id.
    #[arg(long)]
    pub model: String,
    #[arg(long, value_enum)]
    pub mode: ModeArg,
    /// LoRA rank.
    #[arg(long, default_value_t = 32)]
    pub lora_r: usize,
    #[arg(long, default_value_t = 32.0)]
    pub lora_alpha: f64,
    #[arg(long, default_value_t = 0.05)]
    pub lora_dropout: f64,
    /// Linear layers to adapt (peft's target_modules: name suffixes).
    #[arg(long, value_delimiter = ',', default_value = "q,v")]
    pub target_modules: Vec<String>,
    /// Training split: JSONL with `dialogue` and `summary` (DialogSum: also `id`, `topic`).
    #[arg(long)]
    pub train: PathBuf,
    /// Validation split for the eval loss.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Use only the first N training examples.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Use only the first N eval examples.
    #[arg(long)]
    pub eval_limit: Option<usize>,
    /// Output directory: metrics.jsonl, checkpoint-N/, final/.
    #[arg(long)]
    pub out: PathBuf,
    /// Peak learning rate (linear decay to 0 after --warmup-steps).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Optimizer steps to run.
    #[arg(long, conflicts_with = "epochs")]
    pub max_steps: Option<usize>,
    /// Passes over the training data (default 1 when --max-steps is not given).
    #[arg(long)]
    pub epochs: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    /// AdamW's decoupled weight decay (applied to every trained tensor).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    #[arg(long, default_value_t = 512)]
    pub max_source_len: usize,
    #[arg(long, default_value_t = 128)]
    pub max_target_len: usize,
    /// Override the model's dropout_rate while training.
    #[arg(long)]
    pub dropout_rate: Option<f64>,
    /// Instruction template with a `{dialogue}` slot (default: the lab's).
    #[arg(long)]
    pub template: Option<String>,
    /// Compute the eval loss every N steps (it is always computed at the end when --eval is given).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Write checkpoint-N every N steps (one is always written at the end).
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Append a metrics.jsonl row every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Batch examples of similar source length together (transformers' `group_by_length`): far
    /// less padding, the same examples per epoch.
    #[arg(long)]
    pub group_by_length: bool,
    /// Also train on a span-corrupted copy of every training dialogue (T5's pre-training
    /// objective: spans replaced by <extra_id_N> sentinels, the target restores them), which
    /// makes a model trained from scratch read its source.
    #[arg(long)]
    pub denoise: bool,
    /// Also train on copying the first N tokens of every training dialogue (source and target:
    /// those N tokens, no template), which makes cross-attention align with the source early in
    /// a model trained from scratch. 0: off.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub copy_prefix: usize,
    /// Decoder word dropout: during training, replace each decoder input token by <unk> with
    /// probability P (labels unchanged), so that a model trained from scratch cannot predict a
    /// summary from its own prefix alone and learns to read the source. 0: off.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub decoder_word_dropout: f64,
    /// Also train on listing, for every training dialogue, the words of its summary that occur
    /// in it and in few other summaries (own instruction: "List the key words of the following
    /// conversation."), which makes a model trained from scratch take content from its source.
    #[arg(long)]
    pub keywords: bool,
    /// Supervised pointer: add W times a loss that teaches the first --pointer-heads heads of the
    /// last decoder block's cross-attention to sit, at each summary position, on the source
    /// positions holding the next summary token, so that a model trained from scratch learns to
    /// take words from its dialogue. The logged loss stays the summaries' NLL. 0: off.
    #[arg(long, default_value_t = 0.0, value_name = "W")]
    pub pointer_loss: f64,
    /// How many cross-attention heads the pointer loss trains (see --pointer-loss).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub pointer_heads: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub parallel: ParallelArgs,
    /// Continue from the latest checkpoint in --out, or from the checkpoint directory given.
    #[arg(long, num_args = 0..=1, value_name = "CHECKPOINT")]
    pub resume: Option<Option<PathBuf>>,
    /// Delete the run --out already holds (metrics.jsonl, checkpoint-N/, final/) and start afresh.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Print one JSON object at the end: {"steps", "first_loss", "last_loss", "eval_loss", "final", "checkpoint"}.
    #[arg(long)]
    pub json: bool,
}

impl FinetuneArgs {
    fn config(&self) -> Result<FinetuneConfig> {
        let targets: Vec<&str> = self.target_modules.iter().map(String::as_str).collect();
        let template = match &self.template {
            Some(t) => PromptTemplate::new(t.clone())?,
            None => PromptTemplate::default(),
        };
        Ok(FinetuneConfig {
            mode: match self.mode {
                ModeArg::Full => Mode::Full,
                ModeArg::Lora => Mode::Lora,
            },
            lora: LoraConfig::new(self.lora_r, self.lora_alpha, &targets, self.lora_dropout),
            lr: self.lr,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            duration: Duration::from_flags(self.max_steps, self.epochs),
            warmup_steps: self.warmup_steps,
            weight_decay: self.weight_decay,
            max_grad_norm: (self.max_grad_norm != 0.0).then_some(self.max_grad_norm),
            max_source_len: self.max_source_len,
            max_target_len: self.max_target_len,
            dropout_rate: self.dropout_rate,
            eval_every: self.eval_every,
            save_every: self.save_every,
            log_every: self.log_every,
            seed: self.seed,
            template,
            group_by_length: self.group_by_length,
            denoise: self.denoise,
            copy_prefix: self.copy_prefix,
            decoder_word_dropout: self.decoder_word_dropout,
            keywords: self.keywords,
            pointer_loss: self.pointer_loss,
            pointer_heads: self.pointer_heads,
        })
    }
}

/// `detox finetune`: on one device, or data-parallel on several (`--data-parallel`, `--nodes`).
pub fn run(args: FinetuneArgs) -> Result<()> {
    let topology = args.parallel.topology()?;
    if topology.world() == 1 {
        args.device.run_autodiff(Finetune(args))
    } else {
        args.device
            .run_parallel(topology.devices, FinetuneParallel(args, topology))
    }
}

/// What a run reads before it trains: its settings, model, data and start.
struct Inputs {
    cfg: FinetuneConfig,
    dir: PathBuf,
    train: Vec<detox_train::Example>,
    eval: Option<Vec<detox_train::Example>>,
    start: Start,
}

impl Inputs {
    fn read(args: &FinetuneArgs) -> Result<Self> {
        let eval = args
            .eval
            .as_ref()
            .map(|p| detox_train::read_jsonl(p, args.eval_limit))
            .transpose()?;
        Ok(Self {
            cfg: args.config()?,
            dir: detox_hub::resolve_model(&args.model)?,
            train: detox_train::read_jsonl(&args.train, args.train_limit)?,
            eval,
            start: Start::from_flags(args.resume.clone(), args.overwrite),
        })
    }
}

/// Prints what the run is about to do (the main peer's process only).
fn announce<B: AutodiffBackend>(args: &FinetuneArgs, trainer: &Trainer<B>, peers: usize) {
    let (trainable, all) = trainer.parameter_counts();
    if args.mode == ModeArg::Lora && !args.json {
        println!("{}", parameter_report(trainable, all));
    }
    if let Some(ck) = trainer.resumed_from() {
        eprintln!("resuming from {} at step {}", ck.display(), trainer.step());
    }
    let on = if peers > 1 {
        format!(" on {peers} data-parallel peers")
    } else {
        String::new()
    };
    eprintln!(
        "fine-tuning ({}){on} on {} examples: {} optimizer steps, {} trainable of {} parameters",
        match args.mode {
            ModeArg::Full => "full",
            ModeArg::Lora => "LoRA",
        },
        trainer.num_train_examples(),
        trainer.total_steps(),
        trainable,
        all
    );
}

/// Prints the run's outcome.
fn report(args: &FinetuneArgs, summary: &RunSummary, (trainable, all): (usize, usize)) {
    if args.json {
        let out = serde_json::json!({
            "steps": summary.steps,
            "first_loss": summary.first_loss,
            "last_loss": summary.last_loss,
            "eval_loss": summary.eval_loss,
            "trainable_params": trainable,
            "all_params": all,
            "final": summary.final_dir,
            "checkpoint": summary.last_checkpoint,
        });
        println!("{out}");
    } else {
        if let (Some(a), Some(b)) = (summary.first_loss, summary.last_loss) {
            println!("loss {a:.4} -> {b:.4} over {} steps", summary.steps);
        }
        if let Some(e) = summary.eval_loss {
            println!("eval loss {e:.4}");
        }
        println!("final model: {}", summary.final_dir.display());
        println!("last checkpoint: {}", summary.last_checkpoint.display());
    }
}

/// Data-parallel fine-tuning: one trainer per local peer (the main peer's first, holding the
/// run directory), trained together by `detox-parallel`.
struct FinetuneParallel(FinetuneArgs, Topology);

impl ParallelJob for FinetuneParallel {
    type Output = ();

    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Result<()> {
        let (args, topology) = (self.0, self.1);
        let inputs = Inputs::read(&args)?;
        let mut trainers = Vec::with_capacity(devices.len());
        for (local, device) in devices.iter().enumerate() {
            let main = topology.global_rank(local) == 0;
            let build = if main {
                Trainer::<B>::new
            } else {
                Trainer::<B>::replica
            };
            let t = build(
                &inputs.dir,
                &inputs.train,
                inputs.eval.as_deref(),
                &args.out,
                inputs.cfg.clone(),
                inputs.start.clone(),
                device,
            )
            .with_context(|| {
                format!(
                    "cannot set up fine-tuning on peer {}",
                    topology.global_rank(local)
                )
            })?;
            trainers.push(t);
        }
        let counts = trainers[0].parameter_counts();
        if topology.holds_main() {
            crate::backend::record_start(&args.out, args.device)?;
            announce(&args, &trainers[0], topology.world());
        }
        detox_train::interrupt::install().context("cannot listen for SIGINT/SIGTERM")?;
        let progress = std::io::stderr().is_terminal();
        let jobs: Vec<PeerJob<'_, Option<RunSummary>, anyhow::Error>> = trainers
            .into_iter()
            .map(|mut t| {
                Box::new(move |peer: detox_parallel::Peer| {
                    let main = peer.is_main();
                    t.set_peer(peer)?;
                    Ok(if main {
                        Some(t.run(progress)?)
                    } else {
                        t.run_replica()?;
                        None
                    })
                }) as PeerJob<'_, _, _>
            })
            .collect();
        let results = run_local_peers::<B::InnerBackend, _, anyhow::Error>(
            &topology,
            devices,
            jobs,
            args.parallel.timeout(),
        )?;
        if let Some(summary) = results.into_iter().flatten().next() {
            report(&args, &summary, counts);
        }
        Ok(())
    }
}

pub struct Finetune(pub FinetuneArgs);

impl AutodiffJob for Finetune {
    type Output = ();

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let inputs = Inputs::read(&args)?;
        let mut trainer = Trainer::<B>::new(
            &inputs.dir,
            &inputs.train,
            inputs.eval.as_deref(),
            &args.out,
            inputs.cfg,
            inputs.start,
            &device,
        )
        .context("cannot set up fine-tuning")?;
        crate::backend::record_start(&args.out, args.device)?;
        announce(&args, &trainer, 1);
        detox_train::interrupt::install().context("cannot listen for SIGINT/SIGTERM")?;
        let summary = trainer.run(std::io::stderr().is_terminal())?;
        report(&args, &summary, trainer.parameter_counts());
        Ok(())
    }
}
