//! What a training checkpoint is made of, for fine-tuning and PPO alike: the optimizer state
//! (AdamW moments in burn's named MessagePack format, keyed by parameter path so that another
//! process's freshly built model finds its own), the fine-tuning trainer state, the lookup of the
//! latest complete `checkpoint-N`, and the state file's JSON write.
//!
//! A checkpoint directory is written whole into a temporary sibling and renamed into place
//! ([`detox_hub::atomic::write_dir_atomic`]); its state file is written last inside it, so a
//! `checkpoint-N` holding its state file is complete.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::data::StreamPosition;
use crate::finetune::{io_err, FinetuneConfig, TrainError};

/// The optimizer state file of a checkpoint (fine-tuning and PPO).
pub const OPTIMIZER_FILE: &str = "optimizer.mpk";
/// The fine-tuning trainer state file of a checkpoint, written last.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";

type OptimRecord<M, B> = <OptimizerAdaptor<AdamW, M, B> as Optimizer<M, B>>::Record;

/// `out/checkpoint-{step}`.
pub fn checkpoint_dir(out: &Path, step: usize) -> PathBuf {
    out.join(format!("checkpoint-{step}"))
}

/// What `trainer_state.json` of a checkpoint holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    pub total_steps: usize,
    /// Where the training data stream continues.
    pub stream: StreamPosition,
    pub epoch: f64,
    pub base_model: String,
    pub config: FinetuneConfig,
    /// Parameter paths the optimizer state in [`OPTIMIZER_FILE`] belongs to.
    pub optimizer_params: Vec<String>,
}

struct ParamPaths {
    stack: Vec<String>,
    out: Vec<(String, ParamId)>,
}

impl<B: Backend> ModuleVisitor<B> for ParamPaths {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.out.push((self.stack.join("."), param.id));
    }
}

/// `(path, id)` of every float parameter, e.g. `encoder.block.0.layer_0.SelfAttention.q.weight`.
pub fn param_paths<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, ParamId)> {
    let mut v = ParamPaths {
        stack: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

/// A parameter id that depends only on the parameter's path (FNV-1a), so optimizer state saved
/// from one process maps onto the freshly built model of another.
fn stable_id(path: &str) -> ParamId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ParamId::from(h)
}

/// Saves the optimizer state keyed by parameter path; returns the paths.
pub fn save_optimizer<B: AutodiffBackend, M: AutodiffModule<B>>(
    optim: &OptimizerAdaptor<AdamW, M, B>,
    model: &M,
    file: &Path,
) -> Result<Vec<String>, TrainError> {
    let paths: HashMap<ParamId, String> = param_paths(model)
        .into_iter()
        .map(|(p, id)| (id, p))
        .collect();
    let mut names = Vec::new();
    let record: OptimRecord<M, B> = optim
        .to_record()
        .into_iter()
        .filter_map(|(id, r)| {
            let path = paths.get(&id)?;
            names.push(path.clone());
            Some((stable_id(path), r))
        })
        .collect();
    names.sort();
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
        .record(record, file.to_path_buf())
        .map_err(|e| TrainError::Checkpoint {
            path: file.to_path_buf(),
            msg: format!("cannot write optimizer state: {e}"),
        })?;
    Ok(names)
}

/// Loads optimizer state written by [`save_optimizer`] for `model`'s parameters.
pub fn load_optimizer<B: AutodiffBackend, M: AutodiffModule<B>>(
    optim: OptimizerAdaptor<AdamW, M, B>,
    model: &M,
    file: &Path,
    device: &B::Device,
) -> Result<OptimizerAdaptor<AdamW, M, B>, TrainError> {
    let bad = |msg: String| TrainError::Checkpoint {
        path: file.to_path_buf(),
        msg,
    };
    let by_stable: HashMap<ParamId, ParamId> = param_paths(model)
        .into_iter()
        .map(|(p, id)| (stable_id(&p), id))
        .collect();
    // burn's error for a damaged file advises about record formats; say what happened instead.
    std::fs::metadata(file).map_err(io_err(file))?;
    let record: OptimRecord<M, B> = NamedMpkFileRecorder::<FullPrecisionSettings>::new()
        .load(file.to_path_buf(), device)
        .map_err(|_| {
            bad("the optimizer state is truncated or corrupt: resume from the previous checkpoint instead (delete this checkpoint directory, or give an earlier one to --resume)".into())
        })?;
    let n = record.len();
    let record: OptimRecord<M, B> = record
        .into_iter()
        .filter_map(|(sid, r)| by_stable.get(&sid).map(|id| (*id, r)))
        .collect();
    if record.len() != n {
        return Err(bad(format!(
            "optimizer state for {} parameter(s) that this model does not have",
            n - record.len()
        )));
    }
    Ok(optim.load_record(record))
}

/// The `checkpoint-N` directory with the highest N under `out` that has a trainer state.
pub fn latest_checkpoint(out: &Path) -> Option<PathBuf> {
    latest_checkpoint_holding(out, TRAINER_STATE_FILE)
}

/// The `checkpoint-N` directory with the highest N under `out` that holds `file` (the file a
/// checkpoint writes last, so its presence means the checkpoint is whole).
pub fn latest_checkpoint_holding(out: &Path, file: &str) -> Option<PathBuf> {
    std::fs::read_dir(out)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n: usize = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().join(file).is_file().then(|| (n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
}

/// Reads `dir/trainer_state.json`.
pub fn read_trainer_state(dir: &Path) -> Result<TrainerState, TrainError> {
    let path = dir.join(TRAINER_STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path,
        msg: format!("not a detox trainer state: {e}"),
    })
}

/// Writes `state` as `dir/trainer_state.json`.
pub fn write_trainer_state(dir: &Path, state: &TrainerState) -> Result<(), TrainError> {
    let path = dir.join(TRAINER_STATE_FILE);
    write_json_pretty(&path, state).map_err(io_err(&path))
}

/// Writes `value` as pretty JSON with a final newline, atomically (temp file + rename): a
/// checkpoint's state file, or a run's report.
pub fn write_json_pretty<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    detox_hub::atomic::write_file_atomic(path, (text + "\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_checkpoint_is_the_highest_whole_one() {
        let out = std::env::temp_dir().join(format!("detox-ck-latest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        for (step, whole) in [(2, true), (10, true), (11, false)] {
            let dir = checkpoint_dir(&out, step);
            std::fs::create_dir_all(&dir).unwrap();
            if whole {
                std::fs::write(dir.join(TRAINER_STATE_FILE), "{}").unwrap();
            }
        }
        std::fs::create_dir_all(out.join("checkpoint-x")).unwrap();
        assert_eq!(latest_checkpoint(&out), Some(checkpoint_dir(&out, 10)));
        assert_eq!(latest_checkpoint_holding(&out, "other.json"), None);
        assert_eq!(latest_checkpoint(&out.join("missing")), None);
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn stable_ids_depend_on_the_path_only() {
        assert_eq!(stable_id("encoder.q.weight"), stable_id("encoder.q.weight"));
        assert_ne!(stable_id("encoder.q.weight"), stable_id("encoder.v.weight"));
    }
}

/// The run's newest checkpoint on disk: the step it holds and where it is.
#[derive(Debug, Clone, Default)]
pub struct LastSave {
    step: Option<usize>,
    /// Set when that checkpoint is the one the run resumed from (it may lie outside `out`).
    resumed_dir: Option<PathBuf>,
}

impl LastSave {
    /// A run resumed from `dir`, which holds step `step`.
    pub fn resumed(dir: PathBuf, step: usize) -> Self {
        Self {
            step: Some(step),
            resumed_dir: Some(dir),
        }
    }

    /// This process just wrote `checkpoint-{step}`.
    pub fn saved(&mut self, step: usize) {
        *self = Self {
            step: Some(step),
            resumed_dir: None,
        };
    }

    /// The checkpoint holding `step` if one is already on disk: the resumed one, or
    /// `out/checkpoint-{step}`.
    pub fn holding(&self, out: &Path, step: usize) -> Option<PathBuf> {
        (self.step == Some(step)).then(|| {
            self.resumed_dir
                .clone()
                .unwrap_or_else(|| checkpoint_dir(out, step))
        })
    }
}

/// What a training loop's trainer offers so that [`after_step`] can checkpoint it.
pub trait Checkpointed {
    /// Optimizer steps done.
    fn steps_done(&self) -> usize;
    /// Writes `checkpoint-{step}` now.
    fn save_checkpoint_dir(&mut self) -> Result<PathBuf, TrainError>;
    /// The checkpoint of the current step if one is already on disk ([`LastSave::holding`]).
    fn saved_checkpoint(&self) -> Option<PathBuf>;
    /// The checkpoint of the current step: the one already on disk, else a new one.
    fn checkpoint_of_step(&mut self) -> Result<PathBuf, TrainError> {
        match self.saved_checkpoint() {
            Some(dir) => Ok(dir),
            None => self.save_checkpoint_dir(),
        }
    }
}
/// What the training loops (fine-tuning, the classifier) do after each step: a checkpoint every
/// `save_every` steps, and when SIGINT/SIGTERM arrived before the last step, the current step's
/// checkpoint and [`crate::interrupt::Interrupted`].
pub fn after_step<T: Checkpointed>(
    trainer: &mut T,
    save_every: Option<usize>,
    total: usize,
    pb: &indicatif::ProgressBar,
) -> Result<(), TrainError> {
    let step = trainer.steps_done();
    if save_every.is_some_and(|n| step % n == 0) {
        let dir = trainer.save_checkpoint_dir()?;
        pb.suspend(|| eprintln!("step {step}: saved {}", dir.display()));
    }
    if crate::interrupt::requested() && step < total {
        pb.finish_and_clear();
        let checkpoint = trainer.checkpoint_of_step()?;
        return Err(crate::interrupt::Interrupted { step, checkpoint }.into());
    }
    Ok(())
}
