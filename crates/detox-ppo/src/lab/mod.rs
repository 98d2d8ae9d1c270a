//! The lab's PPO loop (`detox ppo`): DialogSum prompts, batched generation with a per-query
//! response length, RoBERTa rewards, `PPOTrainer.step`, stats, checkpoints and resume, toxicity
//! before and after, and the side-by-side comparison.
//!
//! One file per job: [`LabConfig`] and its sections and checks (`config.rs`); the prompts, each
//! step's batch and response lengths, and generation (`data.rs`); one iteration of the loop,
//! [`LabLoop::iteration`], with its [`Reward`] (`iteration.rs`); toxicity (`toxicity.rs`); the
//! policy and checkpoint files and the resume lookup (`checkpoint.rs`); the comparison table
//! (`report.rs`); the run itself, [`LabRun`] (`run.rs`); and [`LabError`] (`error.rs`).
//!
//! Run directory:
//! - `stats.jsonl`: one object per step — trl's stats (`objective/kl`, `ppo/loss/total`, ...),
//!   `env/reward_mean`, `env/reward_std` (what trl's `log_stats` adds) and `step`;
//! - `initial/`: the policy before training (adapter + value head), the "before" model of the
//!   comparison, also after `--resume`;
//! - `checkpoints/checkpoint-N/`: adapter (peft files) or full model, value head, Adam state
//!   (`optimizer.mpk`) and `ppo_state.json` (KL controller, score moments, step, seed);
//! - `checkpoints/final/`: the trained policy as a peft adapter directory plus the value head in
//!   `model.safetensors` (`v_head.summary.*`), which trl's `from_pretrained` reads;
//! - `toxicity_before.json`, `toxicity.json` ([`ToxicityReport`]), `comparison.csv`,
//!   `comparison.json`, `comparison.txt`;
//! - `.detox.lock`: the run's lock (`detox_train::runlock`), held by the one process writing here.
//!
//! Every file is written to a temporary name and renamed. The data order, the response lengths
//! and the sampling of step `k` depend only on `(seed, k)`, so a resumed run continues the same
//! run.

mod checkpoint;
mod config;
mod data;
mod error;
mod iteration;
mod report;
mod run;
mod toxicity;

pub use checkpoint::{
    latest_checkpoint, load_saved_policy, read_checkpoint_state, save_policy_dir, value_head_file,
    write_checkpoint, write_policy, CheckpointState, STATE_FILE,
};
pub use config::{
    lab_ppo, DataConfig, GenerationSettings, LabConfig, LoraSettings, ParallelSettings,
    RewardSettings, RunSettings, ToxicitySettings,
};
pub use data::{generate_responses, sample_lengths, split_dialogues, step_indices, Query};
pub use error::LabError;
pub use iteration::{ClassifierReward, IterationStats, LabLoop, Reward};
pub use report::{comparison_rows, write_comparison, ComparisonRow};
pub use run::{LabRun, LabSummary, RUN_OUTPUTS};
pub use toxicity::{
    evaluate_toxicity, toxicity_of, BeforeAfter, MeanStd, Toxicity, ToxicityReport,
};
