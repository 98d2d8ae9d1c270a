//! `detox train-reward`: a reward model from human preferences (`detox annotations export`, or
//! ready chosen/rejected pairs), trained as trl 0.11's `RewardTrainer` does
//! (`detox_train::reward`). The output directory is itself a one-label RoBERTa classifier:
//! `detox ppo --reward-model OUT --reward-label LABEL` optimizes what the annotators preferred.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::AutodiffBackend;
use detox_train::data::PromptTemplate;
use detox_train::preferences::{read_preferences, split_by_item, ItemTexts};
use detox_train::reward::{RewardConfig, RewardTrainer};
use detox_train::{Duration, Start};

use crate::backend::{AutodiffJob, DeviceArgs};

#[derive(clap::Args, Debug, Clone)]
pub struct TrainRewardArgs {
    /// Preferences (JSONL): judgments as `detox annotations export` writes them (give --items
    /// too), or ready pairs `{"chosen": TEXT, "rejected": TEXT}` with optional "prompt" and
    /// "margin".
    #[arg(long)]
    pub preferences: PathBuf,
    /// The items the annotators rated (the file given to `detox annotate`): where the judgments'
    /// dialogues and summaries are found.
    #[arg(long)]
    pub items: Option<PathBuf>,
    /// The starting RoBERTa classifier (a reward model, a classifier of any labels, or a
    /// `detox init` directory); a model with other than one label gets a fresh one-output head.
    #[arg(long)]
    pub model: String,
    /// Output directory: the reward model itself (config.json, model.safetensors, tokenizer),
    /// plus metrics.jsonl, checkpoint-N/, best/, final/.
    #[arg(long)]
    pub out: PathBuf,
    /// The name of the model's single output (its id2label), what `detox ppo --reward-label`
    /// asks for.
    #[arg(long, default_value = "preferred")]
    pub label: String,
    /// The text scored is this prompt (with {dialogue}) followed by the summary; PPO scores
    /// query + response the same way. Default: the lab's instruction.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Share of the items whose pairs are held out for pairwise accuracy (0 = none).
    #[arg(long, default_value_t = 0.1)]
    pub eval_fraction: f64,
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, conflicts_with = "epochs")]
    pub max_steps: Option<usize>,
    /// Passes over the training pairs (default 3, transformers' default, without --max-steps).
    #[arg(long)]
    pub epochs: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Pairs with a text longer than this many tokens are dropped (trl's max_length; also bounded
    /// by the model's positions).
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
    /// Adds c * mean((r_chosen + r_rejected)^2) to the loss (trl's center_rewards_coefficient).
    #[arg(long)]
    pub center_rewards_coefficient: Option<f64>,
    /// Score the held-out pairs every N steps (and always at the end).
    #[arg(long)]
    pub eval_every: Option<usize>,
    #[arg(long)]
    pub save_every: Option<usize>,
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Continue from the latest checkpoint in --out, or from the checkpoint directory given.
    #[arg(long, num_args = 0..=1, value_name = "CHECKPOINT")]
    pub resume: Option<Option<PathBuf>>,
    /// Delete the run --out already holds and start afresh.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Print one JSON object at the end.
    #[arg(long)]
    pub json: bool,
}

impl TrainRewardArgs {
    fn config(&self) -> RewardConfig {
        RewardConfig {
            lr: self.lr,
            batch_size: self.batch_size,
            duration: match (self.max_steps, self.epochs) {
                (Some(n), _) => Duration::MaxSteps(n),
                (None, e) => Duration::Epochs(e.unwrap_or(3.0)),
            },
            warmup_steps: self.warmup_steps,
            weight_decay: self.weight_decay,
            max_grad_norm: (self.max_grad_norm != 0.0).then_some(self.max_grad_norm),
            max_len: self.max_len,
            center_rewards_coefficient: self.center_rewards_coefficient,
            eval_every: self.eval_every,
            save_every: self.save_every,
            log_every: self.log_every,
            seed: self.seed,
        }
    }

    /// The items file as dialogue + summary per model, by item ID.
    fn items(&self) -> Result<Option<HashMap<String, ItemTexts>>> {
        let Some(path) = &self.items else {
            return Ok(None);
        };
        let items = detox_annotate::items::read_items(path)?;
        Ok(Some(
            items
                .into_iter()
                .map(|it| {
                    let summaries = it.models.into_iter().zip(it.summaries).collect();
                    (
                        it.id,
                        ItemTexts {
                            dialogue: it.dialogue,
                            summaries,
                        },
                    )
                })
                .collect(),
        ))
    }
}

pub struct TrainReward(pub TrainRewardArgs);

impl AutodiffJob for TrainReward {
    type Output = ();

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        if !(0.0..1.0).contains(&args.eval_fraction) {
            bail!(
                "--eval-fraction must be in [0, 1), got {}",
                args.eval_fraction
            );
        }
        let template = match &args.prompt {
            Some(p) => PromptTemplate::new(p.clone())?,
            None => PromptTemplate::default(),
        };
        let items = args.items()?;
        let (pairs, ties) = read_preferences(&args.preferences, items.as_ref(), &template)?;
        if pairs.is_empty() {
            bail!(
                "{}: no preference pairs (ties dropped: {ties})",
                args.preferences.display()
            );
        }
        let (train, held_out) = split_by_item(pairs, args.eval_fraction);
        let dir = detox_hub::resolve_model(&args.model)?;
        let start = Start::from_flags(args.resume.clone(), args.overwrite);
        let mut trainer = RewardTrainer::<B>::new(
            &dir,
            &args.label,
            &train,
            &held_out,
            &args.out,
            args.config(),
            start,
            &device,
        )
        .context("cannot set up reward-model training")?;
        crate::backend::record_start(&args.out, args.device)?;
        if let Some(ck) = trainer.resumed_from() {
            eprintln!("resuming from {} at step {}", ck.display(), trainer.step());
        }
        if trainer.new_head {
            eprintln!(
                "{}: a fresh one-output head named {:?} replaces the model's classifier output",
                dir.display(),
                args.label
            );
        }
        let (dt, de) = trainer.dropped;
        eprintln!(
            "training a reward model on {} pairs, {} held out ({ties} ties dropped{}): {} optimizer steps",
            trainer.train_pairs(),
            trainer.eval_pairs(),
            if dt + de > 0 {
                format!(", {} pairs over {} tokens dropped", dt + de, args.max_len)
            } else {
                String::new()
            },
            trainer.total_steps()
        );
        detox_train::interrupt::install().context("cannot listen for SIGINT/SIGTERM")?;
        let summary = trainer.run(std::io::stderr().is_terminal())?;
        drop(trainer);
        let report = serde_json::json!({
            "steps": summary.steps,
            "first_loss": summary.first_loss,
            "last_loss": summary.last_loss,
            "best_step": summary.best.map(|b| b.step),
            "held_out": summary.selected,
            "model": args.out,
            "label": args.label,
        });
        if args.json {
            println!("{report}");
        } else {
            if let (Some(a), Some(b)) = (summary.first_loss, summary.last_loss) {
                println!("loss {a:.4} -> {b:.4} over {} steps", summary.steps);
            }
            if let Some(e) = summary.selected {
                println!(
                    "held-out pairwise accuracy {:.4} on {} pairs (mean reward chosen {:.3}, rejected {:.3})",
                    e.accuracy, e.pairs, e.reward_chosen_mean, e.reward_rejected_mean
                );
            }
            println!(
                "reward model: {} (use: detox ppo --reward-model {} --reward-label {})",
                args.out.display(),
                args.out.display(),
                args.label
            );
        }
        Ok(())
    }
}
