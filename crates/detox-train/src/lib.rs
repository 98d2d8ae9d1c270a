//! Supervised fine-tuning of T5 / FLAN-T5 — full or LoRA — with the numbers of transformers'
//! `Seq2SeqTrainer` + peft: the seq2seq cross-entropy ([`loss`]), DialogSum data with the lab's
//! instruction template ([`data`]), `clip_grad_norm_` ([`clip`]), the linear warmup/decay
//! schedule ([`schedule`]), torch's AdamW through burn's ([`optim`]) and the loop with metrics,
//! checkpoints and resume ([`finetune`]). What fine-tuning and `detox-ppo` share: optimizer and
//! trainer state files and the latest-checkpoint lookup ([`checkpoint`]), the run directory's
//! lock ([`runlock`]), progress and JSONL metrics ([`runlog`]) and SIGINT/SIGTERM ([`interrupt`]).
//! Beside them: sequence classifiers ([`classifier`]) and reward models from preference pairs
//! ([`preferences`], [`reward`], trl's `RewardTrainer`).
//! Generic over burn's `AutodiffBackend`.

pub mod checkpoint;
pub mod classifier;
pub mod classify_data;
pub mod classify_metrics;
pub mod clip;
pub mod copy_task;
pub mod data;
pub mod denoise;
pub mod finetune;
pub mod interrupt;
pub mod keywords;
pub mod loss;
pub mod naive_bayes;
pub mod optim;
pub mod pointer;
pub mod preferences;
pub mod reward;
pub mod runlock;
pub mod runlog;
pub mod schedule;
pub mod scored_loop;
pub mod word_dropout;

pub use clip::{clip_grad_norm, grad_norm};
pub use data::{
    read_jsonl, Batch, BatchStream, DataError, Encoder, Example, PromptTemplate, Tokenized,
    DEFAULT_TEMPLATE,
};
pub use finetune::{
    Duration, FinetuneConfig, Mode, Resume, RunSummary, Start, StepStats, TrainError, Trainer,
};
pub use loss::{seq2seq_cross_entropy, shift_right, token_nll, IGNORE_INDEX};
pub use schedule::LinearSchedule;
