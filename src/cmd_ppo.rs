//! `detox ppo` and `detox toxicity`: the lab's PPO detoxification (see `detox-ppo`).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;
use detox_parallel::{run_local_peers, PeerJob, Topology};
use detox_ppo::lab::{toxicity_of, LabConfig, LabRun, LabSummary};
use detox_train::runlock::RunStart;

use crate::backend::{AutodiffJob, DeviceArgs, Job, ParallelJob};
use crate::parallel_args::ParallelArgs;

/// What `detox ppo` and `detox toxicity` both read.
#[derive(clap::Args, Debug, Clone)]
pub struct LabInputs {
    /// The T5 / FLAN-T5 model directory or hub id (config.json, weights, tokenizer.json);
    /// default: the shipped summarizer (models/dialogsum-t5).
    #[arg(long)]
    pub model: Option<String>,
    /// The classifier directory or hub id (facebook/roberta-hate-speech-dynabench-r4-target);
    /// default: the shipped toxicity classifier (models/toxicity-roberta).
    #[arg(long)]
    pub reward_model: Option<String>,
    /// DialogSum-style JSONL (the train split): dialogues are filtered and split 80/20 as in the
    /// lab (ppo trains on the first part; toxicity is measured on the second).
    #[arg(long)]
    pub dataset: PathBuf,
    /// The classifier that measures toxicity (the config's [toxicity] label). Default: the
    /// reward model when it has that label (the lab), else the shipped toxicity classifier
    /// (e.g. under a reward model from `detox train-reward`).
    #[arg(long)]
    pub toxicity_model: Option<String>,
    /// TOML config (configs/lab.toml holds the lab's values); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl LabInputs {
    /// The config file's settings, or the lab's when none is given.
    fn lab_config(&self) -> Result<LabConfig> {
        Ok(match &self.config {
            Some(p) => LabConfig::from_file(p)?,
            None => LabConfig::default(),
        })
    }

    /// The reward model's directory (default: the shipped classifier).
    fn reward_dir(&self) -> Result<PathBuf> {
        crate::shipped::model_or_shipped(self.reward_model.as_deref(), crate::shipped::CLASSIFIER)
    }

    /// The toxicity classifier's directory when it is not `reward_dir`: `--toxicity-model`, or
    /// the shipped classifier when the reward model has no `label`.
    fn toxicity_dir(&self, reward_dir: &std::path::Path, label: &str) -> Result<Option<PathBuf>> {
        if let Some(m) = &self.toxicity_model {
            return Ok(Some(crate::shipped::model_or_shipped(
                Some(m),
                crate::shipped::CLASSIFIER,
            )?));
        }
        let config: detox_models::RobertaConfig = detox_hub::read_config(reward_dir)?;
        let has = config.labels().is_ok_and(|l| l.iter().any(|x| x == label));
        if has {
            return Ok(None);
        }
        let shipped = crate::shipped::model_or_shipped(None, crate::shipped::CLASSIFIER)?;
        eprintln!(
            "the reward model has no {label:?} label: toxicity is measured by {}",
            shipped.display()
        );
        Ok(Some(shipped))
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct PpoArgs {
    #[command(flatten)]
    pub inputs: LabInputs,
    /// A peft adapter to train (the lab: the fine-tuned LoRA checkpoint). Without it a fresh
    /// adapter from the config's [lora] section is added (or none with `lora.enabled = false`).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Run directory: stats.jsonl, checkpoints/, toxicity.json, comparison.{csv,json,txt}.
    #[arg(long)]
    pub out: PathBuf,
    /// The reward model's label whose logit is the reward (the config's [reward] label; the
    /// lab: nothate; a `detox train-reward` model: its single label).
    #[arg(long)]
    pub reward_label: Option<String>,
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub mini_batch_size: Option<usize>,
    #[arg(long)]
    pub ppo_epochs: Option<usize>,
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Response length range MIN..MAX (max_new_tokens uniform in [MIN, MAX)).
    #[arg(long)]
    pub response_length: Option<String>,
    /// Toxicity is measured on the first N+1 test prompts (the lab: 10).
    #[arg(long)]
    pub toxicity_samples: Option<usize>,
    /// Rows of the comparison table (the lab: 20).
    #[arg(long)]
    pub compare_samples: Option<usize>,
    /// Checkpoint every N steps.
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Keep the policy's log-probs and values from the decode loop instead of recomputing them
    /// in the step (the config's [run] rollout_from_generation, default true; false: trl's
    /// recomputation).
    #[arg(long)]
    pub rollout_from_generation: Option<bool>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Delete the run --out already holds (stats.jsonl, initial/, checkpoints/, ...) and start afresh.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub parallel: ParallelArgs,
}

fn parse_range(s: &str) -> Result<[usize; 2]> {
    let (a, b) = s
        .split_once("..")
        .with_context(|| format!("--response-length {s:?}: expected MIN..MAX, e.g. 100..400"))?;
    let parse = |x: &str| {
        x.trim()
            .parse::<usize>()
            .with_context(|| format!("--response-length {s:?}: {x:?} is not a number"))
    };
    Ok([parse(a)?, parse(b)?])
}

impl PpoArgs {
    pub fn lab_config(&self) -> Result<LabConfig> {
        let mut c = self.inputs.lab_config()?;
        if let Some(v) = self.max_steps {
            c.run.max_steps = v;
        }
        if let Some(v) = self.batch_size {
            c.ppo.batch_size = v;
        }
        if let Some(v) = self.mini_batch_size {
            c.ppo.mini_batch_size = v;
        }
        if let Some(v) = self.ppo_epochs {
            c.ppo.ppo_epochs = v;
        }
        if let Some(v) = self.learning_rate {
            c.ppo.learning_rate = v;
        }
        if let Some(r) = &self.response_length {
            c.generation.response_length = parse_range(r)?;
        }
        if let Some(v) = self.toxicity_samples {
            c.toxicity.samples = v;
        }
        if let Some(v) = self.compare_samples {
            c.run.compare_samples = v;
        }
        if let Some(v) = self.save_every {
            c.run.save_every = v;
        }
        if let Some(v) = self.rollout_from_generation {
            c.run.rollout_from_generation = v;
        }
        if let Some(v) = self.seed {
            c.run.seed = v;
        }
        if let Some(v) = &self.reward_label {
            c.reward.label = v.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

/// `detox ppo`: on one device, or data-parallel on several (`--data-parallel`, `--nodes`; or
/// the config's `[parallel]`).
pub fn run(args: PpoArgs) -> Result<()> {
    let run = args.lab_run()?;
    let topology = args.parallel.topology_with(&run.config.parallel)?;
    if topology.world() == 1 {
        args.device.run_autodiff(Ppo(args, run))
    } else {
        args.device
            .run_parallel(topology.devices, PpoParallel(args, run, topology))
    }
}

impl PpoArgs {
    /// The lab run these flags describe.
    fn lab_run(&self) -> Result<LabRun> {
        let config = self.lab_config()?;
        if !self.inputs.dataset.is_file() {
            bail!("{}: no such dataset file", self.inputs.dataset.display());
        }
        let reward_dir = self.inputs.reward_dir()?;
        Ok(LabRun {
            model: crate::shipped::model_or_shipped(
                self.inputs.model.as_deref(),
                crate::shipped::SUMMARIZER,
            )?,
            adapter: self.adapter.clone(),
            toxicity_model: self
                .inputs
                .toxicity_dir(&reward_dir, &config.toxicity.label)?,
            reward_model: reward_dir,
            dataset: self.inputs.dataset.clone(),
            out: self.out.clone(),
            start: match (self.resume, self.overwrite) {
                (true, _) => RunStart::Resume,
                (false, true) => RunStart::Overwrite,
                (false, false) => RunStart::New,
            },
            progress: std::io::stderr().is_terminal(),
            device_name: self.device.name(),
            config,
        })
    }
}

/// Prints what a finished lab run measured.
fn report(a: &PpoArgs, s: &LabSummary) {
    let t = &s.toxicity;
    eprintln!(
        "{} PPO steps on {} prompts ({} test prompts)",
        s.steps, s.train_prompts, s.test_prompts
    );
    eprintln!(
        "toxicity before: mean {:.6} std {:.6}",
        t.before.mean, t.before.std
    );
    eprintln!(
        "toxicity after:  mean {:.6} std {:.6}",
        t.after.mean, t.after.std
    );
    eprintln!(
        "percentage improvement of toxicity score after detoxification: mean {:.2}% std {:.2}%",
        t.improvement_pct.mean, t.improvement_pct.std
    );
    if let Ok(table) = std::fs::read_to_string(a.out.join("comparison.txt")) {
        print!("{table}");
    }
    eprintln!("final policy: {}", s.final_dir.display());
}

/// `detox ppo` on one device: the flags and the lab run they describe.
pub struct Ppo(pub PpoArgs, pub LabRun);

impl AutodiffJob for Ppo {
    type Output = ();

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        detox_train::interrupt::install().context("cannot listen for SIGINT/SIGTERM")?;
        let s = self.1.run::<B>(&device)?;
        report(&self.0, &s);
        Ok(())
    }
}

/// Data-parallel PPO: one lab loop per local peer; each generates and scores its share of every
/// batch, and the PPO step is split as [`detox_ppo::PpoTrainer::set_peer`] says.
struct PpoParallel(PpoArgs, LabRun, Topology);

impl ParallelJob for PpoParallel {
    type Output = ();

    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Result<()> {
        let (args, run, topology) = (self.0, self.1, self.2);
        let timeout = args.parallel.timeout_with(&run.config.parallel);
        detox_train::interrupt::install().context("cannot listen for SIGINT/SIGTERM")?;
        let jobs: Vec<PeerJob<'_, Option<LabSummary>, anyhow::Error>> = devices
            .iter()
            .map(|device| {
                let run = &run;
                Box::new(move |peer: detox_parallel::Peer| Ok(run.run_peer::<B>(device, peer)?))
                    as PeerJob<'_, _, _>
            })
            .collect();
        let results = run_local_peers::<B::InnerBackend, _, anyhow::Error>(
            &topology,
            devices.clone(),
            jobs,
            timeout,
        )?;
        if let Some(s) = results.into_iter().flatten().next() {
            report(&args, &s);
        }
        Ok(())
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ToxicityArgs {
    #[command(flatten)]
    pub inputs: LabInputs,
    /// A peft adapter to apply to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Measure on the first N+1 test prompts (default: the config's, the lab's 10).
    #[arg(long)]
    pub samples: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print {"mean": M, "std": S, "n": N}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub struct Toxicity(pub ToxicityArgs);

impl Job for Toxicity {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let a = self.0;
        let mut c = a.inputs.lab_config()?;
        if let Some(n) = a.samples {
            c.toxicity.samples = n;
        }
        let t = toxicity_of::<B>(
            &crate::shipped::model_or_shipped(
                a.inputs.model.as_deref(),
                crate::shipped::SUMMARIZER,
            )?,
            a.adapter.as_deref(),
            &{
                let reward_dir = a.inputs.reward_dir()?;
                a.inputs
                    .toxicity_dir(&reward_dir, &c.toxicity.label)?
                    .unwrap_or(reward_dir)
            },
            &a.inputs.dataset,
            &c.data,
            &c.toxicity,
            a.seed,
            &device,
        )?;
        if a.json {
            println!("{}", serde_json::to_string(&t)?);
        } else {
            println!(
                "toxicity mean {:.6} std {:.6} ({} texts)",
                t.mean, t.std, t.n
            );
        }
        Ok(())
    }
}
