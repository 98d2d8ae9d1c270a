//! PPO detoxification as trl 0.11's classic `PPOTrainer` runs it, on FLAN-T5 with a LoRA
//! adapter and a value head, rewarded by a RoBERTa hate-speech classifier.
//!
//! * [`model`]: the policy (`AutoModelForSeq2SeqLMWithValueHead`) and its reference model
//!   (adapter disabled, sharing the base weights);
//! * [`trainer`]: `PPOTrainer.step` — orchestration only, in trl's named stages; the math is
//!   `detox_rl`'s;
//! * [`reward`]: what a reward is (a label's logit or probability of `detox_hub::Classifier`);
//! * [`lab`]: the lab's loop (`detox ppo`): data, batched generation, reward, step, stats,
//!   checkpoints and resume, toxicity before / after and the comparison table; one iteration
//!   of it is [`lab::LabLoop::iteration`], which `detox bench-ppo` also times.

pub mod lab;
pub mod model;
pub mod reward;
pub mod rollout;
pub mod trainer;

pub use model::{load_policy, reference_model, ReferenceKind, Seq2SeqLMWithValueHead};
pub use rollout::{generate_with_rollout, replay_rollout, PolicyRollout};
pub use trainer::{
    HostMatrix, MinibatchRecord, PaddedBatch, PolicyOptimizer, PpoState, PpoTrainer, StepOutput,
    StepRecord,
};
