//! `detox init`: a randomly initialized model directory in Hugging Face layout, from a
//! `config.json` (T5 or RoBERTa) and a tokenizer directory — the starting point of pre-training
//! or training from scratch. Weights are drawn as transformers' `_init_weights` draws them
//! (`detox_models::init`), seeded; the directory loads in detox and in transformers.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::backend::Flex;
use detox_models::{RobertaConfig, T5Config};

#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// A transformers `config.json` with `model_type` `t5` or `roberta` (a RoBERTa config is a
    /// `RobertaForSequenceClassification`: give `id2label` or `num_labels`).
    #[arg(long)]
    pub config: PathBuf,
    /// Directory holding the tokenizer (`tokenizer.json`, plus whatever companions it has).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// The model directory to write (must not exist yet, unless --overwrite).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// T5 only: start every decoder block's cross-attention as a copy path (values = identity,
    /// output projection = A x identity), so that the source's words raise their own logits
    /// through the tied LM head from the first step. Needs num_heads x d_kv = d_model.
    #[arg(long, value_name = "A")]
    pub copy_cross_attention: Option<f64>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `detox init`.
pub fn run(args: &InitArgs) -> Result<()> {
    if args.out.exists() && !args.overwrite {
        bail!(
            "{}: already exists; choose another --out or pass --overwrite",
            args.out.display()
        );
    }
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("{}: cannot read the config", args.config.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", args.config.display()))?;
    let kind = value
        .get("model_type")
        .and_then(|v| v.as_str())
        .with_context(|| {
            format!(
                "{}: no `model_type` (expected \"t5\" or \"roberta\")",
                args.config.display()
            )
        })?
        .to_string();
    let tokenizer = args.tokenizer.join("tokenizer.json");
    if !tokenizer.is_file() {
        bail!("{}: no tokenizer.json there", args.tokenizer.display());
    }
    let device = Default::default();
    let cfg_err = |e: String| anyhow::anyhow!("{}: {e}", args.config.display());
    let params = match kind.as_str() {
        "t5" => {
            let c: T5Config = serde_json::from_value(value)
                .map_err(|e| cfg_err(format!("not a T5 config: {e}")))?;
            check_vocab(&tokenizer, c.vocab_size, &args.config)?;
            let mut model =
                detox_models::init::init_t5::<Flex>(&c, args.seed, &device).map_err(cfg_err)?;
            if let Some(a) = args.copy_cross_attention {
                model = detox_models::init::copy_cross_attention(model, a)
                    .map_err(|e| anyhow::anyhow!("--copy-cross-attention: {e}"))?;
            }
            write(&args.out, &args.tokenizer, |tmp| {
                detox_hub::save::write_t5_files(&model, tmp)?;
                write_generation_config(&c, tmp)
            })?;
            c.num_parameters()
        }
        "roberta" => {
            if args.copy_cross_attention.is_some() {
                bail!(
                    "--copy-cross-attention: {} is a RoBERTa config; the option is for T5",
                    args.config.display()
                );
            }
            let c: RobertaConfig = serde_json::from_value(value)
                .map_err(|e| cfg_err(format!("not a RoBERTa config: {e}")))?;
            check_vocab(&tokenizer, c.vocab_size, &args.config)?;
            let model = detox_models::init::init_roberta::<Flex>(&c, args.seed, &device)
                .map_err(cfg_err)?;
            write(&args.out, &args.tokenizer, |tmp| {
                detox_hub::save::write_roberta_files(&model, tmp).map_err(anyhow::Error::from)
            })?;
            c.num_parameters()
        }
        other => bail!(
            "{}: model_type `{other}` is not supported (expected \"t5\" or \"roberta\")",
            args.config.display()
        ),
    };
    println!(
        "wrote {}: {kind}, {params} parameters, seed {}",
        args.out.display(),
        args.seed
    );
    Ok(())
}

/// Writes the model files and a copy of the tokenizer through a temporary sibling directory that
/// replaces `out` only when complete.
fn write(out: &Path, tokenizer: &Path, files: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    detox_hub::atomic::write_dir_atomic::<anyhow::Error>(out, |tmp| {
        // The tokenizer's files first, so that the model's own files win on a name clash.
        detox_hub::copy_companion_files(tokenizer, tmp)?;
        files(tmp)
    })
}

/// The tokenizer's ids must fit the embedding (`vocab_size` may be larger: T5 pads to 32128).
fn check_vocab(tokenizer: &Path, vocab_size: usize, config: &Path) -> Result<()> {
    detox_hub::TextTokenizer::from_file(tokenizer, 0, usize::MAX, vocab_size).with_context(
        || {
            format!(
                "{}: vocab_size does not fit the tokenizer",
                config.display()
            )
        },
    )?;
    Ok(())
}

/// `generation_config.json` as transformers derives it from a T5 config.
fn write_generation_config(c: &T5Config, dir: &Path) -> Result<()> {
    let v = serde_json::json!({
        "decoder_start_token_id": c.decoder_start_token_id(),
        "eos_token_id": c.eos_token_id,
        "pad_token_id": c.pad_token_id,
    });
    let path = dir.join("generation_config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")
        .with_context(|| format!("{}: cannot write", path.display()))
}
