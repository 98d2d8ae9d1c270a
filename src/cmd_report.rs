//! `detox report`: one self-contained HTML page (inline SVG charts and CSS, no script, nothing
//! fetched) of the fine-tuning runs, PPO runs and `evaluate` outputs in the given directories
//! (the `detox-report` crate), written atomically.

use std::path::PathBuf;

use anyhow::{Context, Result};
use detox_hub::atomic::write_file_atomic;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Run directories: `detox finetune` / `train-classifier` outputs (metrics.jsonl),
    /// `detox ppo` outputs (stats.jsonl, toxicity.json, comparison.json), `detox evaluate`
    /// outputs (evaluation.json), or directories whose subdirectories are such runs.
    #[arg(value_name = "RUN_DIR", required = true)]
    pub dirs: Vec<PathBuf>,
    /// The HTML file to write (replaced atomically).
    #[arg(long, value_name = "FILE.html")]
    pub out: PathBuf,
}

/// Runs `detox report`: reads the runs, renders the page, writes `--out` (a temporary sibling
/// renamed into place) and says what it holds on stderr.
pub fn run(args: &ReportArgs) -> Result<()> {
    let report = detox_report::build(&args.dirs)?;
    write_file_atomic(&args.out, report.html.as_bytes())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    for (dir, kinds) in &report.runs {
        eprintln!("{}: {}", dir.display(), kinds.join(" + "));
    }
    eprintln!(
        "wrote {}: {} run(s), {} chart(s), {} bytes",
        args.out.display(),
        report.runs.len(),
        report.charts,
        report.html.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: ReportArgs,
    }

    #[test]
    fn clap_definition() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let a = Cli::try_parse_from(["report", "a", "b/c", "--out", "r.html"])
            .unwrap()
            .args;
        assert_eq!(a.dirs, [PathBuf::from("a"), PathBuf::from("b/c")]);
        assert_eq!(a.out, PathBuf::from("r.html"));
        assert!(
            Cli::try_parse_from(["report", "--out", "r.html"]).is_err(),
            "a dir is required"
        );
        assert!(
            Cli::try_parse_from(["report", "a"]).is_err(),
            "--out is required"
        );
    }
}
