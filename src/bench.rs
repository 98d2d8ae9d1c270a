//! `detox bench`: throughput of the flan-t5-base-sized T5 (encoder, greedy, sampled and beam-4
//! decoding)
//! and the RoBERTa-base classifier with random weights, on the chosen backend.
//! Method (same as `benches/pytorch_bench.py`): fixed-length random prompts, EOS suppressed so
//! exactly `new_tokens` are generated, one warm-up run, then the median of `repeats` runs.
//!
//! `sft-lora` / `sft-full`: one supervised fine-tuning step (forward, backward, global-norm
//! clipping, AdamW) on `--sft-batch` random sources of `--sft-source-len` tokens and targets of
//! `--sft-target-len` tokens, as `benches/pytorch_sft_bench.py` times torch + peft; LoRA is the
//! lab's (r 32, alpha 32, q and v, dropout 0.05). Peak memory is the process's `VmHWM`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use burn::tensor::backend::AutodiffBackend;

use crate::backend::{AutodiffJob, DeviceArgs};
use detox_generate::{beam_search, generate, GenerationConfig};
use detox_models::{
    LoraConfig, LoraTarget, RobertaConfig, RobertaForSequenceClassification, T5Config,
    T5ForConditionalGeneration,
};
use detox_train::finetune::{apply_update, micro_step};
use detox_train::Batch;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// T5 config.json to build a random-init model from (default: flan-t5-base's shapes).
    #[arg(long)]
    pub t5_config: Option<PathBuf>,
    /// RoBERTa config.json (default: roberta-base's shapes).
    #[arg(long)]
    pub roberta_config: Option<PathBuf>,
    /// Which benchmarks: t5-encoder, t5-greedy, t5-sample, t5-beam4, roberta, sft-lora,
    /// sft-full (comma-separated; the SFT steps are not in the default list: minutes and
    /// ~13 GB each).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "t5-encoder,t5-greedy,t5-sample,t5-beam4,roberta"
    )]
    pub what: Vec<String>,
    /// Batch sizes for the T5 encoder, greedy and sampling benchmarks.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub batch: Vec<usize>,
    /// Batch sizes (prompts) for t5-beam4: 4 beams per prompt.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub beam_batch: Vec<usize>,
    #[arg(long, default_value_t = 200)]
    pub prompt_len: usize,
    #[arg(long, default_value_t = 100)]
    pub new_tokens: usize,
    #[arg(long, default_value_t = 16)]
    pub roberta_batch: usize,
    #[arg(long, default_value_t = 256)]
    pub roberta_len: usize,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long, default_value_t = 8)]
    pub sft_batch: usize,
    #[arg(long, default_value_t = 512)]
    pub sft_source_len: usize,
    #[arg(long, default_value_t = 128)]
    pub sft_target_len: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Append one JSON line per result to this file.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
}

#[derive(Serialize, Debug)]
struct BenchResult {
    name: String,
    device: String,
    batch: usize,
    seconds_median: f64,
    throughput: f64,
    unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_rss_mb: Option<f64>,
}

const FLAN_T5_BASE: &str = r#"{"model_type":"t5","vocab_size":32128,"d_model":768,"d_kv":64,"d_ff":2048,
"num_layers":12,"num_decoder_layers":12,"num_heads":12,"feed_forward_proj":"gated-gelu","tie_word_embeddings":false,
"decoder_start_token_id":0,"pad_token_id":0,"eos_token_id":1}"#;
const ROBERTA_BASE: &str = r#"{"model_type":"roberta","vocab_size":50265,"hidden_size":768,"num_hidden_layers":12,
"num_attention_heads":12,"intermediate_size":3072,"max_position_embeddings":514,"type_vocab_size":1,
"layer_norm_eps":1e-5,"pad_token_id":1,"id2label":{"0":"nothate","1":"hate"}}"#;

fn read_or<T: serde::de::DeserializeOwned>(path: &Option<PathBuf>, default: &str) -> Result<T> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not a valid config", p.display()))
        }
        None => Ok(serde_json::from_str(default).expect("built-in config")),
    }
}

/// The ids random inputs are drawn from: `3..cap`, within a vocabulary of `vocab_size` (a
/// `--t5-config` / `--roberta-config` with a small vocabulary gets ids it can embed).
fn id_range(vocab_size: usize, cap: i64) -> std::ops::Range<i64> {
    let hi = (vocab_size as i64).clamp(1, cap);
    3.min(hi - 1)..hi
}

fn random_ids<B: Backend>(
    rng: &mut rand::rngs::StdRng,
    batch: usize,
    len: usize,
    range: std::ops::Range<i64>,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = (0..batch * len)
        .map(|_| rng.random_range(range.clone()))
        .collect();
    Tensor::from_data(TensorData::new(ids, [batch, len]), device)
}

fn median_secs(repeats: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut t: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

pub struct Bench(pub BenchArgs);

impl AutodiffJob for Bench {
    type Output = ();

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let a = self.0;
        let mut results = inference::<B::InnerBackend>(&a, &device)?;
        for (name, lora) in [("sft-lora", true), ("sft-full", false)] {
            if a.wants(name) {
                results.push(sft_step::<B>(&a, name, lora, &device)?);
            }
        }
        report(&a, &results)
    }
}

/// One optimizer step of supervised fine-tuning (LoRA or full), median over `repeats` steps
/// after one warm-up step.
fn sft_step<B: AutodiffBackend>(
    a: &BenchArgs,
    name: &str,
    lora: bool,
    device: &B::Device,
) -> Result<BenchResult> {
    let c: T5Config = read_or(&a.t5_config, FLAN_T5_BASE)?;
    c.validate().map_err(anyhow::Error::msg)?;
    B::seed(device, 0);
    let mut model = T5ForConditionalGeneration::<B>::new(&c, device);
    model.use_out_in_layout(); // as the loaders store weights
    if lora {
        model = model.no_grad();
        model
            .add_lora(&LoraConfig::lab(), device)
            .map_err(anyhow::Error::msg)?;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let (b, src, tgt) = (a.sft_batch, a.sft_source_len, a.sft_target_len);
    let range = id_range(c.vocab_size, 32000);
    let mut ids =
        |n: usize| -> Vec<i64> { (0..n).map(|_| rng.random_range(range.clone())).collect() };
    let batch = Batch {
        input_ids: ids(b * src),
        attention_mask: vec![1; b * src],
        labels: ids(b * tgt),
        batch: b,
        src_len: src,
        tgt_len: tgt,
    };
    let mut optim = detox_train::optim::adamw(0.0).init::<B, T5ForConditionalGeneration<B>>();
    let mut slot = Some(model);
    let s = median_secs(a.repeats, || {
        let model = slot.take().expect("model between steps");
        let (_, grads) = micro_step(&model, &batch, 1, device);
        let (model, _) = apply_update(model, &mut optim, grads, Some(1.0), 1e-5);
        slot = Some(model);
    });
    Ok(BenchResult {
        name: name.into(),
        device: a.device.name(),
        batch: b,
        seconds_median: s,
        throughput: (b * (src + tgt)) as f64 / s,
        unit: "tokens/s",
        peak_rss_mb: crate::bench_ppo::peak_rss_mb(),
    })
}

impl BenchArgs {
    /// Whether `--what` names benchmark `name`.
    fn wants(&self, name: &str) -> bool {
        self.what.iter().any(|x| x == name)
    }
}

/// The inference benchmarks `--what` asks for: T5 encoder / decoding, then the RoBERTa forward
/// pass (random inputs from one seeded generator, in that order).
fn inference<B: Backend>(a: &BenchArgs, device: &B::Device) -> Result<Vec<BenchResult>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut results = Vec::new();
    if a.what.iter().any(|w| w.starts_with("t5")) {
        results.extend(t5_inference::<B>(a, &mut rng, device)?);
    }
    if a.wants("roberta") {
        results.push(roberta_forward::<B>(a, &mut rng, device)?);
    }
    Ok(results)
}

/// `t5-encoder`, `t5-greedy` and `t5-sample` (those asked for) at each `--batch` size, and
/// `t5-beam4` at each `--beam-batch` size.
fn t5_inference<B: Backend>(
    a: &BenchArgs,
    rng: &mut rand::rngs::StdRng,
    device: &B::Device,
) -> Result<Vec<BenchResult>> {
    let c: T5Config = read_or(&a.t5_config, FLAN_T5_BASE)?;
    c.validate().map_err(anyhow::Error::msg)?;
    let mut model = T5ForConditionalGeneration::<B>::new(&c, device);
    model.use_out_in_layout(); // as the loaders store weights
    let result = |name: &str, batch, s, throughput, unit| BenchResult {
        name: name.into(),
        device: a.device.name(),
        batch,
        seconds_median: s,
        throughput,
        unit,
        peak_rss_mb: None,
    };
    // `batch` random prompts of `--prompt-len` tokens, all attended
    let mut prompts = |batch: usize| {
        let ids = random_ids::<B>(
            rng,
            batch,
            a.prompt_len,
            id_range(c.vocab_size, 32000),
            device,
        );
        (
            ids,
            Tensor::<B, 2, Int>::ones([batch, a.prompt_len], device),
        )
    };
    let mut results = Vec::new();
    for &batch in &a.batch {
        let (ids, mask) = prompts(batch);
        if a.wants("t5-encoder") {
            let s = median_secs(a.repeats, || {
                let out = model.encode(ids.clone(), mask.clone());
                let _ = out.hidden.into_data();
            });
            let tokens = (batch * a.prompt_len) as f64;
            results.push(result(
                "t5-encoder",
                batch,
                s,
                tokens / s,
                "prompt tokens/s",
            ));
        }
        for (name, sample) in [("t5-greedy", false), ("t5-sample", true)] {
            if !a.wants(name) {
                continue;
            }
            let cfg = GenerationConfig {
                max_new_tokens: a.new_tokens,
                min_new_tokens: a.new_tokens,
                do_sample: sample,
                top_k: 0,
                top_p: 1.0,
                ..Default::default()
            };
            let mut grng = rand::rngs::StdRng::seed_from_u64(1);
            let s = median_secs(a.repeats, || {
                let out = generate(&model, ids.clone(), mask.clone(), &cfg, &mut grng);
                assert!(out.iter().all(|r| r.len() == a.new_tokens));
            });
            let tokens = (batch * a.new_tokens) as f64;
            results.push(result(name, batch, s, tokens / s, "new tokens/s"));
        }
    }
    if a.wants("t5-beam4") {
        // 4 beams, nothing finishes (EOS suppressed): every step decodes 4 rows per prompt
        let cfg = GenerationConfig {
            max_new_tokens: a.new_tokens,
            min_new_tokens: a.new_tokens,
            num_beams: 4,
            ..Default::default()
        };
        for &batch in &a.beam_batch {
            let (ids, mask) = prompts(batch);
            let s = median_secs(a.repeats, || {
                let out = beam_search(&model, ids.clone(), mask.clone(), &cfg);
                assert!(out.iter().all(|h| h[0].tokens.len() == a.new_tokens));
            });
            let tokens = (batch * a.new_tokens) as f64;
            results.push(result("t5-beam4", batch, s, tokens / s, "new tokens/s"));
        }
    }
    Ok(results)
}

/// The RoBERTa classifier's forward pass on `--roberta-batch` x `--roberta-len` random ids.
fn roberta_forward<B: Backend>(
    a: &BenchArgs,
    rng: &mut rand::rngs::StdRng,
    device: &B::Device,
) -> Result<BenchResult> {
    let c: RobertaConfig = read_or(&a.roberta_config, ROBERTA_BASE)?;
    c.validate().map_err(anyhow::Error::msg)?;
    let mut model = RobertaForSequenceClassification::<B>::new(&c, device);
    model.use_out_in_layout(); // as the loaders store weights
    let (b, l) = (a.roberta_batch, a.roberta_len);
    let ids = random_ids::<B>(rng, b, l, id_range(c.vocab_size, 50000), device);
    let mask = Tensor::<B, 2, Int>::ones([b, l], device);
    let s = median_secs(a.repeats, || {
        let _ = model.forward(ids.clone(), mask.clone()).into_data();
    });
    Ok(BenchResult {
        name: format!("roberta-{b}x{l}"),
        device: a.device.name(),
        batch: b,
        seconds_median: s,
        throughput: b as f64 / s,
        unit: "sequences/s",
        peak_rss_mb: None,
    })
}

fn report(a: &BenchArgs, results: &[BenchResult]) -> Result<()> {
    let mut sink = match &a.jsonl {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => None,
    };
    for r in results {
        println!(
            "{:<16} {:>5} batch {:>3}  {:>9.3} s  {:>9.2} {}",
            r.name, r.device, r.batch, r.seconds_median, r.throughput, r.unit
        );
        if let Some(f) = sink.as_mut() {
            use std::io::Write;
            writeln!(f, "{}", serde_json::to_string(r)?)?;
        }
    }
    Ok(())
}
