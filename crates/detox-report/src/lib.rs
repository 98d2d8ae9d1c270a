//! `detox report`: one self-contained HTML page of what runs did.
//!
//! [`build`] finds the runs in the given directories ([`runs::discover`]: a directory that
//! holds a run's files, or its immediate subdirectories that do), reads them, and renders:
//!
//! - fine-tuning / classifier runs (`metrics.jsonl`): train and eval loss, learning rate,
//!   gradient norm, throughput, and any other column the file has, against step;
//! - PPO runs (`stats.jsonl`): `env/reward_mean`, `objective/kl`, `objective/kl_coef`,
//!   `objective/entropy`, `ppo/loss/total`, `ppo/policy/clipfrac`, `ppo/val/error` and the
//!   seconds per step; toxicity before / after (`toxicity.json`, `toxicity_before.json`) with
//!   the lab's improvement; the per-prompt rewards before / after of `comparison.json` as two
//!   histograms on one axis, and its largest and smallest reward changes as a table;
//! - `detox evaluate` outputs (`evaluation.json`): ROUGE per model as a table and bars, the
//!   summaries side by side;
//! - each run's recorded settings (latest checkpoint state, final model config) in a
//!   collapsible block.
//!
//! Charts are SVG drawn by plotters ([`charts`]), inlined with CSS into one page ([`html`])
//! that loads nothing and runs no script. The crate only computes the page; the caller writes it.

pub mod charts;
mod error;
pub mod html;
pub mod metrics;
pub mod num;
pub mod runs;
mod sections;

use std::path::PathBuf;

pub use error::ReportError;
pub use runs::{discover, Run};

/// A rendered report.
#[derive(Debug, Clone)]
pub struct Report {
    pub html: String,
    /// `(directory, kinds)` of each run shown.
    pub runs: Vec<(PathBuf, Vec<&'static str>)>,
    pub charts: usize,
}

/// The report of the runs found in `dirs`.
pub fn build(dirs: &[PathBuf]) -> Result<Report, ReportError> {
    render(&discover(dirs)?)
}

/// The report of `runs`, in order.
pub fn render(runs: &[Run]) -> Result<Report, ReportError> {
    let sections = runs
        .iter()
        .enumerate()
        .map(|(i, r)| sections::run_section(i + 1, r))
        .collect::<Result<Vec<_>, _>>()?;
    let toc: Vec<(String, String)> = sections
        .iter()
        .map(|s| (s.id.clone(), s.heading.clone()))
        .collect();
    let bodies: Vec<String> = sections.iter().map(|s| s.html.clone()).collect();
    Ok(Report {
        html: html::page("detox run report", &toc, &bodies),
        runs: runs.iter().map(|r| (r.dir.clone(), r.kinds())).collect(),
        charts: sections.iter().map(|s| s.charts).sum(),
    })
}

#[cfg(test)]
mod tests;
