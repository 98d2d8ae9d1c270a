//! `detox score`: classify texts with a RoBERTa sequence classifier and print each label's logit
//! and probability (a table, or one JSON object per text).

use anyhow::{bail, Result};
use burn::prelude::*;

use crate::backend::{DeviceArgs, Job};
use detox_hub::Classifier;

#[derive(clap::Args, Debug, Clone)]
pub struct ScoreArgs {
    /// Classifier directory or hub id (e.g. facebook/roberta-hate-speech-dynabench-r4-target);
    /// default: the shipped toxicity classifier (models/toxicity-roberta).
    #[arg(long)]
    pub model: Option<String>,
    /// A text to classify (repeat for several).
    #[arg(long = "text", required = true)]
    pub texts: Vec<String>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// One JSON object per text per line: {"text", "labels", "logits", "probs"}.
    #[arg(long)]
    pub json: bool,
}

pub struct Score(pub ScoreArgs);

impl Job for Score {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        if let Some(i) = args.texts.iter().position(|t| t.trim().is_empty()) {
            bail!("--text number {} is empty", i + 1);
        }
        let dir =
            crate::shipped::model_or_shipped(args.model.as_deref(), crate::shipped::CLASSIFIER)?;
        // all texts in one forward pass
        let classifier = Classifier::<B>::load(&dir, args.texts.len(), &device)?;
        let labels = classifier.labels();
        for (text, row) in args.texts.iter().zip(classifier.logits(&args.texts)?) {
            let row = &row[..];
            let probs = detox_generate::logits::softmax(row);
            if args.json {
                let out = serde_json::json!({
                    "text": text,
                    "labels": labels,
                    "logits": row,
                    "probs": probs,
                });
                println!("{out}");
            } else {
                let cells: Vec<String> = labels
                    .iter()
                    .zip(row.iter().zip(&probs))
                    .map(|(l, (lg, p))| format!("{l}: logit {lg:.4} p {p:.4}"))
                    .collect();
                println!("{}\t{text}", cells.join("  "));
            }
        }
        Ok(())
    }
}
