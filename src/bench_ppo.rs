//! `detox bench-ppo`: seconds per trl-style PPO step and per lab iteration at flan-t5-base size
//! with random weights (the Rust side of `benches/pytorch_ppo_bench.py`).
//!
//! `step`: 16 queries of 200 tokens, 16 responses of 101 tokens (start + 100), mini-batch 4,
//! 1 PPO epoch, LoRA r 32 on q/v + value head, adapter-disabled reference. `iteration`: batched
//! generation of 16 responses with per-query lengths from `LengthSampler(100, 400)` (top_k 0,
//! top_p 1.0, min_length 5), reward with a random roberta-base classifier on 16 texts of up to 512
//! tokens, then the step. Peak memory is the process's high-water mark (`VmHWM`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::backend::{AutodiffJob, DeviceArgs};
use detox_models::{
    LoraConfig, LoraTarget, RobertaConfig, RobertaForSequenceClassification, T5Config,
    T5ForConditionalGeneration, ValueHead,
};
use detox_ppo::lab::{lab_ppo, LabConfig, LabError, LabLoop, Query, Reward};
use detox_ppo::{reference_model, PpoTrainer, ReferenceKind, Seq2SeqLMWithValueHead};

#[derive(clap::Args, Debug, Clone)]
pub struct PpoBenchArgs {
    /// T5 config.json (default: flan-t5-base's shapes).
    #[arg(long)]
    pub t5_config: Option<PathBuf>,
    /// Also time whole lab iterations (generate + reward + step).
    #[arg(long)]
    pub iteration: bool,
    /// In the lab iteration, keep the policy's log-probs and values from the decode loop
    /// (true, `detox ppo`'s default) or recompute them as trl does (false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub rollout_from_generation: bool,
    /// PPO steps to time (the first one includes warm-up).
    #[arg(long, default_value_t = 2)]
    pub repeats: usize,
    #[arg(long, default_value_t = 200)]
    pub query_len: usize,
    #[arg(long, default_value_t = 100)]
    pub response_len: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Append the results as one JSON line to this file.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
}

const FLAN_T5_BASE: &str = r#"{"model_type":"t5","vocab_size":32128,"d_model":768,"d_kv":64,"d_ff":2048,
"num_layers":12,"num_decoder_layers":12,"num_heads":12,"feed_forward_proj":"gated-gelu","tie_word_embeddings":false,
"decoder_start_token_id":0,"pad_token_id":0,"eos_token_id":1,"dropout_rate":0.0}"#;
const ROBERTA_BASE: &str = r#"{"model_type":"roberta","vocab_size":50265,"hidden_size":768,"num_hidden_layers":12,
"num_attention_heads":12,"intermediate_size":3072,"max_position_embeddings":514,"type_vocab_size":1,
"layer_norm_eps":1e-5,"pad_token_id":1,"id2label":{"0":"nothate","1":"hate"}}"#;

/// The process's peak resident memory in MB (Linux `VmHWM`), if known.
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub struct PpoBench(pub PpoBenchArgs);

impl AutodiffJob for PpoBench {
    type Output = ();

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let a = self.0;
        let c = t5_config(&a)?;
        B::seed(&device, 0);
        let (mut trainer, trainable, all) = build_trainer::<B>(&c, &device)?;
        let bs = trainer.config.batch_size;
        let mut rng = StdRng::seed_from_u64(0);
        let queries = random_ids(&mut rng, bs, a.query_len.saturating_sub(1), None, Some(1));
        let responses = random_ids(&mut rng, bs, a.response_len, Some(0), None);
        let mut out = serde_json::json!({
            "device": a.device.name(),
            "trainable_params": trainable,
            "all_params": all,
            "query_len": a.query_len,
            "response_len": a.response_len,
        });
        let steps = time_steps(&mut trainer, &queries, &responses, a.repeats, &mut rng)?;
        out["steps"] = serde_json::json!(steps);
        out["peak_rss_mb_after_steps"] = serde_json::json!(peak_rss_mb());
        if a.iteration {
            out["iteration"] =
                time_iteration(trainer, queries, rng, a.rollout_from_generation, &device)?;
        }
        let peak = peak_rss_mb();
        out["peak_rss_mb"] = serde_json::json!(peak);
        println!(
            "trainable {trainable} / all {all} parameters; peak RSS {:.0} MB",
            peak.unwrap_or(f64::NAN)
        );
        if let Some(p) = &a.jsonl {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?;
            writeln!(f, "{out}")?;
        }
        Ok(())
    }
}

/// `--t5-config`, or flan-t5-base's shapes; dropout off (trl's PPO passes run in eval mode).
fn t5_config(a: &PpoBenchArgs) -> Result<T5Config> {
    let mut c: T5Config = match &a.t5_config {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("{}: not a valid T5 config", p.display()))?,
        None => serde_json::from_str(FLAN_T5_BASE).expect("built-in config"),
    };
    c.dropout_rate = 0.0;
    c.validate().map_err(anyhow::Error::msg)?;
    Ok(c)
}

/// The lab's trainer on a random-weight T5 of config `c`: LoRA r 32 on q/v, a value head, the
/// adapter-disabled reference. Returns it with the trainable and all parameter counts.
fn build_trainer<B: AutodiffBackend>(
    c: &T5Config,
    device: &B::Device,
) -> Result<(PpoTrainer<B>, usize, usize)> {
    let mut t5 = T5ForConditionalGeneration::<B>::new(c, device).no_grad();
    t5.use_out_in_layout(); // as the loaders store weights
    let mut lora = LoraConfig::lab();
    lora.lora_dropout = 0.0; // trl's PPO forward passes run in eval mode
    t5.add_lora(&lora, device).map_err(anyhow::Error::msg)?;
    let trainable = t5.lora_param_count() + c.d_model + 1;
    let policy = Seq2SeqLMWithValueHead {
        v_head: ValueHead::new(c.d_model, 0.0, device),
        pretrained_model: t5,
    };
    let all = policy.num_params();
    let reference = reference_model(&policy.valid().pretrained_model, ReferenceKind::Base);
    let trainer =
        PpoTrainer::new(policy, reference, lab_ppo(), 0, device).map_err(anyhow::Error::msg)?;
    Ok((trainer, trainable, all))
}

/// `n` rows of `len` random token ids, with `first` before and `last` after them.
fn random_ids(
    rng: &mut StdRng,
    n: usize,
    len: usize,
    first: Option<u32>,
    last: Option<u32>,
) -> Vec<Vec<u32>> {
    (0..n)
        .map(|_| {
            let body: Vec<u32> = (0..len).map(|_| rng.random_range(3..32000)).collect();
            first.into_iter().chain(body).chain(last).collect()
        })
        .collect()
}

/// Times `repeats` PPO steps on fixed queries and responses with random scores.
fn time_steps<B: AutodiffBackend>(
    trainer: &mut PpoTrainer<B>,
    queries: &[Vec<u32>],
    responses: &[Vec<u32>],
    repeats: usize,
    rng: &mut StdRng,
) -> Result<Vec<serde_json::Value>> {
    let mut steps = Vec::new();
    for i in 0..repeats.max(1) {
        let scores: Vec<f32> = (0..queries.len())
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let t = Instant::now();
        let o = trainer
            .step(queries, responses, &scores)
            .map_err(anyhow::Error::msg)?;
        let s = t.elapsed().as_secs_f64();
        let stat = |k: &str| o.stats.get(k).copied().unwrap_or(f64::NAN);
        let (forward, optimize) = (
            stat("time/ppo/forward_pass"),
            stat("time/ppo/optimize_step"),
        );
        println!("ppo step {i}: {s:.2} s (forward {forward:.2} s, optimize {optimize:.2} s)");
        steps.push(serde_json::json!({
            "seconds": s,
            "forward_pass": forward,
            "optimize_step": optimize,
        }));
    }
    Ok(steps)
}

/// A random roberta-base classifier's first logit for random ids as long as query + response
/// (at most 512), through `detox_hub::Classifier::logits`'s forward passes
/// ([`logits_in_groups`](detox_hub::classifier::logits_in_groups)): the reward's cost without a
/// tokenizer.
struct RandomReward<B: Backend> {
    model: RobertaForSequenceClassification<B>,
    rng: StdRng,
    device: B::Device,
}

impl<B: Backend> Reward for RandomReward<B> {
    fn scores(&mut self, queries: &[&Query], responses: &[Vec<u32>]) -> Result<Vec<f32>, LabError> {
        let lens: Vec<usize> = queries
            .iter()
            .zip(responses)
            .map(|(q, r)| (q.input_ids.len() + r.len()).clamp(1, 512))
            .collect();
        let rows: Vec<Vec<u32>> = lens
            .iter()
            .map(|&l| (0..l).map(|_| self.rng.random_range(3..50000)).collect())
            .collect();
        let logits = detox_hub::classifier::logits_in_groups(
            &self.model,
            &rows,
            responses.len(),
            1,
            &self.device,
        );
        let scores = logits.iter().map(|l| l[0]).collect();
        Ok(scores)
    }
}

/// Times one lab iteration ([`LabLoop::iteration`]: generation with `LengthSampler(100, 400)`
/// lengths, the reward, the step) on the benchmark's queries.
fn time_iteration<B: AutodiffBackend>(
    trainer: PpoTrainer<B>,
    queries: Vec<Vec<u32>>,
    rng: StdRng,
    rollout_from_generation: bool,
    device: &B::Device,
) -> Result<serde_json::Value> {
    let rc: RobertaConfig = serde_json::from_str(ROBERTA_BASE).expect("built-in config");
    let mut model = RobertaForSequenceClassification::<B::InnerBackend>::new(&rc, device);
    model.use_out_in_layout(); // as the loaders store weights
    let train = queries
        .into_iter()
        .map(|input_ids| Query {
            input_ids,
            text: String::new(),
        })
        .collect();
    let reward = RandomReward {
        model,
        rng,
        device: device.clone(),
    };
    let mut config = LabConfig::default();
    config.run.rollout_from_generation = rollout_from_generation;
    let device = device.clone();
    let mut lab = LabLoop {
        trainer,
        train,
        reward,
        config,
        device,
    };
    let it = lab.iteration(0)?;
    println!(
        "lab iteration: {:.1} s = generate {:.1} s ({} new tokens, lengths {:?}) + reward {:.1} s + step {:.1} s",
        it.seconds_total, it.seconds_generate, it.new_tokens, it.limits, it.seconds_reward, it.seconds_step
    );
    Ok(serde_json::json!({
        "seconds": it.seconds_total, "generate": it.seconds_generate,
        "reward": it.seconds_reward, "step": it.seconds_step,
        "new_tokens": it.new_tokens, "limits": it.limits,
        "rollout_from_generation": rollout_from_generation,
        "step_forward_pass": it.stats.get("time/ppo/forward_pass"),
    }))
}
