//! The files of a PPO policy and of a PPO checkpoint: the adapter (peft files) or full model,
//! the value head beside it, the Adam state (detox-train's `optimizer.mpk`) and `ppo_state.json`
//! (KL controller, score moments, step, seed), written last; and finding the checkpoint to
//! resume from.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use detox_hub::atomic::write_dir_atomic;
use detox_models::LoraConfig;
use detox_train::checkpoint::{
    latest_checkpoint_holding, save_optimizer, write_json_pretty, OPTIMIZER_FILE,
};
use serde::{Deserialize, Serialize};

use super::config::LabConfig;
use super::error::{io_err, LabError};
use crate::model::{load_policy, Seq2SeqLMWithValueHead};
use crate::trainer::{PpoState, PpoTrainer};

/// The state file of a PPO checkpoint, written last (its presence means the checkpoint is whole).
pub const STATE_FILE: &str = "ppo_state.json";

/// What `ppo_state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub step: usize,
    pub ppo: PpoState,
    pub base_model: String,
    pub lora: Option<LoraConfig>,
    pub config: LabConfig,
}

/// Reads `dir/ppo_state.json`.
pub fn read_checkpoint_state(dir: &Path) -> Result<CheckpointState, LabError> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| LabError::File {
        path: path.clone(),
        msg: format!("not a detox PPO state: {e}"),
    })
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

/// Loads a policy [`write_policy`] wrote into `dir`: the adapter on `base_model` when `adapter`
/// (else the full model of `dir`), and its value head. Returns the adapter config in use.
pub fn load_saved_policy<B: Backend>(
    dir: &Path,
    base_model: &Path,
    adapter: bool,
    device: &B::Device,
) -> Result<(Seq2SeqLMWithValueHead<B>, Option<LoraConfig>), LabError> {
    let value_head = value_head_file(dir);
    Ok(match adapter {
        true => load_policy::<B>(base_model, Some(dir), None, Some(&value_head), device)?,
        false => load_policy::<B>(dir, None, None, Some(&value_head), device)?,
    })
}

/// Writes the checkpoint `dir` of the run at `step` atomically: the policy, the Adam state and,
/// last, `ppo_state.json`.
pub fn write_checkpoint<B: AutodiffBackend>(
    dir: &Path,
    trainer: &PpoTrainer<B>,
    lora: Option<&LoraConfig>,
    base_model: &Path,
    config: &LabConfig,
    step: usize,
) -> Result<(), LabError> {
    write_dir_atomic(dir, |tmp| {
        write_policy(&trainer.policy().valid(), lora, base_model, tmp)?;
        save_optimizer(
            trainer.optimizer(),
            trainer.policy(),
            &tmp.join(OPTIMIZER_FILE),
        )?;
        let state = CheckpointState {
            step,
            ppo: trainer.state.clone(),
            base_model: base_model.display().to_string(),
            lora: lora.cloned(),
            config: config.clone(),
        };
        let path = tmp.join(STATE_FILE);
        write_json_pretty(&path, &state).map_err(io_err(&path))
    })
}

/// The highest `checkpoint-N` under `dir` that holds a PPO state file.
pub fn latest_checkpoint(dir: &Path) -> Option<PathBuf> {
    latest_checkpoint_holding(dir, STATE_FILE)
}
