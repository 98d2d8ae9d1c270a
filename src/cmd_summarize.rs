//! `detox summarize`: a dialogue (in the lab's zero- or few-shot prompt) or any prompt through a
//! T5 / FLAN-T5 model, optionally with a peft LoRA adapter; greedy or sampled decoding.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use rand::SeedableRng;

use crate::backend::{DeviceArgs, Job};
use crate::prompt;
use detox_generate::GenerationConfig;
use detox_hub::TextTokenizer;

#[derive(clap::Args, Debug, Clone)]
pub struct SummarizeArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json) or Hugging Face hub id.
    #[arg(long)]
    pub model: String,
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
    #[arg(long, default_value_t = 50)]
    pub max_new_tokens: usize,
    /// Suppress EOS until this many new tokens exist.
    #[arg(long, default_value_t = 0)]
    pub min_new_tokens: usize,
    /// transformers' min_length (decoder length including the start token).
    #[arg(long, default_value_t = 0)]
    pub min_length: usize,
    /// Sample instead of greedy decoding.
    #[arg(long)]
    pub do_sample: bool,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Keep the K most likely tokens when sampling (0 = off).
    #[arg(long, default_value_t = 50)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1.0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Longest prompt in tokens; longer prompts are truncated with a warning.
    #[arg(long, default_value_t = 512)]
    pub max_source_length: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Print one JSON object: {"text", "token_ids", "prompt_tokens", "elapsed_ms"}.
    #[arg(long)]
    pub json: bool,
}

pub struct Summarize(pub SummarizeArgs);

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
        let (ids, mask) = batch.tensors::<B>(&device);
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
