//! `detox ppo`'s run: its directory, loading the data and the models (or a checkpoint to resume),
//! the loop of [`LabLoop::iteration`]s with stats, checkpoints and interrupts, and the toxicity
//! before / after and the comparison at the end.

use std::path::PathBuf;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use detox_hub::atomic::write_file_atomic;
use detox_hub::TextTokenizer;
use detox_models::{LoraConfig, T5ForConditionalGeneration};
use detox_train::checkpoint::{checkpoint_dir, load_optimizer, OPTIMIZER_FILE};
use detox_train::finetune::TrainError;
use detox_train::interrupt::Interrupted;
use detox_train::runlock::{open_run_dir, RunStart};
use detox_train::runlog;
use serde::{Deserialize, Serialize};

use super::checkpoint::{
    latest_checkpoint, load_saved_policy, read_checkpoint_state, save_policy_dir, write_checkpoint,
    STATE_FILE,
};
use super::config::LabConfig;
use super::data::{
    encode_queries, generate_responses, sample_lengths, split_dialogues, step_rng, Query,
};
use super::error::{io_err, LabError};
use super::iteration::{ClassifierReward, LabLoop};
use super::report::{comparison_rows, write_comparison, write_pretty_json, ComparisonRow};
use super::toxicity::{evaluate_toxicity, Toxicity, ToxicityReport};
use crate::model::{load_policy, reference_model, ReferenceKind, Seq2SeqLMWithValueHead};
use crate::reward::{load_reward_model, Classifier};
use crate::trainer::{PpoState, PpoTrainer};
use detox_parallel::Peer;

const STATS_FILE: &str = "stats.jsonl";
const TOXICITY_BEFORE_FILE: &str = "toxicity_before.json";
/// What a PPO run writes into its directory (`--overwrite` deletes these, and only these).
pub const RUN_OUTPUTS: &[&str] = &[
    STATS_FILE,
    "initial",
    "checkpoints",
    TOXICITY_BEFORE_FILE,
    "toxicity.json",
    "comparison.csv",
    "comparison.json",
    "comparison.txt",
    runlog::RUN_INFO_FILE,
];

/// Paths and switches of `detox ppo` (the rest is in [`LabConfig`]).
#[derive(Debug, Clone)]
pub struct LabRun {
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
    pub reward_model: PathBuf,
    /// The classifier that measures toxicity before and after (`None`: the reward model, as in
    /// the lab; another one when the reward is not a toxicity classifier, e.g. one trained on
    /// human preferences by `detox train-reward`).
    pub toxicity_model: Option<PathBuf>,
    pub dataset: PathBuf,
    pub out: PathBuf,
    /// Refuse a directory that holds a run, continue it, or delete it first.
    pub start: RunStart,
    pub progress: bool,
    pub config: LabConfig,
    /// The device as the user named it (recorded in `run_info.json`).
    pub device_name: String,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabSummary {
    pub steps: usize,
    pub train_prompts: usize,
    pub test_prompts: usize,
    /// What `toxicity.json` holds.
    pub toxicity: ToxicityReport,
    pub final_dir: PathBuf,
}

type Reward<B> = ClassifierReward<<B as AutodiffBackend>::InnerBackend>;

/// The run once its data and models are loaded.
struct Prepared<B: AutodiffBackend> {
    lab: LabLoop<B, Reward<B>>,
    /// The test prompts (toxicity and comparison).
    test: Vec<Query>,
    /// The toxicity classifier when it is not the reward model.
    toxicity_classifier: Option<Classifier<B::InnerBackend>>,
    toxic_label: usize,
    /// The policy before training: the comparison's "before", the reference of kind `initial`.
    initial: Seq2SeqLMWithValueHead<B::InnerBackend>,
    lora: Option<LoraConfig>,
    start_step: usize,
}

/// The trainable policy and where it starts.
struct PolicyStart<B: AutodiffBackend> {
    trainer: PpoTrainer<B>,
    initial: Seq2SeqLMWithValueHead<B::InnerBackend>,
    lora: Option<LoraConfig>,
    start_step: usize,
}

impl<B: AutodiffBackend> Prepared<B> {
    /// The toxicity of `model` on the test prompts.
    fn toxicity(
        &self,
        model: &T5ForConditionalGeneration<B::InnerBackend>,
    ) -> Result<Toxicity, LabError> {
        let cfg = &self.lab.config;
        let r = &self.lab.reward;
        let (t, _) = evaluate_toxicity(
            model,
            &r.tokenizer,
            self.toxicity_classifier.as_ref().unwrap_or(&r.classifier),
            self.toxic_label,
            &self.test,
            &cfg.toxicity,
            cfg.run.seed,
            &self.lab.device,
        )?;
        Ok(t)
    }
}

impl LabRun {
    fn checkpoints(&self) -> PathBuf {
        self.out.join("checkpoints")
    }

    fn resuming(&self) -> bool {
        self.start == RunStart::Resume
    }

    /// Runs the lab to `config.run.max_steps` and writes every output.
    pub fn run<B: AutodiffBackend>(&self, device: &B::Device) -> Result<LabSummary, LabError> {
        self.run_main::<B>(device, None)
    }

    /// Runs as `peer` of a data-parallel run ([`LabLoop::iteration`] splits each batch among the
    /// peers): peer 0 as [`run`](Self::run) does, writing every output (and returning the
    /// summary); the others only take part in the iterations, writing nothing.
    pub fn run_peer<B: AutodiffBackend>(
        &self,
        device: &B::Device,
        peer: Peer,
    ) -> Result<Option<LabSummary>, LabError> {
        if peer.is_main() {
            return self.run_main::<B>(device, Some(peer)).map(Some);
        }
        self.config.validate()?;
        let mut p = self.prepare::<B>(device, Some(peer))?;
        for step in p.start_step..self.config.run.max_steps {
            p.lab.iteration(step)?;
        }
        Ok(None)
    }

    /// [`run`](Self::run), as data-parallel peer 0 when `peer` is given.
    fn run_main<B: AutodiffBackend>(
        &self,
        device: &B::Device,
        peer: Option<Peer>,
    ) -> Result<LabSummary, LabError> {
        let cfg = &self.config;
        cfg.validate()?;
        let _lock = open_run_dir(&self.out, self.start, RUN_OUTPUTS)?;
        let info = self.out.join(runlog::RUN_INFO_FILE);
        runlog::record_start(&self.out, &self.device_name).map_err(io_err(&info))?;
        let mut p = self.prepare::<B>(device, peer)?;
        let before = self.toxicity_before(&p)?;
        if self.resuming() {
            self.trim_stats(p.start_step)?;
        }
        self.train(&mut p)?;
        let final_dir = self.checkpoints().join("final");
        let trained = p.lab.trainer.policy().valid();
        save_policy_dir(&trained, p.lora.as_ref(), &self.model, &final_dir)?;

        let after = p.toxicity(&trained.pretrained_model)?;
        let toxicity = ToxicityReport::new(&before, &after, &cfg.toxicity.label);
        write_pretty_json(&self.out.join("toxicity.json"), &toxicity)?;
        let rows = self.compare(&p, &trained)?;
        write_comparison(&self.out, &rows)?;
        Ok(LabSummary {
            steps: cfg.run.max_steps,
            train_prompts: p.lab.train.len(),
            test_prompts: p.test.len(),
            toxicity,
            final_dir,
        })
    }

    /// Reads the data and the models: prompts, classifier, policy (fresh or resumed), trainer.
    /// A data-parallel `peer` also takes peer 0's policy weights; one that is not peer 0 writes
    /// nothing (not even `initial/`).
    fn prepare<B: AutodiffBackend>(
        &self,
        device: &B::Device,
        peer: Option<Peer>,
    ) -> Result<Prepared<B>, LabError> {
        let cfg = &self.config;
        // One local peer at a time: they share the backend's random generator, and a peer's
        // seeded draws (its fresh adapter and value head) must not interleave with another's
        // seeding or loading.
        let draws = detox_parallel::seeded_draws();
        let (train, test, tokenizer) = self.queries()?;
        let classifier = load_reward_model::<B::InnerBackend>(
            &self.reward_model,
            cfg.reward.batch_size,
            device,
        )?;
        let reward = ClassifierReward {
            label: classifier.label(&cfg.reward.label)?,
            output: cfg.reward.output,
            special_tokens_in_text: cfg.reward.special_tokens_in_text,
            tokenizer,
            classifier,
        };
        let toxicity_classifier = self
            .toxicity_model
            .as_ref()
            .map(|dir| load_reward_model::<B::InnerBackend>(dir, cfg.toxicity.batch_size, device))
            .transpose()?;
        let toxic_label = toxicity_classifier
            .as_ref()
            .unwrap_or(&reward.classifier)
            .label(&cfg.toxicity.label)?;
        let mut start =
            self.policy_start::<B>(device, peer.as_ref().is_none_or(|p| p.is_main()))?;
        // before the first collective operation, which waits for the other peers
        drop(draws);
        if let Some(p) = peer {
            start
                .trainer
                .set_peer(p)
                .map_err(|err| LabError::Step { step: 0, err })?;
        }
        Ok(Prepared {
            lab: LabLoop {
                trainer: start.trainer,
                train,
                reward,
                config: cfg.clone(),
                device: device.clone(),
            },
            test,
            toxicity_classifier,
            toxic_label,
            initial: start.initial,
            lora: start.lora,
            start_step: start.start_step,
        })
    }

    /// The training and test prompts (at least `batch_size` for training) and the T5 tokenizer.
    fn queries(&self) -> Result<(Vec<Query>, Vec<Query>, TextTokenizer), LabError> {
        let cfg = &self.config;
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
        let tok = TextTokenizer::from_dir(
            &self.model,
            t5_config.pad_token_id,
            usize::MAX,
            t5_config.vocab_size,
        )?;
        let special = cfg.reward.special_tokens_in_text;
        let train = encode_queries(&train_rows, &cfg.data, &tok, special)?;
        let test = encode_queries(&test_rows, &cfg.data, &tok, special)?;
        Ok((train, test, tok))
    }

    /// The checkpoint `--resume` continues from (`None` for a run that starts afresh).
    fn resume_from(&self) -> Result<Option<PathBuf>, LabError> {
        if !self.resuming() {
            return Ok(None);
        }
        let ck = latest_checkpoint(&self.checkpoints()).ok_or_else(|| {
            LabError::Config(format!(
                "--resume: no checkpoint-N with {STATE_FILE} under {}",
                self.checkpoints().display()
            ))
        })?;
        Ok(Some(ck))
    }

    /// The policy to train (fresh, or the checkpoint's with its PPO and Adam state), the
    /// initial policy (written to `initial/` by a fresh run, read back on resume), the
    /// reference and the trainer.
    /// `write_initial`: whether a fresh start writes `initial/` (not on a data-parallel peer
    /// other than 0).
    fn policy_start<B: AutodiffBackend>(
        &self,
        device: &B::Device,
        write_initial: bool,
    ) -> Result<PolicyStart<B>, LabError> {
        let cfg = &self.config;
        let resume_from = self.resume_from()?;
        B::seed(device, cfg.run.seed);
        let (policy, lora, resumed) = match &resume_from {
            None => {
                let fresh = (cfg.lora.enabled && self.adapter.is_none()).then(|| cfg.lora_config());
                let adapter = self.adapter.as_deref();
                let (p, l) = load_policy::<B>(&self.model, adapter, fresh.as_ref(), None, device)?;
                (p, l, None)
            }
            Some(ck) => {
                let st = read_checkpoint_state(ck)?;
                let (p, l) = load_saved_policy::<B>(ck, &self.model, st.lora.is_some(), device)?;
                (p, l, Some((st.step, st.ppo, ck.join(OPTIMIZER_FILE))))
            }
        };
        // burn draws a fresh parameter (adapter, value head) at its first read: draw them now,
        // right after the seeding
        detox_models::init::materialize(&policy);
        let initial_dir = self.out.join("initial");
        let initial = match resumed {
            None => {
                if write_initial {
                    save_policy_dir(&policy, lora.as_ref(), &self.model, &initial_dir)?;
                }
                policy.valid()
            }
            Some(_) => {
                let adapter = lora.is_some();
                load_saved_policy::<B::InnerBackend>(&initial_dir, &self.model, adapter, device)?.0
            }
        };
        let reference = match (cfg.run.reference, lora.is_some()) {
            (ReferenceKind::Base, true) => {
                reference_model(&policy.valid().pretrained_model, ReferenceKind::Base)
            }
            _ => initial.pretrained_model.clone(),
        };
        let trainer = PpoTrainer::new(policy, reference, cfg.ppo.clone(), cfg.run.seed, device)
            .map_err(|err| LabError::Step { step: 0, err })?;
        let (trainer, start_step) = match resumed {
            None => (trainer, 0),
            Some((step, state, optim_file)) => {
                (resume_trainer(trainer, state, &optim_file, device)?, step)
            }
        };
        Ok(PolicyStart {
            trainer,
            initial,
            lora,
            start_step,
        })
    }

    /// The toxicity of the initial policy: measured and written to `toxicity_before.json`, or
    /// on `--resume` read from there.
    fn toxicity_before<B: AutodiffBackend>(&self, p: &Prepared<B>) -> Result<Toxicity, LabError> {
        let file = self.out.join(TOXICITY_BEFORE_FILE);
        match std::fs::read_to_string(&file) {
            Ok(text) if self.resuming() => {
                serde_json::from_str(&text).map_err(|e| LabError::File {
                    path: file.clone(),
                    msg: e.to_string(),
                })
            }
            _ => {
                let t = p.toxicity(&p.initial.pretrained_model)?;
                let json = serde_json::to_string(&t).map_err(|e| LabError::File {
                    path: file.clone(),
                    msg: e.to_string(),
                })?;
                write_file_atomic(&file, json.as_bytes()).map_err(io_err(&file))?;
                Ok(t)
            }
        }
    }

    /// The loop: iterations from the start step to `run.max_steps`, a stats row each,
    /// checkpoints every `run.save_every` steps and at the end; on SIGINT / SIGTERM a
    /// checkpoint of the step done, then [`Interrupted`].
    fn train<B: AutodiffBackend>(&self, p: &mut Prepared<B>) -> Result<(), LabError> {
        let cfg = &self.config;
        let total = cfg.run.max_steps;
        let pb = runlog::progress_bar(total, p.start_step, self.progress);
        let mut last_saved = p.start_step;
        for step in p.start_step..total {
            let it = p.lab.iteration(step)?;
            self.append_stats(&it.row())?;
            let done = it.step;
            pb.set_position(done as u64);
            pb.set_message(format!(
                "reward {:.3} kl {:.3} {:.1}s/step",
                it.reward_mean,
                it.stats.get("objective/kl").copied().unwrap_or(f64::NAN),
                it.seconds_total
            ));
            if done % cfg.run.save_every == 0 {
                let dir = self.save_checkpoint(p, done)?;
                last_saved = done;
                pb.suspend(|| eprintln!("step {done}: saved {}", dir.display()));
            }
            if detox_train::interrupt::requested() && done < total {
                pb.finish_and_clear();
                let checkpoint = match last_saved == done {
                    true => checkpoint_dir(&self.checkpoints(), done),
                    false => self.save_checkpoint(p, done)?,
                };
                let stop = Interrupted {
                    step: done,
                    checkpoint,
                };
                return Err(TrainError::from(stop).into());
            }
        }
        pb.finish_and_clear();
        if last_saved != total || latest_checkpoint(&self.checkpoints()).is_none() {
            self.save_checkpoint(p, total)?;
        }
        Ok(())
    }

    /// The comparison table: the same test prompts and lengths, one response each from the
    /// initial and the trained policy, and their rewards.
    fn compare<B: AutodiffBackend>(
        &self,
        p: &Prepared<B>,
        trained: &Seq2SeqLMWithValueHead<B::InnerBackend>,
    ) -> Result<Vec<ComparisonRow>, LabError> {
        let cfg = &self.config;
        let n = cfg.run.compare_samples.min(p.test.len());
        let queries = &p.test[..n];
        let ids: Vec<&[u32]> = queries.iter().map(|q| q.input_ids.as_slice()).collect();
        let mut rng = step_rng(cfg.run.seed, 0, 3);
        let limits = sample_lengths(n, cfg.generation.response_length, &mut rng);
        let generate = |model: &Seq2SeqLMWithValueHead<B::InnerBackend>, stream: usize| {
            let mut rng = step_rng(cfg.run.seed, stream, 3);
            let (gen, dev) = (&cfg.generation, &p.lab.device);
            generate_responses(&model.pretrained_model, &ids, &limits, gen, &mut rng, dev)
        };
        let before = generate(&p.initial, 1);
        let after = generate(trained, 2);
        let reward = &p.lab.reward;
        let decode = |rs: &[Vec<u32>]| -> Result<Vec<String>, LabError> {
            rs.iter().map(|r| reward.decode(r)).collect()
        };
        let before_txt = decode(&before)?;
        let after_txt = decode(&after)?;
        let q: Vec<&Query> = queries.iter().collect();
        let rb = reward.score_texts(&q, &before_txt)?;
        let ra = reward.score_texts(&q, &after_txt)?;
        Ok(comparison_rows(queries, &before_txt, &after_txt, &rb, &ra))
    }

    fn save_checkpoint<B: AutodiffBackend>(
        &self,
        p: &Prepared<B>,
        step: usize,
    ) -> Result<PathBuf, LabError> {
        let dir = checkpoint_dir(&self.checkpoints(), step);
        let trainer = &p.lab.trainer;
        write_checkpoint(
            &dir,
            trainer,
            p.lora.as_ref(),
            &self.model,
            &self.config,
            step,
        )?;
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
}

/// `trainer` with the PPO state and the Adam moments of the checkpoint it resumes.
fn resume_trainer<B: AutodiffBackend>(
    mut trainer: PpoTrainer<B>,
    state: PpoState,
    optim_file: &std::path::Path,
    device: &B::Device,
) -> Result<PpoTrainer<B>, LabError> {
    trainer.state = state;
    let fresh = detox_train::optim::adamw(0.0).init();
    let optim = load_optimizer(fresh, trainer.policy(), optim_file, device)?;
    trainer.set_optimizer(optim);
    Ok(trainer)
}
