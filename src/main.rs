//! `detox`: summarize dialogues with FLAN-T5, score text with a RoBERTa classifier, inspect
//! checkpoints, compute ROUGE — on the CPU (default), wgpu or CUDA.

mod backend;
mod bench;
mod bench_ppo;
mod cmd_evaluate;
mod cmd_finetune;
mod cmd_ppo;
mod cmd_rouge;
mod prompt;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use clap::{Parser, Subcommand};
use rand::SeedableRng;

use backend::{run_on, DeviceKind, Job};
use detox_generate::GenerationConfig;
use detox_hub::TextTokenizer;

#[derive(Parser, Debug)]
#[command(
    name = "detox",
    version,
    about = "FLAN-T5 summarization, fine-tuning and PPO detoxification in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Summarize a dialogue (or run any prompt) with a T5 / FLAN-T5 model.
    Summarize(SummarizeArgs),
    /// Classify texts with a RoBERTa sequence classifier: logits and probabilities per label.
    Score(ScoreArgs),
    /// Show a checkpoint's architecture, parameter count and tensors.
    Inspect(InspectArgs),
    /// ROUGE-1/2/L/Lsum exactly as rouge_score computes it.
    Rouge(cmd_rouge::RougeArgs),
    /// Side-by-side summaries of several models on the first N dialogues, with ROUGE; CSV + JSON.
    Evaluate(cmd_evaluate::EvaluateArgs),
    /// Throughput benchmarks at flan-t5-base / roberta-base size (random weights).
    Bench(bench::BenchArgs),
    /// Seconds per PPO step and per lab iteration at flan-t5-base size (random weights), peak memory.
    BenchPpo(bench_ppo::PpoBenchArgs),
    /// Fine-tune a T5 / FLAN-T5 model (full or LoRA) on DialogSum-style JSONL.
    Finetune(Box<cmd_finetune::FinetuneArgs>),
    /// PPO detoxification as the lab runs it with trl: LoRA policy + value head, RoBERTa reward.
    Ppo(Box<cmd_ppo::PpoArgs>),
    /// Toxicity (probability of `hate`) of a model's summaries on the lab's test prompts.
    Toxicity(cmd_ppo::ToxicityArgs),
}

#[derive(clap::Args, Debug, Clone)]
struct SummarizeArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json) or Hugging Face hub id.
    #[arg(long)]
    model: String,
    /// A peft LoRA adapter directory (adapter_config.json + adapter_model.safetensors) to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Text passed to the tokenizer as is.
    #[arg(long, conflicts_with_all = ["dialogue", "dialogue_file"])]
    prompt: Option<String>,
    /// A dialogue, wrapped in the lab's instruction template (or the few-shot prompt with --shots).
    #[arg(long, conflicts_with = "dialogue_file")]
    dialogue: Option<String>,
    /// A file holding the dialogue.
    #[arg(long)]
    dialogue_file: Option<PathBuf>,
    /// One-/few-shot: prepend N example dialogues with their summaries from --examples.
    #[arg(long, default_value_t = 0, requires = "examples")]
    shots: usize,
    /// JSONL file with `dialogue` and `summary` fields (DialogSum format) for --shots.
    #[arg(long)]
    examples: Option<PathBuf>,
    #[arg(long, default_value_t = 50)]
    max_new_tokens: usize,
    /// Suppress EOS until this many new tokens exist.
    #[arg(long, default_value_t = 0)]
    min_new_tokens: usize,
    /// transformers' min_length (decoder length including the start token).
    #[arg(long, default_value_t = 0)]
    min_length: usize,
    /// Sample instead of greedy decoding.
    #[arg(long)]
    do_sample: bool,
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Keep the K most likely tokens when sampling (0 = off).
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    /// Nucleus sampling threshold (1.0 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Longest prompt in tokens; longer prompts are truncated with a warning.
    #[arg(long, default_value_t = 512)]
    max_source_length: usize,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
    /// Print one JSON object: {"text", "token_ids", "prompt_tokens", "elapsed_ms"}.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug, Clone)]
struct ScoreArgs {
    /// Classifier directory or hub id (e.g. facebook/roberta-hate-speech-dynabench-r4-target).
    #[arg(long)]
    model: String,
    /// A text to classify (repeat for several).
    #[arg(long = "text", required = true)]
    texts: Vec<String>,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
    /// One JSON object per text per line: {"text", "labels", "logits", "probs"}.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug, Clone)]
struct InspectArgs {
    #[arg(long)]
    model: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Summarize(args) => {
            let device = args.device;
            run_on(device, Summarize(args))
        }
        Command::Score(args) => {
            let device = args.device;
            run_on(device, Score(args))
        }
        Command::Inspect(args) => inspect(&args),
        Command::Rouge(args) => cmd_rouge::run(&args),
        Command::Evaluate(args) => {
            let device = args.device;
            run_on(device, cmd_evaluate::Evaluate(args))
        }
        Command::Bench(args) => {
            let device = args.device;
            backend::run_autodiff_on(device, bench::Bench(args))
        }
        Command::Finetune(args) => {
            let device = args.device;
            backend::run_autodiff_on(device, cmd_finetune::Finetune(*args))
        }
        Command::BenchPpo(args) => {
            let device = args.device;
            backend::run_autodiff_on(device, bench_ppo::PpoBench(args))
        }
        Command::Ppo(args) => {
            let device = args.device;
            backend::run_autodiff_on(device, cmd_ppo::Ppo(*args))
        }
        Command::Toxicity(args) => {
            let device = args.device;
            run_on(device, cmd_ppo::Toxicity(args))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if detox_train::interrupt::requested() {
                ExitCode::from(detox_train::interrupt::EXIT_CODE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn int_tensor<B: Backend>(
    data: Vec<i64>,
    shape: [usize; 2],
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

struct Summarize(SummarizeArgs);

impl SummarizeArgs {
    fn build_prompt(&self) -> Result<String> {
        let dialogue = match (&self.prompt, &self.dialogue, &self.dialogue_file) {
            (Some(p), _, _) => {
                if self.shots > 0 {
                    bail!("--shots builds a prompt around --dialogue/--dialogue-file; --prompt is used as is");
                }
                return Ok(p.clone());
            }
            (_, Some(d), _) => d.clone(),
            (_, _, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?,
            _ => bail!("give one of --prompt, --dialogue or --dialogue-file"),
        };
        if dialogue.trim().is_empty() {
            bail!("the dialogue is empty");
        }
        if self.shots == 0 {
            return Ok(prompt::zero_shot(&dialogue));
        }
        let path = self
            .examples
            .as_ref()
            .expect("clap requires --examples with --shots");
        let examples = prompt::read_examples(path, self.shots)?;
        Ok(prompt::few_shot(&examples, &dialogue))
    }

    fn generation_config(&self) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            min_new_tokens: self.min_new_tokens,
            min_length: self.min_length,
            do_sample: self.do_sample,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
        }
    }
}

impl Job for Summarize {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        if args.max_source_length == 0 {
            bail!("--max-source-length must be at least 1 (the longest prompt in tokens)");
        }
        let prompt = args.build_prompt()?;
        if prompt.trim().is_empty() {
            bail!("the prompt is empty");
        }
        let gen = args.generation_config();
        gen.validate().map_err(anyhow::Error::msg)?;
        let dir = detox_hub::resolve_model(&args.model)?;
        let mut model = detox_hub::load_t5::<B>(&dir, &device)?;
        if let Some(adapter) = &args.adapter {
            let names = detox_hub::t5_name_map(&model.config);
            detox_hub::load_adapter(&mut model, adapter, &names, &device)?;
        }
        let c = &model.config;
        let tokenizer =
            TextTokenizer::from_dir(&dir, c.pad_token_id, args.max_source_length, c.vocab_size)?;

        let start = Instant::now();
        let batch = tokenizer.encode_batch(&[prompt])?;
        let ids = int_tensor::<B>(batch.ids, [1, batch.len], &device);
        let mask = int_tensor::<B>(batch.mask, [1, batch.len], &device);
        let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
        let tokens = detox_generate::generate(&model, ids, mask, &gen, &mut rng).remove(0);
        let text = tokenizer.decode(&tokens)?;
        let elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
        if args.json {
            let out = serde_json::json!({
                "text": text,
                "token_ids": tokens,
                "prompt_tokens": batch.len,
                "elapsed_ms": elapsed_ms,
            });
            println!("{out}");
        } else {
            println!("{text}");
            eprintln!(
                "({} prompt tokens, {} new tokens, {:.0} ms)",
                batch.len,
                tokens.len(),
                elapsed_ms
            );
        }
        Ok(())
    }
}

struct Score(ScoreArgs);

impl Job for Score {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        if let Some(i) = args.texts.iter().position(|t| t.trim().is_empty()) {
            bail!("--text number {} is empty", i + 1);
        }
        let dir = detox_hub::resolve_model(&args.model)?;
        let model = detox_hub::load_roberta::<B>(&dir, &device)?;
        let c = &model.config;
        let tokenizer =
            TextTokenizer::from_dir(&dir, c.pad_token_id, c.max_input_len(), c.vocab_size)?;
        let batch = tokenizer.encode_batch(&args.texts)?;
        let ids = int_tensor::<B>(batch.ids, [batch.batch, batch.len], &device);
        let mask = int_tensor::<B>(batch.mask, [batch.batch, batch.len], &device);
        let logits: Vec<f32> = model
            .forward(ids, mask)
            .into_data()
            .convert::<f32>()
            .into_vec()
            .expect("float logits");
        let n = model.labels.len();
        for (text, row) in args.texts.iter().zip(logits.chunks(n)) {
            let probs = detox_generate::logits::softmax(row);
            if args.json {
                let out = serde_json::json!({
                    "text": text,
                    "labels": model.labels,
                    "logits": row,
                    "probs": probs,
                });
                println!("{out}");
            } else {
                let cells: Vec<String> = model
                    .labels
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

fn inspect(args: &InspectArgs) -> Result<()> {
    let dir = detox_hub::resolve_model(&args.model)?;
    let info = detox_hub::models::inspect(Path::new(&dir))?;
    if args.json {
        println!("{}", serde_json::to_string(&info)?);
        return Ok(());
    }
    println!("model_type:   {}", info.model_type);
    println!("architecture: {}", info.architecture);
    println!("parameters:   {}", group_thousands(info.parameters));
    println!("dtype on disk: {}", info.dtypes.join(", "));
    println!("files:        {}", info.files.join(", "));
    println!("tensors ({}):", info.tensors.len());
    for (name, dtype, shape) in &info.tensors {
        println!("  {name:<70} {dtype:<5} {shape:?}");
    }
    Ok(())
}

fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
