//! `configs/lab.toml`: the lab's settings, section by section, with the lab's values as defaults,
//! and their validation (every error names the key, and the `detox ppo` flag that overrides it).

use std::path::Path;

use detox_generate::GenerationConfig;
use detox_models::LoraConfig;
use detox_rl::PpoConfig;
use detox_train::data::{PromptTemplate, DEFAULT_TEMPLATE};
use serde::{Deserialize, Serialize};

use super::error::{io_err, LabError};
use crate::model::ReferenceKind;
use crate::reward::RewardOutput;

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
    /// The prompt, with one `{dialogue}` slot (default: detox-train's [`DEFAULT_TEMPLATE`]).
    pub prompt: String,
}

impl DataConfig {
    /// The prompt as a [`PromptTemplate`]; an error when it has no `{dialogue}` slot.
    pub fn template(&self) -> Result<PromptTemplate, LabError> {
        PromptTemplate::new(self.prompt.as_str())
            .map_err(|_| LabError::Config("data.prompt needs a {dialogue} slot".into()))
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            min_chars: 200,
            max_chars: 1000,
            test_fraction: 0.2,
            prompt: DEFAULT_TEMPLATE.into(),
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
    /// The generation config of a batch whose longest limit is `max_new_tokens`.
    pub(crate) fn config(&self, max_new_tokens: usize) -> GenerationConfig {
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
    /// Keep the policy's log-probs and values of its responses from the decode loop that
    /// sampled them instead of recomputing them in the step's rollout pass, as trl does
    /// (`detox_ppo::rollout`). Equal up to float rounding.
    pub rollout_from_generation: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            max_steps: 10,
            save_every: 5,
            seed: 42,
            reference: ReferenceKind::Base,
            compare_samples: 20,
            rollout_from_generation: true,
        }
    }
}

/// Data parallelism (`detox ppo --data-parallel`, `--nodes`, `--global-address`,
/// `--peer-timeout`; flags override these). A node's rank is given on its command line only
/// (`--node-rank`): it is what differs between the machines sharing one config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParallelSettings {
    /// Peers (devices) in each process.
    pub data_parallel: usize,
    /// Processes (machines) in the run.
    pub nodes: usize,
    /// `HOST:PORT` where node 0 listens for the other nodes.
    pub global_address: Option<String>,
    /// Seconds a peer waits for the others at one collective step (absent: no limit).
    pub peer_timeout: Option<u64>,
}

impl Default for ParallelSettings {
    fn default() -> Self {
        Self {
            data_parallel: 1,
            nodes: 1,
            global_address: None,
            peer_timeout: None,
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
    #[serde(default)]
    pub parallel: ParallelSettings,
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
            parallel: ParallelSettings::default(),
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
        self.data.template()?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_parallel_section_is_read() {
        let dir = std::env::temp_dir().join(format!("detox-lab-par-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("par.toml");
        std::fs::write(
            &f,
            "[parallel]\ndata_parallel = 2\nnodes = 3\nglobal_address = \"10.0.0.1:29500\"\n",
        )
        .unwrap();
        let p = LabConfig::from_file(&f).unwrap().parallel;
        assert_eq!((p.data_parallel, p.nodes), (2, 3));
        assert_eq!(p.global_address.as_deref(), Some("10.0.0.1:29500"));
        assert_eq!(p.peer_timeout, None);
        std::fs::write(&f, "[parallel]\nnode_rank = 1\n").unwrap();
        let e = LabConfig::from_file(&f).unwrap_err().to_string();
        assert!(e.contains("node_rank"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
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
    fn the_default_prompt_is_detox_trains_template() {
        let c = DataConfig::default();
        assert_eq!(c.template().unwrap(), PromptTemplate::default());
        let bad = DataConfig {
            prompt: "no slot".into(),
            ..c
        };
        assert!(bad
            .template()
            .unwrap_err()
            .to_string()
            .contains("{dialogue}"));
    }
}
