//! `detox train-classifier`: trains a RoBERTa sequence classifier (e.g. one made by `detox init`)
//! on labeled texts, keeps the best model by validation, and scores it — beside a bag-of-words
//! Naive Bayes baseline fit on the same training rows — on the held-out test rows
//! (`detox_train::classifier`).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::AutodiffBackend;
use detox_train::classifier::{evaluate_dir, BestMetric, ClassifierConfig, ClassifierTrainer};
use detox_train::classify_data::{read_labeled, split_by_position, Columns, LabelMap, LabeledText};
use detox_train::classify_metrics::class_metrics;
use detox_train::naive_bayes::NaiveBayes;
use detox_train::{Duration, Start};

use crate::backend::{AutodiffJob, DeviceArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BestMetricArg {
    Loss,
    Accuracy,
    MacroF1,
    RocAuc,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TrainClassifierArgs {
    /// A RoBERTa sequence-classifier directory (config.json with id2label, weights, tokenizer.json):
    /// `detox init` makes a fresh one.
    #[arg(long)]
    pub model: String,
    /// Labeled texts: CSV with a header row, or JSONL (`.jsonl`).
    #[arg(long)]
    pub train: PathBuf,
    /// Validation file (model selection). Not with --split-by-position.
    #[arg(long, conflicts_with = "split_by_position")]
    pub eval: Option<PathBuf>,
    /// Test file, scored once at the end with the selected model. Not with --split-by-position.
    #[arg(long, conflicts_with = "split_by_position")]
    pub test: Option<PathBuf>,
    /// Split --train by 0-based data-row position p: p % 10 == 0 test, p % 10 == 1 validation,
    /// the rest train (the fixed split of ../shared's tweets).
    #[arg(long)]
    pub split_by_position: bool,
    #[arg(long, default_value = "text")]
    pub text_column: String,
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Raw label values to the model's label names, e.g. `0=hate,1=hate,2=nothate` (without it,
    /// the raw value must be a label name or index).
    #[arg(long, default_value = "")]
    pub label_map: String,
    /// Use only the first N training rows (after the split).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Output directory: metrics.jsonl, checkpoint-N/, best/, final/, test_metrics.json.
    #[arg(long, required_unless_present = "eval_only")]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, conflicts_with = "epochs")]
    pub max_steps: Option<usize>,
    /// Passes over the training rows (default 1 when --max-steps is not given).
    #[arg(long)]
    pub epochs: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Longest input in tokens (also bounded by the model's positions).
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Score the validation rows every N steps (and always at the end).
    #[arg(long)]
    pub eval_every: Option<usize>,
    #[arg(long)]
    pub save_every: Option<usize>,
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// The validation number that picks the model kept in OUT/best.
    #[arg(long, value_enum, default_value = "macro-f1")]
    pub best_metric: BestMetricArg,
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
    /// Print one JSON object at the end (also written to OUT/test_metrics.json with a test set).
    #[arg(long)]
    pub json: bool,
    /// Train nothing: score --model on the validation and test rows (beside Naive Bayes fit on
    /// the training rows) and print the JSON report. --out is not written.
    #[arg(long)]
    pub eval_only: bool,
}

impl TrainClassifierArgs {
    fn config(&self) -> ClassifierConfig {
        ClassifierConfig {
            lr: self.lr,
            batch_size: self.batch_size,
            duration: Duration::from_flags(self.max_steps, self.epochs),
            warmup_steps: self.warmup_steps,
            weight_decay: self.weight_decay,
            max_grad_norm: (self.max_grad_norm != 0.0).then_some(self.max_grad_norm),
            max_len: self.max_len,
            eval_every: self.eval_every,
            save_every: self.save_every,
            log_every: self.log_every,
            seed: self.seed,
            best_metric: match self.best_metric {
                BestMetricArg::Loss => BestMetric::Loss,
                BestMetricArg::Accuracy => BestMetric::Accuracy,
                BestMetricArg::MacroF1 => BestMetric::MacroF1,
                BestMetricArg::RocAuc => BestMetric::RocAuc,
            },
        }
    }

    /// `(train, validation, test)` rows.
    fn data(&self, labels: &[String]) -> Result<Splits> {
        let columns = Columns {
            text: self.text_column.clone(),
            label: self.label_column.clone(),
        };
        let map = LabelMap::parse(&self.label_map)?;
        let read = |p: &PathBuf| read_labeled(p, &columns, &map, labels);
        let (mut train, eval, test) = if self.split_by_position {
            let (train, val, test) = split_by_position(read(&self.train)?);
            if val.is_empty() || test.is_empty() {
                bail!(
                    "{}: too few rows for --split-by-position (need at least 2)",
                    self.train.display()
                );
            }
            (train, Some(val), Some(test))
        } else {
            (
                read(&self.train)?,
                self.eval.as_ref().map(read).transpose()?,
                self.test.as_ref().map(read).transpose()?,
            )
        };
        if let Some(n) = self.train_limit {
            train.truncate(n);
        }
        Ok((train, eval, test))
    }
}

/// Training rows, and the validation and test rows when there are any.
type Splits = (
    Vec<LabeledText>,
    Option<Vec<LabeledText>>,
    Option<Vec<LabeledText>>,
);

pub struct TrainClassifier(pub TrainClassifierArgs);

impl AutodiffJob for TrainClassifier {
    type Output = ();

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let dir = detox_hub::resolve_model(&args.model)?;
        let config: detox_models::RobertaConfig = detox_hub::read_config(&dir)?;
        let labels = config
            .labels()
            .map_err(|m| anyhow::anyhow!("{}: {m}", dir.join("config.json").display()))?;
        let (train, eval, test) = args.data(&labels)?;
        if args.eval_only {
            let inner = device.clone();
            let score = |rows: &Option<Vec<LabeledText>>| -> Result<serde_json::Value> {
                let Some(rows) = rows else {
                    return Ok(serde_json::Value::Null);
                };
                let model = evaluate_dir::<B::InnerBackend>(
                    &dir,
                    rows,
                    args.batch_size,
                    args.max_len,
                    &inner,
                )?;
                Ok(serde_json::json!({
                    "rows": rows.len(),
                    "model": model,
                    "naive_bayes": naive_bayes(&train, rows, labels.len()),
                }))
            };
            let report = serde_json::json!({
                "model": dir,
                "validation": score(&eval)?,
                "test": score(&test)?,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        let out = args
            .out
            .clone()
            .expect("clap requires --out unless --eval-only");
        let start = Start::from_flags(args.resume.clone(), args.overwrite);
        let mut trainer = ClassifierTrainer::<B>::new(
            &dir,
            &train,
            eval.as_deref(),
            &out,
            args.config(),
            start,
            &device,
        )
        .context("cannot set up classifier training")?;
        crate::backend::record_start(&out, args.device)?;
        if let Some(ck) = trainer.resumed_from() {
            eprintln!("resuming from {} at step {}", ck.display(), trainer.step());
        }
        let counts = |rows: &[LabeledText]| {
            let mut c = vec![0usize; labels.len()];
            rows.iter().for_each(|r| c[r.label] += 1);
            labels
                .iter()
                .zip(c)
                .map(|(l, n)| format!("{l} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        eprintln!(
            "training a classifier on {} rows ({}), {} validation, {} test: {} optimizer steps",
            train.len(),
            counts(&train),
            eval.as_ref().map_or(0, Vec::len),
            test.as_ref().map_or(0, Vec::len),
            trainer.total_steps()
        );
        detox_train::interrupt::install().context("cannot listen for SIGINT/SIGTERM")?;
        let summary = trainer.run(std::io::stderr().is_terminal())?;
        drop(trainer);
        let selected = summary
            .best
            .as_ref()
            .map_or(summary.final_dir.clone(), |(_, d)| d.clone());
        let mut report = serde_json::json!({
            "steps": summary.steps,
            "first_loss": summary.first_loss,
            "last_loss": summary.last_loss,
            "best_step": summary.best.as_ref().map(|(b, _)| b.step),
            "selected": selected,
            "final": summary.final_dir,
            "checkpoint": summary.last_checkpoint,
        });
        if let Some(test) = &test {
            let inner = device.clone();
            let model = evaluate_dir::<B::InnerBackend>(
                &selected,
                test,
                args.batch_size,
                args.max_len,
                &inner,
            )?;
            let nb = NaiveBayes::fit(
                train.iter().map(|r| (r.text.as_str(), r.label)),
                labels.len(),
                1.0,
            );
            let nb_logits: Vec<Vec<f32>> = test.iter().map(|r| nb.log_scores(&r.text)).collect();
            let test_labels: Vec<usize> = test.iter().map(|r| r.label).collect();
            let baseline = class_metrics(&test_labels, &nb_logits);
            report["test"] = serde_json::json!({
                "rows": test.len(),
                "labels": counts(test),
                "model": model,
                "naive_bayes": baseline,
            });
            let path = out.join("test_metrics.json");
            let text = serde_json::to_string_pretty(&report)? + "\n";
            detox_hub::atomic::write_file_atomic(&path, text.as_bytes())
                .with_context(|| format!("{}: cannot write", path.display()))?;
            if !args.json {
                let auc = |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{a:.4}"));
                println!(
                    "test ({} rows): accuracy {:.4} macro-F1 {:.4} ROC-AUC {}  |  Naive Bayes: accuracy {:.4} macro-F1 {:.4} ROC-AUC {}",
                    test.len(),
                    model.metrics.accuracy,
                    model.metrics.macro_f1,
                    auc(model.metrics.roc_auc),
                    baseline.accuracy,
                    baseline.macro_f1,
                    auc(baseline.roc_auc)
                );
            }
        }
        if args.json {
            println!("{report}");
        } else {
            if let (Some(a), Some(b)) = (summary.first_loss, summary.last_loss) {
                println!("loss {a:.4} -> {b:.4} over {} steps", summary.steps);
            }
            println!("selected model: {}", selected.display());
        }
        Ok(())
    }
}

/// The Naive Bayes baseline fit on `train`, scored on `rows`.
fn naive_bayes(
    train: &[LabeledText],
    rows: &[LabeledText],
    num_labels: usize,
) -> detox_train::classify_metrics::ClassMetrics {
    let nb = NaiveBayes::fit(
        train.iter().map(|r| (r.text.as_str(), r.label)),
        num_labels,
        1.0,
    );
    let logits: Vec<Vec<f32>> = rows.iter().map(|r| nb.log_scores(&r.text)).collect();
    let labels: Vec<usize> = rows.iter().map(|r| r.label).collect();
    class_metrics(&labels, &logits)
}
