//! The loop of the runs that score a held-out set as they train — the sequence classifier
//! ([`crate::classifier`]) and the reward model ([`crate::reward`]): a step, the progress bar, an
//! evaluation every `eval_every` steps and at the end (the run keeps its best), a metrics row
//! every `log_every` steps and after each evaluation, checkpoints and SIGINT/SIGTERM
//! ([`crate::checkpoint::after_step`]).

use std::path::Path;

use serde::Serialize;

use crate::checkpoint::Checkpointed;
use crate::finetune::{io_err, TrainError};
use crate::runlog;

/// How often a scored run evaluates, logs and saves.
#[derive(Debug, Clone, Copy)]
pub struct LoopSettings {
    pub eval_every: Option<usize>,
    pub save_every: Option<usize>,
    pub log_every: usize,
    /// The metrics row's throughput key (`examples_per_s`, `pairs_per_s`).
    pub rate_key: &'static str,
}

/// What the loop needs of a run.
pub trait ScoredRun: Checkpointed {
    /// The held-out numbers of one evaluation (a metrics row's `eval`).
    type Eval: Serialize;

    /// One optimizer step: `(loss, lr, grad_norm, examples)`.
    fn train_step(&mut self) -> Result<(f64, f64, f64, usize), TrainError>;
    /// Scores the held-out set (`None` without one) and keeps the best model so far.
    fn evaluate_and_keep_best(&mut self) -> Result<Option<Self::Eval>, TrainError>;
    /// The line printed after an evaluation.
    fn eval_line(&self, e: &Self::Eval) -> String;
    fn total_steps(&self) -> usize;
    /// Passes over the training data so far.
    fn epoch_progress(&self) -> f64;
    fn loop_settings(&self) -> LoopSettings;
}

/// Trains `run` to its last step, appending to `metrics` (trimmed back to the checkpoint first
/// when `resumed`). Returns the first and the last training loss of this process.
pub fn run_scored<T: ScoredRun>(
    run: &mut T,
    metrics: &Path,
    resumed: bool,
    show_progress: bool,
) -> Result<(Option<f64>, Option<f64>), TrainError> {
    if resumed {
        runlog::trim_jsonl_to_step(metrics, run.steps_done()).map_err(io_err(metrics))?;
    }
    let s = run.loop_settings();
    let total = run.total_steps();
    let pb = runlog::progress_bar(total, run.steps_done(), show_progress);
    let (mut first_loss, mut last_loss) = (None, None);
    let mut window = runlog::Window::new();
    while run.steps_done() < total {
        let (loss, lr, norm, examples) = run.train_step()?;
        let step = run.steps_done();
        first_loss.get_or_insert(loss);
        last_loss = Some(loss);
        window.add(loss, examples);
        pb.set_position(step as u64);
        pb.set_message(format!("loss {loss:.4} lr {lr:.2e}"));
        let at_end = step == total;
        let eval = if at_end || s.eval_every.is_some_and(|n| step % n == 0) {
            run.evaluate_and_keep_best()?
        } else {
            None
        };
        if let Some(e) = &eval {
            pb.suspend(|| eprintln!("step {step}: {}", run.eval_line(e)));
        }
        if at_end || step % s.log_every == 0 || eval.is_some() {
            let mut row = window.row(step, run.epoch_progress(), lr, norm, s.rate_key);
            if let Some(e) = &eval {
                row["eval"] = serde_json::to_value(e).expect("json");
            }
            runlog::append_jsonl(metrics, &row).map_err(io_err(metrics))?;
            window = runlog::Window::new();
        }
        crate::checkpoint::after_step(run, s.save_every, total, &pb)?;
    }
    pb.finish_and_clear();
    Ok((first_loss, last_loss))
}
