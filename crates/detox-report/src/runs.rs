//! Finding runs in the directories given to `detox report` and reading their files: a
//! fine-tuning or classifier run (`metrics.jsonl`), a `detox ppo` run (`stats.jsonl`,
//! `toxicity_before.json`, `toxicity.json`, `comparison.json`), a `detox evaluate` output
//! (`evaluation.json`), and the settings each records (the latest checkpoint's
//! `trainer_state.json` or `ppo_state.json`, the final model's config, the classifier's
//! `eval_metrics.json` / `test_metrics.json`).
//!
//! The structs mirror what the writers in detox-train, detox-ppo and `src/cmd_evaluate.rs`
//! write; numbers that the writer may have stored as `null` (NaN) are `Option`s.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::ReportError;
use crate::metrics::MetricsLog;

pub const METRICS_FILE: &str = "metrics.jsonl";
pub const STATS_FILE: &str = "stats.jsonl";
pub const TOXICITY_BEFORE_FILE: &str = "toxicity_before.json";
pub const TOXICITY_FILE: &str = "toxicity.json";
pub const COMPARISON_FILE: &str = "comparison.json";
pub const EVALUATION_FILE: &str = "evaluation.json";

/// A file whose presence makes a directory a run.
const MARKERS: [&str; 6] = [
    METRICS_FILE,
    STATS_FILE,
    TOXICITY_BEFORE_FILE,
    TOXICITY_FILE,
    COMPARISON_FILE,
    EVALUATION_FILE,
];

/// One run directory and what it holds.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    /// `metrics.jsonl` of `detox finetune` / `detox train-classifier`.
    pub training: Option<MetricsLog>,
    pub ppo: Option<PpoRun>,
    pub evaluation: Option<Evaluation>,
    /// The JSON files that record the run's settings, in the order found.
    pub settings: Vec<SettingsFile>,
}

/// The files of a `detox ppo` run (any of them may be missing: a run in progress has only
/// `stats.jsonl` and `toxicity_before.json`).
#[derive(Debug, Clone, Default)]
pub struct PpoRun {
    pub stats: Option<MetricsLog>,
    pub toxicity_before: Option<Toxicity>,
    pub toxicity: Option<ToxicityReport>,
    pub comparison: Option<Vec<ComparisonRow>>,
}

/// `toxicity_before.json`: the initial policy's toxicity.
#[derive(Debug, Clone, Deserialize)]
pub struct Toxicity {
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub n: usize,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct MeanStd {
    pub mean: Option<f64>,
    pub std: Option<f64>,
}

/// `toxicity.json`: toxicity before and after, and the lab's percentage improvement.
#[derive(Debug, Clone, Deserialize)]
pub struct ToxicityReport {
    pub before: MeanStd,
    pub after: MeanStd,
    pub improvement_pct: MeanStd,
    pub label: String,
    pub samples: usize,
    /// P(label) of each test prompt's response (runs written before detox kept them lack it).
    #[serde(default)]
    pub scores: Option<Scores>,
}

/// Per-text toxicity before and after.
#[derive(Debug, Clone, Deserialize)]
pub struct Scores {
    pub before: Vec<f64>,
    pub after: Vec<f64>,
}

/// A row of `comparison.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ComparisonRow {
    pub query: String,
    pub response_before: String,
    pub response_after: String,
    pub reward_before: Option<f64>,
    pub reward_after: Option<f64>,
    pub reward_diff: Option<f64>,
}

/// `evaluation.json` of `detox evaluate`.
#[derive(Debug, Clone, Deserialize)]
pub struct Evaluation {
    pub dataset: String,
    pub samples: usize,
    #[serde(default)]
    pub dialogues: Vec<String>,
    #[serde(default)]
    pub human_baseline_summaries: Vec<String>,
    pub models: Vec<EvaluatedModel>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EvaluatedModel {
    pub name: String,
    pub model: String,
    pub adapter: Option<String>,
    pub rouge: Rouge,
    #[serde(default)]
    pub summaries: Vec<String>,
}

/// Mean ROUGE F-measures (`null` for NaN: no examples).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Rouge {
    pub rouge1: Option<f64>,
    pub rouge2: Option<f64>,
    #[serde(rename = "rougeL")]
    pub rouge_l: Option<f64>,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: Option<f64>,
}

impl Rouge {
    pub const NAMES: [&'static str; 4] = ["rouge1", "rouge2", "rougeL", "rougeLsum"];

    pub fn values(&self) -> [Option<f64>; 4] {
        [self.rouge1, self.rouge2, self.rouge_l, self.rouge_lsum]
    }
}

/// A JSON file of settings, named relative to the run directory.
#[derive(Debug, Clone)]
pub struct SettingsFile {
    pub name: String,
    pub value: serde_json::Value,
}

impl Run {
    /// What the run is, for headings: "fine-tuning", "PPO", "evaluation", joined by " + ".
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if let Some(log) = &self.training {
            let classifier =
                log.has("examples_per_s") || log.columns.iter().any(|c| c.starts_with("eval."));
            kinds.push(match classifier {
                true => "classifier training",
                false => "fine-tuning",
            });
        }
        if self.ppo.is_some() {
            kinds.push("PPO");
        }
        if self.evaluation.is_some() {
            kinds.push("evaluation");
        }
        kinds
    }
}

/// The runs of `dirs`, in order: a directory that holds a run's files is one run; otherwise
/// each of its immediate subdirectories that does (sorted by name). A directory with neither
/// is an error naming it.
pub fn discover(dirs: &[PathBuf]) -> Result<Vec<Run>, ReportError> {
    let mut runs = Vec::new();
    for dir in dirs {
        if !dir.exists() {
            return Err(ReportError::Missing { path: dir.clone() });
        }
        if !dir.is_dir() {
            return Err(ReportError::NotADirectory { path: dir.clone() });
        }
        if holds_run(dir) {
            runs.push(read_run(dir)?);
            continue;
        }
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(ReportError::io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && holds_run(p))
            .collect();
        if subdirs.is_empty() {
            return Err(ReportError::NoRun { dir: dir.clone() });
        }
        subdirs.sort();
        for sub in subdirs {
            runs.push(read_run(&sub)?);
        }
    }
    Ok(runs)
}

fn holds_run(dir: &Path) -> bool {
    MARKERS.iter().any(|m| dir.join(m).is_file())
}

/// Reads every file the report knows in `dir`.
pub fn read_run(dir: &Path) -> Result<Run, ReportError> {
    let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    let training = file(METRICS_FILE)
        .map(|p| MetricsLog::read(&p))
        .transpose()?;
    let ppo = PpoRun {
        stats: file(STATS_FILE).map(|p| MetricsLog::read(&p)).transpose()?,
        toxicity_before: file(TOXICITY_BEFORE_FILE)
            .map(|p| read_json(&p))
            .transpose()?,
        toxicity: file(TOXICITY_FILE).map(|p| read_json(&p)).transpose()?,
        comparison: file(COMPARISON_FILE).map(|p| read_json(&p)).transpose()?,
    };
    let has_ppo = ppo.stats.is_some()
        || ppo.toxicity_before.is_some()
        || ppo.toxicity.is_some()
        || ppo.comparison.is_some();
    let evaluation = file(EVALUATION_FILE).map(|p| read_json(&p)).transpose()?;
    Ok(Run {
        dir: dir.to_path_buf(),
        training,
        ppo: has_ppo.then_some(ppo),
        evaluation,
        settings: settings_files(dir)?,
    })
}

/// Reads and deserializes the JSON file `path`; an error names the file and what is wrong.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    let text = std::fs::read_to_string(path).map_err(ReportError::io(path))?;
    serde_json::from_str(&text).map_err(|e| ReportError::Json {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// The settings files of `dir`, those that exist: the latest fine-tuning / classifier
/// checkpoint's `trainer_state.json`, the latest PPO checkpoint's `ppo_state.json`, the final
/// model's `adapter_config.json` / `config.json`, a classifier's best and test metrics, a reward
/// model's held-out metrics, and `run_info.json` (version, command line, device, CPU per start).
fn settings_files(dir: &Path) -> Result<Vec<SettingsFile>, ReportError> {
    let mut names: Vec<String> = Vec::new();
    if let Some(ck) = latest_checkpoint(dir, "trainer_state.json") {
        names.push(format!("{ck}/trainer_state.json"));
    }
    if let Some(ck) = latest_checkpoint(&dir.join("checkpoints"), "ppo_state.json") {
        names.push(format!("checkpoints/{ck}/ppo_state.json"));
    }
    for name in [
        "final/adapter_config.json",
        "final/config.json",
        "checkpoints/final/adapter_config.json",
        "checkpoints/final/config.json",
        "best/eval_metrics.json",
        "test_metrics.json",
        "reward_metrics.json",
        "run_info.json",
    ] {
        names.push(name.to_string());
    }
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        if path.is_file() {
            let value = read_json(&path)?;
            out.push(SettingsFile { name, value });
        }
    }
    Ok(out)
}

/// The name of the `checkpoint-N` directory under `dir` with the largest N that holds `file`.
fn latest_checkpoint(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u64 = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().join(file).is_file().then_some((n, name))
        })
        .max()
        .map(|(_, name)| name)
}
