//! `detox convert`: a copy of a model directory with its safetensors weights in another float
//! type (bf16 halves the size of the shipped models; loading widens to f32 again). Converting a
//! training checkpoint gives a model directory: the training state beside its weights (optimizer
//! moments, trainer / PPO state) is left out, since it belongs to the f32 run, not to the copy.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use detox_hub::dtype::{convert_safetensors, FloatType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DtypeArg {
    F32,
    F16,
    Bf16,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ConvertArgs {
    /// The model directory to copy.
    #[arg(long)]
    pub model: PathBuf,
    /// The directory to write (must not exist yet, unless --overwrite).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum)]
    pub dtype: DtypeArg,
    #[arg(long)]
    pub overwrite: bool,
}

/// Files of a training checkpoint that are not part of the model, and are not copied.
const TRAINING_STATE: [&str; 3] = [
    detox_train::checkpoint::OPTIMIZER_FILE,
    detox_train::checkpoint::TRAINER_STATE_FILE,
    detox_ppo::lab::STATE_FILE,
];

/// Runs `detox convert`.
pub fn run(args: &ConvertArgs) -> Result<()> {
    if args.out.exists() && !args.overwrite {
        bail!(
            "{}: already exists; choose another --out or pass --overwrite",
            args.out.display()
        );
    }
    let (to, torch_dtype) = match args.dtype {
        DtypeArg::F32 => (FloatType::F32, "float32"),
        DtypeArg::F16 => (FloatType::F16, "float16"),
        DtypeArg::Bf16 => (FloatType::Bf16, "bfloat16"),
    };
    let weights = detox_hub::weight_files(&args.model)?;
    let mut converted = 0;
    detox_hub::atomic::write_dir_atomic::<anyhow::Error>(&args.out, |tmp| {
        for entry in std::fs::read_dir(&args.model)
            .with_context(|| format!("{}: cannot list", args.model.display()))?
        {
            let src = entry?.path();
            if !src.is_file() {
                continue;
            }
            let name = src.file_name().expect("a file name");
            if TRAINING_STATE.iter().any(|t| name == *t) {
                continue;
            }
            let dst = tmp.join(name);
            if weights.contains(&src) {
                converted += convert_safetensors(&src, &dst, to)?;
            } else if name == "config.json" {
                let mut v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&src)?)
                        .with_context(|| format!("{}: not valid JSON", src.display()))?;
                v["torch_dtype"] = torch_dtype.into();
                std::fs::write(&dst, serde_json::to_string_pretty(&v)? + "\n")?;
            } else {
                std::fs::write(&dst, std::fs::read(&src)?)?;
            }
        }
        Ok(())
    })?;
    println!(
        "wrote {}: {converted} tensors as {torch_dtype}",
        args.out.display()
    );
    Ok(())
}
