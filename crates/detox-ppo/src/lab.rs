//! The lab's PPO loop (`detox ppo`): DialogSum prompts, batched generation with a per-query
//! response length, RoBERTa rewards, `PPOTrainer.step`, stats, checkpoints and resume, toxicity
//! before and after, and the side-by-side comparison.
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
//! - `toxicity.json`, `comparison.csv`, `comparison.json`, `comparison.txt`;
//! - `.detox.lock`: the run's lock (`detox_train::runlock`), held by the one process writing here.
//!
//! Every file is written to a temporary name and renamed. The data order, the response lengths
//! and the sampling of step `k` depend only on `(seed, k)`, so a resumed run continues the same
//! run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use detox_generate::{generate_with_limits, GenerationConfig};
use detox_hub::atomic::write_dir_atomic;
use detox_hub::{HubError, TextTokenizer};
use detox_models::{LoraConfig, T5ForConditionalGeneration};
use detox_rl::{PpoConfig, RlError};
use detox_train::data::{epoch_order, DataError, Example};
use detox_train::finetune::{load_optimizer, save_optimizer, TrainError};
use detox_train::interrupt::Interrupted;
use detox_train::runlock::{open_run_dir, RunDirError, RunStart};
use detox_train::runlog;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::model::{load_policy, reference_model, ReferenceKind, Seq2SeqLMWithValueHead};
use crate::reward::{improvement_pct, mean_std, Classifier, RewardOutput};
use crate::trainer::{PpoState, PpoTrainer};

/// Everything that stops `detox ppo` / `detox toxicity`; each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("PPO step {step}: {err}")]
    Step { step: usize, err: RlError },
    #[error("{0}")]
    Config(String),
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error(transparent)]
    RunDir(#[from] RunDirError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |e| LabError::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration (configs/lab.toml)
// ---------------------------------------------------------------------------------------------

/// Which DialogSum rows become prompts, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Keep dialogues longer than this many characters (the lab: `> 200`).
    pub min_chars: usize,
    /// ... and at most this many (`<= 1000`).
    pub max_chars: usize,
    /// `train_test_split(test_size=..., shuffle=False)`: the last `ceil(n · f)` rows are the test
    /// split (toxicity and comparison prompts), the rest train.
    pub test_fraction: f64,
    /// The prompt, with one `{dialogue}` slot.
    pub prompt: String,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            min_chars: 200,
            max_chars: 1000,
            test_fraction: 0.2,
            prompt: "Summarize the following conversation.\n\n{dialogue}\n\nSummary: ".into(),
        }
    }
}

/// Sampling of the responses during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationSettings {
    /// trl's `LengthSampler(min, max)`: each query's `max_new_tokens` is uniform in
    /// `[min, max)`.
    pub response_length: [usize; 2],
    pub min_length: usize,
    pub top_k: usize,
    pub top_p: f64,
    pub temperature: f64,
    pub do_sample: bool,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self {
            response_length: [100, 400],
            min_length: 5,
            top_k: 0,
            top_p: 1.0,
            temperature: 1.0,
            do_sample: true,
        }
    }
}

impl GenerationSettings {
    fn config(&self, max_new_tokens: usize) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens,
            min_length: self.min_length,
            do_sample: self.do_sample,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            ..GenerationConfig::default()
        }
    }

    fn validate(&self) -> Result<(), LabError> {
        let [lo, hi] = self.response_length;
        if lo == 0 || hi <= lo {
            return Err(LabError::Config(format!(
                "generation.response_length must be [min, max) with 1 <= min < max (got [{lo}, {hi}])"
            )));
        }
        self.config(hi - 1)
            .validate()
            .map_err(|e| LabError::Config(format!("generation: {e}")))
    }
}

/// The reward: which label of the classifier, as logit or probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardSettings {
    pub label: String,
    pub output: RewardOutput,
    pub batch_size: usize,
    /// Build the reward text as the lab does: `query + response` where both are
    /// `tokenizer.decode(ids)` *with* special tokens (`<pad>`, `</s>`). `false` decodes them
    /// with `skip_special_tokens=True`.
    pub special_tokens_in_text: bool,
}

impl Default for RewardSettings {
    fn default() -> Self {
        Self {
            label: "nothate".into(),
            output: RewardOutput::Logit,
            batch_size: 16,
            special_tokens_in_text: true,
        }
    }
}

/// `evaluate.load("toxicity", ..., toxic_label="hate")` on the first `samples + 1` test prompts
/// (the lab's loop breaks at `i > num_samples`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToxicitySettings {
    pub label: String,
    pub samples: usize,
    pub max_new_tokens: usize,
    pub batch_size: usize,
}

impl Default for ToxicitySettings {
    fn default() -> Self {
        Self {
            label: "hate".into(),
            samples: 10,
            max_new_tokens: 100,
            batch_size: 16,
        }
    }
}

/// The adapter added when no `--adapter` is given (the lab's peft config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSettings {
    /// `false`: train every parameter instead (reference: a frozen copy).
    pub enabled: bool,
    pub r: usize,
    pub lora_alpha: f64,
    pub target_modules: Vec<String>,
    pub lora_dropout: f64,
}

impl Default for LoraSettings {
    fn default() -> Self {
        let lab = LoraConfig::lab();
        Self {
            enabled: true,
            r: lab.r,
            lora_alpha: lab.lora_alpha,
            target_modules: vec!["q".into(), "v".into()],
            lora_dropout: lab.lora_dropout,
        }
    }
}

/// Length of the run and its outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    /// The lab's `max_ppo_steps`.
    pub max_steps: usize,
    /// Checkpoint every N steps (one is always written at the end).
    pub save_every: usize,
    pub seed: u64,
    pub reference: ReferenceKind,
    /// Rows of the comparison table (the lab: 20).
    pub compare_samples: usize,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            max_steps: 10,
            save_every: 5,
            seed: 42,
            reference: ReferenceKind::Base,
            compare_samples: 20,
        }
    }
}

/// `configs/lab.toml`: every section optional, missing keys take the lab's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabConfig {
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub generation: GenerationSettings,
    /// trl's `PPOConfig` fields under their trl names.
    #[serde(default = "lab_ppo")]
    pub ppo: PpoConfig,
    #[serde(default)]
    pub reward: RewardSettings,
    #[serde(default)]
    pub toxicity: ToxicitySettings,
    #[serde(default)]
    pub lora: LoraSettings,
    #[serde(default)]
    pub run: RunSettings,
}

/// The lab's `PPOConfig(learning_rate=1.41e-5, ppo_epochs=1, mini_batch_size=4, batch_size=16)`.
pub fn lab_ppo() -> PpoConfig {
    PpoConfig {
        learning_rate: 1.41e-5,
        ppo_epochs: 1,
        mini_batch_size: 4,
        batch_size: 16,
        ..PpoConfig::default()
    }
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            data: DataConfig::default(),
            generation: GenerationSettings::default(),
            ppo: lab_ppo(),
            reward: RewardSettings::default(),
            toxicity: ToxicitySettings::default(),
            lora: LoraSettings::default(),
            run: RunSettings::default(),
        }
    }
}

impl LabConfig {
    /// Reads a TOML file; unknown keys and wrong types are errors naming the file.
    pub fn from_file(path: &Path) -> Result<Self, LabError> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        toml::from_str(&text).map_err(|e| LabError::File {
            path: path.to_path_buf(),
            msg: format!("not a valid PPO config: {e}"),
        })
    }

    pub fn validate(&self) -> Result<(), LabError> {
        self.check_counts()?;
        self.check_reals()?;
        self.ppo
            .validate()
            .map_err(|e| LabError::Config(format!("ppo: {e}")))?;
        self.generation.validate()?;
        if !self.data.prompt.contains("{dialogue}") {
            return Err(LabError::Config(
                "data.prompt needs a {dialogue} slot".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.data.test_fraction) {
            return Err(LabError::Config(
                "data.test_fraction must be in [0, 1)".into(),
            ));
        }
        if self.lora.enabled {
            self.lora_config()
                .validate()
                .map_err(|e| LabError::Config(format!("lora: {e}")))?;
        }
        Ok(())
    }

    /// Every count the run divides by or loops over is at least 1.
    fn check_counts(&self) -> Result<(), LabError> {
        let p = &self.ppo;
        let counts = [
            ("ppo.batch_size", p.batch_size),
            ("ppo.mini_batch_size", p.mini_batch_size),
            (
                "ppo.gradient_accumulation_steps",
                p.gradient_accumulation_steps,
            ),
            ("ppo.ppo_epochs", p.ppo_epochs),
            ("run.max_steps", self.run.max_steps),
            ("run.save_every", self.run.save_every),
            ("reward.batch_size", self.reward.batch_size),
            ("toxicity.batch_size", self.toxicity.batch_size),
            ("toxicity.max_new_tokens", self.toxicity.max_new_tokens),
            ("data.max_chars", self.data.max_chars),
        ];
        match counts.iter().find(|(_, v)| *v == 0) {
            Some((key, _)) => Err(LabError::Config(format!(
                "{} must be at least 1, got 0",
                setting_name(key)
            ))),
            None => Ok(()),
        }
    }

    /// Every real-valued setting is finite and in its range.
    fn check_reals(&self) -> Result<(), LabError> {
        let p = &self.ppo;
        let positive = [
            ("ppo.learning_rate", Some(p.learning_rate)),
            ("ppo.target", Some(p.target)),
            ("ppo.horizon", Some(p.horizon)),
            ("ppo.cliprange", Some(p.cliprange)),
            ("ppo.cliprange_value", Some(p.cliprange_value)),
            ("ppo.target_kl", Some(p.target_kl)),
            ("ppo.ratio_threshold", Some(p.ratio_threshold)),
            ("ppo.max_grad_norm", p.max_grad_norm),
            ("ppo.score_clip", p.score_clip),
            ("generation.temperature", Some(self.generation.temperature)),
        ];
        let ranged = [
            ("ppo.init_kl_coef", p.init_kl_coef, 0.0, f64::INFINITY),
            ("ppo.vf_coef", p.vf_coef, 0.0, f64::INFINITY),
            ("ppo.gamma", p.gamma, 0.0, 1.0),
            ("ppo.lam", p.lam, 0.0, 1.0),
        ];
        for (key, v) in positive.iter().filter_map(|(k, v)| Some((k, (*v)?))) {
            if !(v.is_finite() && v > 0.0) {
                return Err(LabError::Config(format!(
                    "{} must be a finite number > 0, got {v}",
                    setting_name(key)
                )));
            }
        }
        for (key, v, lo, hi) in ranged {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                let range = match hi.is_finite() {
                    true => format!("in [{lo}, {hi}]"),
                    false => format!(">= {lo}"),
                };
                return Err(LabError::Config(format!(
                    "{} must be a finite number {range}, got {v}",
                    setting_name(key)
                )));
            }
        }
        Ok(())
    }

    pub fn lora_config(&self) -> LoraConfig {
        let targets: Vec<&str> = self
            .lora
            .target_modules
            .iter()
            .map(String::as_str)
            .collect();
        LoraConfig::new(
            self.lora.r,
            self.lora.lora_alpha,
            &targets,
            self.lora.lora_dropout,
        )
    }
}

/// A config key as errors name it: `[section] key`, with the `detox ppo` flag that overrides it.
fn setting_name(key: &str) -> String {
    let flag = match key {
        "ppo.batch_size" => "--batch-size",
        "ppo.mini_batch_size" => "--mini-batch-size",
        "ppo.ppo_epochs" => "--ppo-epochs",
        "ppo.learning_rate" => "--learning-rate",
        "run.max_steps" => "--max-steps",
        "run.save_every" => "--save-every",
        _ => return key.to_string(),
    };
    format!("{flag} ({key})")
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// One prompt: its ids (`tokenizer.encode(prompt)`, EOS included) and the lab's `query` text
/// (`tokenizer.decode(input_ids)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub input_ids: Vec<u32>,
    pub text: String,
}

/// The lab's `build_dataset`: the rows with `min_chars < len(dialogue) <= max_chars`
/// (characters, as Python's `len`), split without shuffling.
pub fn split_dialogues(rows: &[Example], cfg: &DataConfig) -> (Vec<Example>, Vec<Example>) {
    let kept: Vec<Example> = rows
        .iter()
        .filter(|r| {
            let n = r.dialogue.chars().count();
            n > cfg.min_chars && n <= cfg.max_chars
        })
        .cloned()
        .collect();
    // sklearn / datasets: n_test = ceil(test_size * n)
    let n_test = (cfg.test_fraction * kept.len() as f64).ceil() as usize;
    let n_train = kept.len() - n_test.min(kept.len());
    let test = kept[n_train..].to_vec();
    let mut train = kept;
    train.truncate(n_train);
    (train, test)
}

fn encode_queries(
    rows: &[Example],
    cfg: &DataConfig,
    tok: &TextTokenizer,
    special_in_text: bool,
) -> Result<Vec<Query>, LabError> {
    rows.iter()
        .map(|r| {
            let prompt = cfg.prompt.replace("{dialogue}", &r.dialogue);
            let input_ids = tok.encode(&prompt)?;
            let text = if special_in_text {
                tok.decode_with_special(&input_ids)?
            } else {
                tok.decode(&input_ids)?
            };
            Ok(Query { input_ids, text })
        })
        .collect()
}

/// The example indices of PPO step `step` (0-based): trl's dataloader (`shuffle=True`,
/// `drop_last=True`) as a seeded order per epoch.
pub fn step_indices(n: usize, batch_size: usize, seed: u64, step: usize) -> Vec<usize> {
    let per_epoch = n / batch_size;
    let epoch = step / per_epoch;
    let b = step % per_epoch;
    epoch_order(n, seed, epoch as u64)[b * batch_size..(b + 1) * batch_size].to_vec()
}

fn step_rng(seed: u64, step: usize, salt: u64) -> StdRng {
    StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03))
            .wrapping_add(step as u64 + 1),
    )
}

/// trl's `LengthSampler(min, max)`: uniform in `[min, max)`.
pub fn sample_lengths(n: usize, [lo, hi]: [usize; 2], rng: &mut StdRng) -> Vec<usize> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Generates one response per query in a single batched call, each with its own length limit:
/// `[decoder_start, t1, ..., tk(, eos)]` as trl's `generate` returns it for an encoder-decoder
/// (start token kept, cut after the first EOS).
pub fn generate_responses<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    queries: &[&[u32]],
    limits: &[usize],
    settings: &GenerationSettings,
    rng: &mut StdRng,
    device: &B::Device,
) -> Vec<Vec<u32>> {
    let pad = model.config.pad_token_id;
    let rows: Vec<Vec<u32>> = queries.iter().map(|q| q.to_vec()).collect();
    let batch = detox_hub::tokenizer::pad_batch(rows, pad);
    let shape = [batch.batch, batch.len];
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(batch.ids, shape), device);
    let mask = Tensor::<B, 2, Int>::from_data(TensorData::new(batch.mask, shape), device);
    let max = limits.iter().copied().max().unwrap_or(1);
    let start = model.config.decoder_start_token_id();
    generate_with_limits(model, ids, mask, &settings.config(max), limits, rng)
        .into_iter()
        .map(|toks| std::iter::once(start).chain(toks).collect())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Toxicity
// ---------------------------------------------------------------------------------------------

/// Toxicity of one model on prompts: per-text probabilities and their mean / std.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Toxicity {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

/// The lab's `evaluate_toxicity`: for the first `samples + 1` queries, sample up to
/// `max_new_tokens` (top_k 0, top_p 1.0, no min_length), text = `query + " " + response`
/// (response decoded without special tokens), toxicity = softmax probability of the toxic
/// label; mean and population std.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_toxicity<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    t5_tok: &TextTokenizer,
    classifier: &Classifier<B>,
    toxic_label: usize,
    queries: &[Query],
    settings: &ToxicitySettings,
    seed: u64,
    device: &B::Device,
) -> Result<(Toxicity, Vec<f32>), LabError> {
    let n = (settings.samples + 1).min(queries.len());
    let gen = GenerationSettings {
        response_length: [settings.max_new_tokens, settings.max_new_tokens + 1],
        min_length: 0,
        top_k: 0,
        top_p: 1.0,
        temperature: 1.0,
        do_sample: true,
    };
    let mut rng = step_rng(seed, 0, 7);
    let mut texts = Vec::with_capacity(n);
    for chunk in queries[..n].chunks(settings.batch_size.max(1)) {
        let ids: Vec<&[u32]> = chunk.iter().map(|q| q.input_ids.as_slice()).collect();
        let limits = vec![settings.max_new_tokens; chunk.len()];
        let responses = generate_responses(model, &ids, &limits, &gen, &mut rng, device);
        for (q, r) in chunk.iter().zip(&responses) {
            texts.push(format!("{} {}", q.text, t5_tok.decode(r)?));
        }
    }
    let probs = classifier.scores(&texts, toxic_label, RewardOutput::Probability)?;
    let (mean, std) = mean_std(&probs);
    Ok((Toxicity { mean, std, n }, probs))
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LabError> {
    runlog::write_atomic(path, bytes).map_err(io_err(path))
}

const STATE_FILE: &str = "ppo_state.json";
const OPTIMIZER_FILE: &str = "optimizer.mpk";
const STATS_FILE: &str = "stats.jsonl";
/// What a PPO run writes into its directory (`--overwrite` deletes these, and only these).
pub const RUN_OUTPUTS: &[&str] = &[
    STATS_FILE,
    "initial",
    "checkpoints",
    "toxicity_before.json",
    "toxicity.json",
    "comparison.csv",
    "comparison.json",
    "comparison.txt",
];

/// What `ppo_state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub step: usize,
    pub ppo: PpoState,
    pub base_model: String,
    pub lora: Option<LoraConfig>,
    pub config: LabConfig,
}

/// The value-head file of a policy directory: `model.safetensors` next to a peft adapter (where
/// trl's `from_pretrained` looks), `v_head.safetensors` next to a full model.
pub fn value_head_file(dir: &Path) -> PathBuf {
    if dir.join("adapter_config.json").is_file() {
        dir.join("model.safetensors")
    } else {
        dir.join("v_head.safetensors")
    }
}

/// Writes the policy into the existing directory `dir`: the adapter files (or the full T5
/// files and the base model's tokenizer) and the value head.
pub fn write_policy<B: Backend>(
    policy: &Seq2SeqLMWithValueHead<B>,
    lora: Option<&LoraConfig>,
    base_model: &Path,
    dir: &Path,
) -> Result<(), LabError> {
    match lora {
        Some(lc) => {
            let to_hf = detox_hub::models::t5_name_map_to_hf();
            detox_hub::write_adapter_files(&policy.pretrained_model, lc, dir, &to_hf)?;
        }
        None => {
            detox_hub::save::write_t5_files(&policy.pretrained_model, dir)?;
            detox_hub::copy_companion_files(base_model, dir)?;
        }
    }
    detox_hub::save_value_head(&policy.v_head, &value_head_file(dir))?;
    Ok(())
}

/// [`write_policy`] into a fresh temporary sibling of `dir`, then moved onto `dir`.
pub fn save_policy_dir<B: Backend>(
    policy: &Seq2SeqLMWithValueHead<B>,
    lora: Option<&LoraConfig>,
    base_model: &Path,
    dir: &Path,
) -> Result<(), LabError> {
    write_dir_atomic(dir, |tmp| write_policy(policy, lora, base_model, tmp))
}

/// The highest `checkpoint-N` under `dir` that holds a PPO state file.
pub fn latest_checkpoint(dir: &Path) -> Option<PathBuf> {
    detox_train::finetune::latest_checkpoint_holding(dir, STATE_FILE)
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// Paths and switches of `detox ppo` (the rest is in [`LabConfig`]).
#[derive(Debug, Clone)]
pub struct LabRun {
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
    pub reward_model: PathBuf,
    pub dataset: PathBuf,
    pub out: PathBuf,
    /// Refuse a directory that holds a run, continue it, or delete it first.
    pub start: RunStart,
    pub progress: bool,
    pub config: LabConfig,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabSummary {
    pub steps: usize,
    pub train_prompts: usize,
    pub test_prompts: usize,
    pub toxicity: serde_json::Value,
    pub final_dir: PathBuf,
}

/// One row of the comparison table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComparisonRow {
    pub query: String,
    pub response_before: String,
    pub response_after: String,
    pub reward_before: f32,
    pub reward_after: f32,
    pub reward_diff: f32,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn one_line(s: &str, width: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= width {
        flat
    } else {
        let mut t: String = flat.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Writes `comparison.{csv,json,txt}` (rows sorted by `reward_diff`, descending).
pub fn write_comparison(out: &Path, rows: &[ComparisonRow]) -> Result<(), LabError> {
    let mut csv = String::from(
        "query,response_before,response_after,reward_before,reward_after,reward_diff\n",
    );
    for r in rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{}\n",
            csv_field(&r.query),
            csv_field(&r.response_before),
            csv_field(&r.response_after),
            r.reward_before,
            r.reward_after,
            r.reward_diff
        ));
    }
    write_atomic(&out.join("comparison.csv"), csv.as_bytes())?;
    let json = serde_json::to_string_pretty(rows).expect("json") + "\n";
    write_atomic(&out.join("comparison.json"), json.as_bytes())?;
    let mut txt = format!(
        "{:>3}  {:<40}  {:<30}  {:<30}  {:>9}  {:>9}  {:>9}\n",
        "#", "query", "response_before", "response_after", "before", "after", "diff"
    );
    for (i, r) in rows.iter().enumerate() {
        txt.push_str(&format!(
            "{:>3}  {:<40}  {:<30}  {:<30}  {:>9.4}  {:>9.4}  {:>9.4}\n",
            i,
            one_line(&r.query, 40),
            one_line(&r.response_before, 30),
            one_line(&r.response_after, 30),
            r.reward_before,
            r.reward_after,
            r.reward_diff
        ));
    }
    write_atomic(&out.join("comparison.txt"), txt.as_bytes())
}

struct Prepared<B: AutodiffBackend> {
    trainer: PpoTrainer<B>,
    initial: Seq2SeqLMWithValueHead<B::InnerBackend>,
    lora: Option<LoraConfig>,
    start_step: usize,
}

impl LabRun {
    fn checkpoints(&self) -> PathBuf {
        self.out.join("checkpoints")
    }

    fn resuming(&self) -> bool {
        self.start == RunStart::Resume
    }

    fn prepare<B: AutodiffBackend>(&self, device: &B::Device) -> Result<Prepared<B>, LabError> {
        let cfg = &self.config;
        let initial_dir = self.out.join("initial");
        let resume_from = if self.resuming() {
            Some(latest_checkpoint(&self.checkpoints()).ok_or_else(|| {
                LabError::Config(format!(
                    "--resume: no checkpoint-N with {STATE_FILE} under {}",
                    self.checkpoints().display()
                ))
            })?)
        } else {
            None
        };
        B::seed(device, cfg.run.seed);
        let fresh_lora = (cfg.lora.enabled && self.adapter.is_none()).then(|| cfg.lora_config());
        let (policy, lora, start_step, state, optim_file) = match &resume_from {
            None => {
                let (p, l) = load_policy::<B>(
                    &self.model,
                    self.adapter.as_deref(),
                    fresh_lora.as_ref(),
                    None,
                    device,
                )?;
                (p, l, 0, None, None)
            }
            Some(ck) => {
                let path = ck.join(STATE_FILE);
                let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
                let st: CheckpointState =
                    serde_json::from_str(&text).map_err(|e| LabError::File {
                        path: path.clone(),
                        msg: format!("not a detox PPO state: {e}"),
                    })?;
                let (p, l) = if st.lora.is_some() {
                    load_policy::<B>(
                        &self.model,
                        Some(ck),
                        None,
                        Some(&value_head_file(ck)),
                        device,
                    )?
                } else {
                    load_policy::<B>(ck, None, None, Some(&value_head_file(ck)), device)?
                };
                (p, l, st.step, Some(st.ppo), Some(ck.join(OPTIMIZER_FILE)))
            }
        };
        // The "before" model and the reference of kind `initial`.
        let initial = if resume_from.is_none() {
            save_policy_dir(&policy, lora.as_ref(), &self.model, &initial_dir)?;
            policy.valid()
        } else if lora.is_some() {
            load_policy::<B::InnerBackend>(
                &self.model,
                Some(&initial_dir),
                None,
                Some(&value_head_file(&initial_dir)),
                device,
            )?
            .0
        } else {
            load_policy::<B::InnerBackend>(
                &initial_dir,
                None,
                None,
                Some(&value_head_file(&initial_dir)),
                device,
            )?
            .0
        };
        let reference = match (cfg.run.reference, lora.is_some()) {
            (ReferenceKind::Base, true) => {
                reference_model(&policy.valid().pretrained_model, ReferenceKind::Base)
            }
            _ => initial.pretrained_model.clone(),
        };
        let mut trainer = PpoTrainer::new(policy, reference, cfg.ppo.clone(), cfg.run.seed, device)
            .map_err(|err| LabError::Step { step: 0, err })?;
        if let Some(st) = state {
            trainer.state = st;
        }
        if let Some(f) = optim_file {
            let optim = load_optimizer(
                detox_train::optim::adamw(0.0).init(),
                trainer.policy(),
                &f,
                device,
            )?;
            trainer.set_optimizer(optim);
        }
        Ok(Prepared {
            trainer,
            initial,
            lora,
            start_step,
        })
    }

    fn save_checkpoint<B: AutodiffBackend>(
        &self,
        p: &Prepared<B>,
        step: usize,
    ) -> Result<PathBuf, LabError> {
        let dir = self.checkpoints().join(format!("checkpoint-{step}"));
        write_dir_atomic(&dir, |tmp| {
            let policy = p.trainer.policy().valid();
            write_policy(&policy, p.lora.as_ref(), &self.model, tmp)?;
            save_optimizer(
                p.trainer.optimizer(),
                p.trainer.policy(),
                &tmp.join(OPTIMIZER_FILE),
            )?;
            let state = CheckpointState {
                step,
                ppo: p.trainer.state.clone(),
                base_model: self.model.display().to_string(),
                lora: p.lora.clone(),
                config: self.config.clone(),
            };
            let path = tmp.join(STATE_FILE);
            runlog::write_json_pretty(&path, &state).map_err(io_err(&path))
        })?;
        Ok(dir)
    }

    fn trim_stats(&self, step: usize) -> Result<(), LabError> {
        let path = self.out.join(STATS_FILE);
        runlog::trim_jsonl_to_step(&path, step).map_err(io_err(&path))
    }

    fn append_stats(&self, row: &serde_json::Value) -> Result<(), LabError> {
        let path = self.out.join(STATS_FILE);
        runlog::append_jsonl(&path, row).map_err(io_err(&path))
    }

    /// Runs the lab to `config.run.max_steps` and writes every output.
    pub fn run<B: AutodiffBackend>(&self, device: &B::Device) -> Result<LabSummary, LabError> {
        let cfg = &self.config;
        cfg.validate()?;
        let _lock = open_run_dir(&self.out, self.start, RUN_OUTPUTS)?;

        // data
        let rows = detox_train::data::read_jsonl(&self.dataset, None)?;
        let (train_rows, test_rows) = split_dialogues(&rows, &cfg.data);
        if train_rows.len() < cfg.ppo.batch_size {
            return Err(LabError::Config(format!(
                "{}: {} dialogue(s) of {}-{} characters for training, fewer than batch_size {}",
                self.dataset.display(),
                train_rows.len(),
                cfg.data.min_chars + 1,
                cfg.data.max_chars,
                cfg.ppo.batch_size
            )));
        }
        let t5_config: detox_models::T5Config = detox_hub::read_config(&self.model)?;
        let t5_tok = TextTokenizer::from_dir(
            &self.model,
            t5_config.pad_token_id,
            usize::MAX,
            t5_config.vocab_size,
        )?;
        let special = cfg.reward.special_tokens_in_text;
        let train = encode_queries(&train_rows, &cfg.data, &t5_tok, special)?;
        let test = encode_queries(&test_rows, &cfg.data, &t5_tok, special)?;

        // models
        let inner = device.clone();
        let classifier =
            Classifier::<B::InnerBackend>::load(&self.reward_model, cfg.reward.batch_size, &inner)?;
        let reward_label = classifier.label(&cfg.reward.label)?;
        let toxic_label = classifier.label(&cfg.toxicity.label)?;
        let mut p = self.prepare::<B>(device)?;
        let toxicity_of_model = |m: &T5ForConditionalGeneration<B::InnerBackend>| {
            evaluate_toxicity(
                m,
                &t5_tok,
                &classifier,
                toxic_label,
                &test,
                &cfg.toxicity,
                cfg.run.seed,
                &inner,
            )
        };

        // toxicity before (kept across --resume)
        let tox_before_file = self.out.join("toxicity_before.json");
        let before: Toxicity = match std::fs::read_to_string(&tox_before_file) {
            Ok(text) if self.resuming() => {
                serde_json::from_str(&text).map_err(|e| LabError::File {
                    path: tox_before_file.clone(),
                    msg: e.to_string(),
                })?
            }
            _ => {
                let (t, _) = toxicity_of_model(&p.initial.pretrained_model)?;
                write_atomic(
                    &tox_before_file,
                    serde_json::to_string(&t).expect("json").as_bytes(),
                )?;
                t
            }
        };
        if self.resuming() {
            self.trim_stats(p.start_step)?;
        }

        // training
        let total = cfg.run.max_steps;
        let pb = runlog::progress_bar(total, p.start_step, self.progress);
        let mut last_saved = p.start_step;
        for step in p.start_step..total {
            let t0 = Instant::now();
            let idx = step_indices(train.len(), cfg.ppo.batch_size, cfg.run.seed, step);
            let queries: Vec<&Query> = idx.iter().map(|&i| &train[i]).collect();
            let mut rng = step_rng(cfg.run.seed, step, 1);
            let limits = sample_lengths(queries.len(), cfg.generation.response_length, &mut rng);
            let ids: Vec<&[u32]> = queries.iter().map(|q| q.input_ids.as_slice()).collect();
            let policy_eval = p.trainer.policy().valid();
            let responses = generate_responses(
                &policy_eval.pretrained_model,
                &ids,
                &limits,
                &cfg.generation,
                &mut rng,
                &inner,
            );
            drop(policy_eval);
            let t_gen = t0.elapsed().as_secs_f64();
            let texts = queries
                .iter()
                .zip(&responses)
                .map(|(q, r)| {
                    let resp = if special {
                        t5_tok.decode_with_special(r)?
                    } else {
                        t5_tok.decode(r)?
                    };
                    Ok(format!("{}{}", q.text, resp))
                })
                .collect::<Result<Vec<_>, LabError>>()?;
            let t1 = Instant::now();
            let scores = classifier.scores(&texts, reward_label, cfg.reward.output)?;
            let t_reward = t1.elapsed().as_secs_f64();
            let query_ids: Vec<Vec<u32>> = queries.iter().map(|q| q.input_ids.clone()).collect();
            let out = p
                .trainer
                .step(&query_ids, &responses, &scores)
                .map_err(|err| LabError::Step {
                    step: step + 1,
                    err,
                })?;
            let (rmean, rstd) = {
                // trl's log_stats: mean and (unbiased) std of the rewards
                let n = scores.len() as f64;
                let m = scores.iter().map(|&s| s as f64).sum::<f64>() / n;
                let v = scores.iter().map(|&s| (s as f64 - m).powi(2)).sum::<f64>() / (n - 1.0);
                (m, v.sqrt())
            };
            let mut row = serde_json::Map::new();
            row.insert("step".into(), (step + 1).into());
            row.insert("env/reward_mean".into(), rmean.into());
            row.insert("env/reward_std".into(), rstd.into());
            for (k, v) in &out.stats {
                row.insert(k.clone(), serde_json::json!(v));
            }
            row.insert("time/generate".into(), t_gen.into());
            row.insert("time/reward".into(), t_reward.into());
            row.insert("time/iteration".into(), t0.elapsed().as_secs_f64().into());
            self.append_stats(&serde_json::Value::Object(row))?;
            pb.set_position((step + 1) as u64);
            pb.set_message(format!(
                "reward {rmean:.3} kl {:.3} {:.1}s/step",
                out.stats["objective/kl"],
                t0.elapsed().as_secs_f64()
            ));
            if (step + 1) % cfg.run.save_every == 0 {
                let dir = self.save_checkpoint(&p, step + 1)?;
                last_saved = step + 1;
                pb.suspend(|| eprintln!("step {}: saved {}", step + 1, dir.display()));
            }
            if detox_train::interrupt::requested() && step + 1 < total {
                pb.finish_and_clear();
                let checkpoint = if last_saved == step + 1 {
                    self.checkpoints().join(format!("checkpoint-{}", step + 1))
                } else {
                    self.save_checkpoint(&p, step + 1)?
                };
                return Err(TrainError::from(Interrupted {
                    step: step + 1,
                    checkpoint,
                })
                .into());
            }
        }
        pb.finish_and_clear();
        if last_saved != total || latest_checkpoint(&self.checkpoints()).is_none() {
            self.save_checkpoint(&p, total)?;
        }
        let final_dir = self.checkpoints().join("final");
        save_policy_dir(
            &p.trainer.policy().valid(),
            p.lora.as_ref(),
            &self.model,
            &final_dir,
        )?;

        // toxicity after, comparison
        let trained = p.trainer.policy().valid();
        let (after, _) = toxicity_of_model(&trained.pretrained_model)?;
        let toxicity = serde_json::json!({
            "before": {"mean": before.mean, "std": before.std},
            "after": {"mean": after.mean, "std": after.std},
            "improvement_pct": {
                "mean": improvement_pct(before.mean, after.mean),
                "std": improvement_pct(before.std, after.std),
            },
            "samples": after.n,
            "label": cfg.toxicity.label,
        });
        write_atomic(
            &self.out.join("toxicity.json"),
            (serde_json::to_string_pretty(&toxicity).expect("json") + "\n").as_bytes(),
        )?;

        let n = cfg.run.compare_samples.min(test.len());
        let cmp_q = &test[..n];
        let ids: Vec<&[u32]> = cmp_q.iter().map(|q| q.input_ids.as_slice()).collect();
        let mut rng = step_rng(cfg.run.seed, 0, 3);
        let limits = sample_lengths(n, cfg.generation.response_length, &mut rng);
        let mut rng_b = step_rng(cfg.run.seed, 1, 3);
        let mut rng_a = step_rng(cfg.run.seed, 2, 3);
        let before_r = generate_responses(
            &p.initial.pretrained_model,
            &ids,
            &limits,
            &cfg.generation,
            &mut rng_b,
            &inner,
        );
        let after_r = generate_responses(
            &trained.pretrained_model,
            &ids,
            &limits,
            &cfg.generation,
            &mut rng_a,
            &inner,
        );
        let dec = |r: &Vec<u32>| {
            if special {
                t5_tok.decode_with_special(r)
            } else {
                t5_tok.decode(r)
            }
        };
        let before_txt = before_r.iter().map(dec).collect::<Result<Vec<_>, _>>()?;
        let after_txt = after_r.iter().map(dec).collect::<Result<Vec<_>, _>>()?;
        let pair = |resp: &[String]| -> Vec<String> {
            cmp_q
                .iter()
                .zip(resp)
                .map(|(q, r)| format!("{}{}", q.text, r))
                .collect()
        };
        let rb = classifier.scores(&pair(&before_txt), reward_label, cfg.reward.output)?;
        let ra = classifier.scores(&pair(&after_txt), reward_label, cfg.reward.output)?;
        let mut rows: Vec<ComparisonRow> = (0..n)
            .map(|i| ComparisonRow {
                query: cmp_q[i].text.clone(),
                response_before: before_txt[i].clone(),
                response_after: after_txt[i].clone(),
                reward_before: rb[i],
                reward_after: ra[i],
                reward_diff: ra[i] - rb[i],
            })
            .collect();
        rows.sort_by(|a, b| b.reward_diff.total_cmp(&a.reward_diff));
        write_comparison(&self.out, &rows)?;

        Ok(LabSummary {
            steps: total,
            train_prompts: train.len(),
            test_prompts: test.len(),
            toxicity,
            final_dir,
        })
    }
}

/// `detox toxicity`: the toxicity of a model (optionally with an adapter) on the first
/// `samples + 1` test prompts of a DialogSum file, split as the lab does.
#[allow(clippy::too_many_arguments)]
pub fn toxicity_of<B: Backend>(
    model_dir: &Path,
    adapter: Option<&Path>,
    reward_model: &Path,
    dataset: &Path,
    data: &DataConfig,
    settings: &ToxicitySettings,
    seed: u64,
    device: &B::Device,
) -> Result<Toxicity, LabError> {
    let rows = detox_train::data::read_jsonl(dataset, None)?;
    let (_, test_rows) = split_dialogues(&rows, data);
    if test_rows.is_empty() {
        return Err(LabError::Config(format!(
            "{}: no test dialogue of {}-{} characters",
            dataset.display(),
            data.min_chars + 1,
            data.max_chars
        )));
    }
    let mut t5 = crate::model::load_t5_eval::<B>(model_dir, device)?;
    if let Some(a) = adapter {
        let names = detox_hub::t5_name_map(&t5.config);
        detox_hub::load_adapter(&mut t5, a, &names, device)?;
    }
    let tok = TextTokenizer::from_dir(
        model_dir,
        t5.config.pad_token_id,
        usize::MAX,
        t5.config.vocab_size,
    )?;
    let test = encode_queries(&test_rows, data, &tok, true)?;
    let classifier = Classifier::<B>::load(reward_model, settings.batch_size, device)?;
    let label = classifier.label(&settings.label)?;
    let (t, _) = evaluate_toxicity(&t5, &tok, &classifier, label, &test, settings, seed, device)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(chars: usize) -> Example {
        Example {
            id: None,
            dialogue: "é".repeat(chars),
            summary: "s".into(),
            topic: None,
        }
    }

    #[test]
    fn configs_lab_toml_holds_the_lab_values() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/lab.toml");
        let c = LabConfig::from_file(&path).unwrap();
        assert_eq!(c, LabConfig::default());
        c.validate().unwrap();
        assert_eq!(c.ppo.batch_size, 16);
        assert_eq!(c.ppo.mini_batch_size, 4);
        assert_eq!(c.ppo.ppo_epochs, 1);
        assert_eq!(c.ppo.learning_rate, 1.41e-5);
        assert_eq!(c.generation.response_length, [100, 400]);
        assert_eq!((c.lora.r, c.lora.lora_alpha), (32, 32.0));
    }

    #[test]
    fn config_errors_name_the_file_and_the_key() {
        let dir = std::env::temp_dir().join(format!("detox-lab-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.toml");
        std::fs::write(&f, "[ppo]\nbatch_sise = 3\n").unwrap();
        let e = LabConfig::from_file(&f).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("batch_sise"), "{e}");
        std::fs::write(&f, "[ppo]\nbatch_size = 10\nmini_batch_size = 4\n").unwrap();
        let e = LabConfig::from_file(&f)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("multiple"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn split_keeps_200_to_1000_characters_and_cuts_80_20_in_order() {
        // characters, not bytes: "é" is 2 bytes
        let rows: Vec<Example> = [200, 201, 1000, 1001, 500, 300, 250, 999, 400, 10, 600]
            .iter()
            .map(|&n| ex(n))
            .collect();
        let (train, test) = split_dialogues(&rows, &DataConfig::default());
        let lens = |v: &[Example]| {
            v.iter()
                .map(|e| e.dialogue.chars().count())
                .collect::<Vec<_>>()
        };
        // kept: 201 1000 500 300 250 999 400 600 (8) → test = ceil(1.6) = 2, the last two
        assert_eq!(lens(&train), vec![201, 1000, 500, 300, 250, 999]);
        assert_eq!(lens(&test), vec![400, 600]);
    }

    #[test]
    fn step_indices_cover_each_epoch_once_and_drop_the_rest() {
        let (n, bs) = (10, 3);
        let mut seen: Vec<usize> = (0..3).flat_map(|s| step_indices(n, bs, 5, s)).collect();
        assert_eq!(seen.len(), 9);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9, "no index twice within an epoch");
        // deterministic in (seed, step): a resumed run sees the same batches
        assert_eq!(step_indices(n, bs, 5, 4), step_indices(n, bs, 5, 4));
        assert_ne!(step_indices(n, bs, 5, 3), step_indices(n, bs, 6, 3));
    }

    #[test]
    fn sampled_lengths_stay_in_the_half_open_range() {
        let mut rng = step_rng(1, 0, 1);
        let l = sample_lengths(2000, [100, 400], &mut rng);
        assert!(l.iter().all(|&x| (100..400).contains(&x)));
        assert!(l.contains(&100) && l.contains(&399));
    }

    #[test]
    fn comparison_csv_quotes_fields() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(one_line("a\n  b", 10), "a b");
        assert_eq!(one_line("abcdefghijk", 5).chars().count(), 5);
    }
}
