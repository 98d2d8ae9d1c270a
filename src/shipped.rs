//! The models detox ships (`models/` in the repository): a DialogSum summarizer and a toxicity
//! classifier trained by detox itself, used when a command is given no `--model` /
//! `--reward-model`.
//!
//! Where they are looked for, first hit wins:
//! 1. `$DETOX_MODELS/<name>`;
//! 2. `<directory of the detox executable>/models/<name>`, then
//!    `<that directory>/../share/detox/models/<name>` (an installed copy);
//! 3. `models/<name>` of the source tree the binary was built from (its path is compiled in), so
//!    `target/release/detox` finds them from any working directory.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// The DialogSum summarizer (T5, FLAN-T5's architecture): the default of `summarize`,
/// `evaluate`, `ppo` and `toxicity`.
pub const SUMMARIZER: &str = "dialogsum-t5";
/// The toxicity classifier (RoBERTa; labels nothate / hate): the default of `score` and the
/// reward model of `ppo` and `toxicity`.
pub const CLASSIFIER: &str = "toxicity-roberta";

/// The directories searched for shipped model `name`, in order.
pub fn candidates(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os("DETOX_MODELS") {
        out.push(PathBuf::from(dir).join(name));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
    {
        out.push(exe_dir.join("models").join(name));
        out.push(exe_dir.join("../share/detox/models").join(name));
    }
    out.push(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(name),
    );
    out
}

/// The shipped model `name`: the first candidate that holds a `config.json`.
pub fn shipped(name: &str) -> Result<PathBuf> {
    let tried = candidates(name);
    if let Some(dir) = tried.iter().find(|d| d.join("config.json").is_file()) {
        return Ok(dir.clone());
    }
    let list: Vec<String> = tried.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "no --model given and the shipped model `{name}` is not in any of: {} (set DETOX_MODELS to the directory holding it, or pass --model)",
        list.join(", ")
    )
}

/// `--model` as given (a directory or hub id, see `detox_hub::resolve_model`), else the shipped
/// model `name`.
pub fn model_or_shipped(arg: Option<&str>, name: &str) -> Result<PathBuf> {
    match arg {
        Some(a) => Ok(detox_hub::resolve_model(a)?),
        None => shipped(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detox_models_comes_first_and_a_missing_model_lists_where_it_looked() {
        let c = candidates("nope");
        assert!(c.last().unwrap().ends_with("models/nope"));
        let e = shipped("no-such-model").unwrap_err().to_string();
        assert!(
            e.contains("no-such-model") && e.contains("DETOX_MODELS"),
            "{e}"
        );
    }
}
