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
use rand::{Rng, SeedableRng};

use crate::backend::{AutodiffJob, DeviceArgs};
use detox_models::{
    LoraConfig, LoraTarget, RobertaConfig, RobertaForSequenceClassification, T5Config,
    T5ForConditionalGeneration, ValueHead,
};
use detox_ppo::lab::{generate_responses, lab_ppo, sample_lengths, GenerationSettings};
use detox_ppo::{reference_model, PpoTrainer, ReferenceKind, Seq2SeqLMWithValueHead};

#[derive(clap::Args, Debug, Clone)]
pub struct PpoBenchArgs {
    /// T5 config.json (default: flan-t5-base's shapes).
    #[arg(long)]
    pub t5_config: Option<PathBuf>,
    /// Also time whole lab iterations (generate + reward + step).
    #[arg(long)]
    pub iteration: bool,
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
        let mut c: T5Config = match &a.t5_config {
            Some(p) => serde_json::from_str(
                &std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
            )
            .with_context(|| format!("{}: not a valid T5 config", p.display()))?,
            None => serde_json::from_str(FLAN_T5_BASE).expect("built-in config"),
        };
        c.dropout_rate = 0.0;
        c.validate().map_err(anyhow::Error::msg)?;
        B::seed(&device, 0);
        let mut t5 = T5ForConditionalGeneration::<B>::new(&c, &device).no_grad();
        t5.use_out_in_layout(); // as the loaders store weights
        let mut lora = LoraConfig::lab();
        lora.lora_dropout = 0.0; // trl's PPO forward passes run in eval mode
        t5.add_lora(&lora, &device).map_err(anyhow::Error::msg)?;
        let trainable = t5.lora_param_count() + c.d_model + 1;
        let policy = Seq2SeqLMWithValueHead {
            v_head: ValueHead::new(c.d_model, 0.0, &device),
            pretrained_model: t5,
        };
        let all = policy.num_params();
        let reference = reference_model(&policy.valid().pretrained_model, ReferenceKind::Base);
        let config = lab_ppo();
        let bs = config.batch_size;
        let mut trainer =
            PpoTrainer::new(policy, reference, config, 0, &device).map_err(anyhow::Error::msg)?;

        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let queries: Vec<Vec<u32>> = (0..bs)
            .map(|_| {
                let mut q: Vec<u32> = (0..a.query_len - 1)
                    .map(|_| rng.random_range(3..32000))
                    .collect();
                q.push(1);
                q
            })
            .collect();
        let responses: Vec<Vec<u32>> = (0..bs)
            .map(|_| {
                std::iter::once(0)
                    .chain((0..a.response_len).map(|_| rng.random_range(3..32000)))
                    .collect()
            })
            .collect();
        let mut out = serde_json::json!({
            "device": a.device.name(),
            "trainable_params": trainable,
            "all_params": all,
            "query_len": a.query_len,
            "response_len": a.response_len,
        });
        let mut steps = Vec::new();
        for i in 0..a.repeats.max(1) {
            let scores: Vec<f32> = (0..bs).map(|_| rng.random_range(-2.0..2.0)).collect();
            let t = Instant::now();
            let o = trainer
                .step(&queries, &responses, &scores)
                .map_err(anyhow::Error::msg)?;
            let s = t.elapsed().as_secs_f64();
            println!(
                "ppo step {i}: {s:.2} s (forward {:.2} s, optimize {:.2} s)",
                o.stats["time/ppo/forward_pass"], o.stats["time/ppo/optimize_step"]
            );
            steps.push(serde_json::json!({
                "seconds": s,
                "forward_pass": o.stats["time/ppo/forward_pass"],
                "optimize_step": o.stats["time/ppo/optimize_step"],
            }));
        }
        out["steps"] = serde_json::json!(steps);
        out["peak_rss_mb_after_steps"] = serde_json::json!(peak_rss_mb());

        if a.iteration {
            let rc: RobertaConfig = serde_json::from_str(ROBERTA_BASE).expect("built-in config");
            let mut reward = RobertaForSequenceClassification::<B::InnerBackend>::new(&rc, &device);
            reward.use_out_in_layout(); // as the loaders store weights
            let gen = GenerationSettings::default();
            let mut lrng = rand::rngs::StdRng::seed_from_u64(5);
            let limits = sample_lengths(bs, gen.response_length, &mut lrng);
            let ids: Vec<&[u32]> = queries.iter().map(Vec::as_slice).collect();
            let t0 = Instant::now();
            let policy = trainer.policy().valid();
            let resp = generate_responses(
                &policy.pretrained_model,
                &ids,
                &limits,
                &gen,
                &mut lrng,
                &device,
            );
            drop(policy);
            let t_gen = t0.elapsed().as_secs_f64();
            let new_tokens: usize = resp.iter().map(|r| r.len() - 1).sum();
            let t1 = Instant::now();
            let len = resp
                .iter()
                .map(|r| a.query_len + r.len())
                .max()
                .unwrap_or(1)
                .min(512);
            let rids: Vec<i64> = (0..bs * len).map(|_| rng.random_range(3..50000)).collect();
            let rids = Tensor::<B::InnerBackend, 2, Int>::from_data(
                TensorData::new(rids, [bs, len]),
                &device,
            );
            let mask = Tensor::<B::InnerBackend, 2, Int>::ones([bs, len], &device);
            let logits: Vec<f32> = reward
                .forward(rids, mask)
                .into_data()
                .convert::<f32>()
                .into_vec()
                .expect("floats");
            let scores: Vec<f32> = logits.chunks(2).map(|r| r[0]).collect();
            let t_reward = t1.elapsed().as_secs_f64();
            let t2 = Instant::now();
            trainer
                .step(&queries, &resp, &scores)
                .map_err(anyhow::Error::msg)?;
            let t_step = t2.elapsed().as_secs_f64();
            let total = t0.elapsed().as_secs_f64();
            println!(
                "lab iteration: {total:.1} s = generate {t_gen:.1} s ({new_tokens} new tokens, lengths {:?}) + reward {t_reward:.1} s + step {t_step:.1} s",
                limits
            );
            out["iteration"] = serde_json::json!({
                "seconds": total, "generate": t_gen, "reward": t_reward, "step": t_step,
                "new_tokens": new_tokens, "limits": limits,
            });
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
