//! `detox evaluate`: the lab's side-by-side evaluation — summaries of the first N test dialogues
//! from several models (e.g. original / fully fine-tuned / LoRA), the human summary beside them,
//! and each model's ROUGE against the human summaries. Writes `evaluation.csv` and
//! `evaluation.json` (atomically) and prints the table.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use rand::SeedableRng;
use serde::Serialize;

use crate::backend::{DeviceArgs, Job};
use crate::generation_args::GenerationArgs;
use crate::prompt::SourceLengthArgs;
use detox_generate::{generate_sequences, GenerationFile};
use detox_hub::atomic::write_file_atomic;
use detox_hub::TextTokenizer;
use detox_rouge::{mean_fmeasure, RougeMeans};
use detox_train::data::{read_jsonl, PromptTemplate};

#[derive(clap::Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// `NAME=DIR` or `NAME=DIR+ADAPTER_DIR` (repeat): a model directory / hub id, optionally with a
    /// peft LoRA adapter, e.g. `--model original=google/flan-t5-base --model lora=google/flan-t5-base+run/final`.
    #[arg(long = "model", required = true)]
    pub models: Vec<String>,
    /// DialogSum-style JSONL (`dialogue`, `summary`), e.g. ../shared/data/dialogsum/test.jsonl.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Evaluate the first N rows.
    #[arg(long, default_value_t = 10)]
    pub samples: usize,
    /// Decoding of every model (flags over each model's generation_config.json); the best
    /// sequence is scored.
    #[command(flatten)]
    pub generation: GenerationArgs,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[command(flatten)]
    pub source: SourceLengthArgs,
    /// Instruction template with a `{dialogue}` slot.
    #[arg(long)]
    pub template: Option<String>,
    /// Output directory for evaluation.csv and evaluation.json.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Debug, Clone)]
struct ModelSpec {
    name: String,
    model: String,
    adapter: Option<PathBuf>,
}

fn parse_spec(s: &str) -> Result<ModelSpec> {
    let (name, rest) = s
        .split_once('=')
        .with_context(|| format!("--model `{s}`: expected NAME=DIR or NAME=DIR+ADAPTER_DIR"))?;
    if name.is_empty() || rest.is_empty() {
        bail!("--model `{s}`: expected NAME=DIR or NAME=DIR+ADAPTER_DIR");
    }
    let (model, adapter) = match rest.split_once('+') {
        Some((m, a)) => (m.to_string(), Some(PathBuf::from(a))),
        None => (rest.to_string(), None),
    };
    Ok(ModelSpec {
        name: name.to_string(),
        model,
        adapter,
    })
}

#[derive(Serialize)]
struct ModelReport {
    name: String,
    model: String,
    adapter: Option<String>,
    rouge: RougeMeans,
    summaries: Vec<String>,
}

#[derive(Serialize)]
struct Report {
    dataset: String,
    samples: usize,
    dialogues: Vec<String>,
    human_baseline_summaries: Vec<String>,
    models: Vec<ModelReport>,
}

pub struct Evaluate(pub EvaluateArgs);

/// `--max-new-tokens` when neither the flag nor a model's generation_config.json sets it.
const DEFAULT_MAX_NEW_TOKENS: usize = 200;

impl Job for Evaluate {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let a = self.0;
        a.source.check()?;
        let specs = parse_specs(&a.models)?;
        let template = match &a.template {
            Some(t) => PromptTemplate::new(t.clone())?,
            None => PromptTemplate::default(),
        };
        let rows = read_jsonl(&a.dataset, Some(a.samples))?;
        if rows.is_empty() {
            bail!("{}: no examples", a.dataset.display());
        }
        let prompts: Vec<String> = rows.iter().map(|r| template.render(&r.dialogue)).collect();
        let human: Vec<String> = rows.iter().map(|r| r.summary.clone()).collect();
        let reports = specs
            .iter()
            .map(|spec| evaluate_model::<B>(spec, &a, &prompts, &human, &device))
            .collect::<Result<Vec<_>>>()?;

        print_table(&human, &reports);
        let report = Report {
            dataset: a.dataset.display().to_string(),
            samples: rows.len(),
            dialogues: rows.iter().map(|r| r.dialogue.clone()).collect(),
            human_baseline_summaries: human,
            models: reports,
        };
        write_report(&a.out, &report)
    }
}

/// The `--model` specs, refusing a name given twice.
fn parse_specs(models: &[String]) -> Result<Vec<ModelSpec>> {
    let specs = models
        .iter()
        .map(|s| parse_spec(s))
        .collect::<Result<Vec<_>>>()?;
    let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        bail!("--model names must be distinct");
    }
    Ok(specs)
}

/// One model's summaries of `prompts` (in batches of `--batch-size`) and its ROUGE
/// against `human`.
fn evaluate_model<B: Backend>(
    spec: &ModelSpec,
    a: &EvaluateArgs,
    prompts: &[String],
    human: &[String],
    device: &B::Device,
) -> Result<ModelReport> {
    let dir = detox_hub::resolve_model(&spec.model)?;
    let file = GenerationFile::from_model_dir(&dir).map_err(anyhow::Error::msg)?;
    let mut model = detox_hub::load_t5::<B>(&dir, device)?;
    if let Some(adapter) = &spec.adapter {
        let names = detox_hub::t5_name_map(&model.config);
        detox_hub::load_adapter(&mut model, adapter, &names, device)?;
    }
    let gen = a
        .generation
        .resolve(&file, &model, DEFAULT_MAX_NEW_TOKENS)
        .with_context(|| format!("model {}", spec.name))?
        .config;
    if gen.num_return_sequences != 1 {
        bail!("evaluate scores one summary per dialogue; --num-return-sequences must be 1");
    }
    let c = &model.config;
    let tok = TextTokenizer::from_dir(&dir, c.pad_token_id, a.source.limit(), c.vocab_size)?;
    let mut summaries = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(a.batch_size.max(1)) {
        let (ids, mask) = tok.encode_batch(chunk)?.tensors::<B>(device);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        for seqs in generate_sequences(&model, ids, mask, &gen, &mut rng) {
            summaries.push(tok.decode(&seqs[0].tokens)?);
        }
        eprintln!(
            "{}: {}/{} summaries",
            spec.name,
            summaries.len(),
            prompts.len()
        );
    }
    let scores: Vec<_> = summaries
        .iter()
        .zip(human)
        .map(|(p, r)| detox_rouge::score(p, r))
        .collect();
    Ok(ModelReport {
        name: spec.name.clone(),
        model: spec.model.clone(),
        adapter: spec.adapter.as_ref().map(|p| p.display().to_string()),
        rouge: mean_fmeasure(&scores),
        summaries,
    })
}

/// Writes `out/evaluation.json` and `out/evaluation.csv`, each atomically.
fn write_report(out: &Path, report: &Report) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let json = out.join("evaluation.json");
    let csv = out.join("evaluation.csv");
    for (path, bytes) in [
        (&json, serde_json::to_string_pretty(report)?.into_bytes()),
        (&csv, csv_bytes(report)?),
    ] {
        write_file_atomic(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!("wrote {} and {}", csv.display(), json.display());
    Ok(())
}

fn print_table(human: &[String], reports: &[ModelReport]) {
    let clip = |s: &str| {
        let s = s.replace('\n', " ");
        if s.chars().count() > 60 {
            format!("{}…", s.chars().take(59).collect::<String>())
        } else {
            s
        }
    };
    print!("{:<4} {:<62}", "#", "human_baseline_summaries");
    for r in reports {
        print!(" {:<62}", format!("{}_model_summaries", r.name));
    }
    println!();
    for (i, h) in human.iter().enumerate() {
        print!("{i:<4} {:<62}", clip(h));
        for r in reports {
            print!(" {:<62}", clip(&r.summaries[i]));
        }
        println!();
    }
    println!();
    for r in reports {
        let m = &r.rouge;
        println!(
            "{} model ROUGE: rouge1 {:.4}  rouge2 {:.4}  rougeL {:.4}  rougeLsum {:.4}",
            r.name, m.rouge1, m.rouge2, m.rouge_l, m.rouge_lsum
        );
    }
}

/// The side-by-side table as CSV: a header row, then one row per dialogue; every field quoted,
/// rows ended by `\n`.
fn csv_bytes(report: &Report) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let mut header = vec!["human_baseline_summaries".to_string()];
    header.extend(
        report
            .models
            .iter()
            .map(|m| format!("{}_model_summaries", m.name)),
    );
    w.write_record(&header)?;
    for (i, h) in report.human_baseline_summaries.iter().enumerate() {
        let row = std::iter::once(h).chain(report.models.iter().map(|m| &m.summaries[i]));
        w.write_record(row)?;
    }
    w.into_inner().context("writing the CSV")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_specs_parse_name_dir_and_adapter() {
        let s = parse_spec("lora=base+run/final").unwrap();
        assert_eq!((s.name.as_str(), s.model.as_str()), ("lora", "base"));
        assert_eq!(s.adapter, Some(PathBuf::from("run/final")));
        assert!(parse_spec("nodir").is_err());
        assert!(parse_spec("=dir").is_err());
    }

    #[test]
    fn csv_quotes_every_field() {
        let report = Report {
            dataset: "d.jsonl".into(),
            samples: 2,
            dialogues: vec!["x".into(), "y".into()],
            human_baseline_summaries: vec!["a \"b\", c".into(), "two\nlines".into()],
            models: vec![ModelReport {
                name: "lora".into(),
                model: "m".into(),
                adapter: None,
                rouge: mean_fmeasure(&[]),
                summaries: vec!["s1".into(), String::new()],
            }],
        };
        let text = String::from_utf8(csv_bytes(&report).unwrap()).unwrap();
        assert_eq!(
            text,
            "\"human_baseline_summaries\",\"lora_model_summaries\"\n\
             \"a \"\"b\"\", c\",\"s1\"\n\
             \"two\nlines\",\"\"\n"
        );
    }
}
