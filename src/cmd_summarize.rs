//! `detox summarize`: a dialogue (in the lab's zero- or few-shot prompt) or any prompt through a
//! T5 / FLAN-T5 model, optionally with a peft LoRA adapter; greedy, sampled or beam decoding.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use rand::SeedableRng;

use crate::backend::{DeviceArgs, Job};
use crate::generation_args::GenerationArgs;
use crate::prompt::{self, SourceLengthArgs};
use detox_generate::{generate_sequences, GenerationFile};
use detox_hub::TextTokenizer;

#[derive(clap::Args, Debug, Clone)]
pub struct SummarizeArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json) or Hugging Face hub id
    /// (default: the shipped DialogSum summarizer, models/dialogsum-t5).
    #[arg(long)]
    pub model: Option<String>,
    /// A peft LoRA adapter directory (adapter_config.json + adapter_model.safetensors) to apply.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Text passed to the tokenizer as is.
    #[arg(long, conflicts_with_all = ["dialogue", "dialogue_file"])]
    pub prompt: Option<String>,
    /// A dialogue, wrapped in the lab's instruction template (or the few-shot prompt with --shots).
    #[arg(long, conflicts_with = "dialogue_file")]
    pub dialogue: Option<String>,
    /// A file holding the dialogue.
    #[arg(long)]
    pub dialogue_file: Option<PathBuf>,
    /// One-/few-shot: prepend N example dialogues with their summaries from --examples.
    #[arg(long, default_value_t = 0, requires = "examples")]
    pub shots: usize,
    /// JSONL file with `dialogue` and `summary` fields (DialogSum format) for --shots.
    #[arg(long)]
    pub examples: Option<PathBuf>,
    #[command(flatten)]
    pub generation: GenerationArgs,
    /// Seed of the sampling RNG.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub source: SourceLengthArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Print one JSON object: {"text", "token_ids", "sequences", "prompt_tokens",
    /// "elapsed_ms"}; `text`/`token_ids` are the best sequence, `sequences` all returned ones
    /// (best first) as {"token_ids", "text", "score"} (`score`: beam search's sequences_scores,
    /// null otherwise).
    #[arg(long)]
    pub json: bool,
    /// Print the effective generation settings (and where each came from) to stderr.
    #[arg(long)]
    pub verbose: bool,
}

pub struct Summarize(pub SummarizeArgs);

/// `--max-new-tokens` when neither the flag nor generation_config.json sets it.
const DEFAULT_MAX_NEW_TOKENS: usize = 50;

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
}

impl Job for Summarize {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        args.source.check()?;
        let prompt = args.build_prompt()?;
        if prompt.trim().is_empty() {
            bail!("the prompt is empty");
        }
        let dir =
            crate::shipped::model_or_shipped(args.model.as_deref(), crate::shipped::SUMMARIZER)?;
        let file = GenerationFile::from_model_dir(&dir).map_err(anyhow::Error::msg)?;
        let mut model = detox_hub::load_t5::<B>(&dir, &device)?;
        if let Some(adapter) = &args.adapter {
            let names = detox_hub::t5_name_map(&model.config);
            detox_hub::load_adapter(&mut model, adapter, &names, &device)?;
        }
        let effective = args
            .generation
            .resolve(&file, &model, DEFAULT_MAX_NEW_TOKENS)?;
        if args.verbose {
            eprint!("generation settings:\n{}", effective.describe());
        }
        let gen = effective.config;
        let c = &model.config;
        let tokenizer =
            TextTokenizer::from_dir(&dir, c.pad_token_id, args.source.limit(), c.vocab_size)?;

        let start = Instant::now();
        let batch = tokenizer.encode_batch(&[prompt])?;
        let (ids, mask) = batch.tensors::<B>(&device);
        let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
        let sequences = generate_sequences(&model, ids, mask, &gen, &mut rng).remove(0);
        let texts = sequences
            .iter()
            .map(|q| tokenizer.decode(&q.tokens))
            .collect::<Result<Vec<_>, _>>()?;
        let elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
        let best = &sequences[0];
        if args.json {
            let all: Vec<_> = sequences
                .iter()
                .zip(&texts)
                .map(|(q, text)| {
                    serde_json::json!({"token_ids": q.tokens, "text": text, "score": q.score})
                })
                .collect();
            let out = serde_json::json!({
                "text": texts[0],
                "token_ids": best.tokens,
                "sequences": all,
                "prompt_tokens": batch.len,
                "elapsed_ms": elapsed_ms,
            });
            println!("{out}");
        } else {
            for text in &texts {
                println!("{text}");
            }
            eprintln!(
                "({} prompt tokens, {} new tokens, {:.0} ms)",
                batch.len,
                best.tokens.len(),
                elapsed_ms
            );
        }
        Ok(())
    }
}
