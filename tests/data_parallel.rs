//! Data-parallel fine-tuning (`detox-parallel` on burn-collective) against one device: with
//! dropout off, N peers that each train on their share of every batch and sum their
//! token-weighted gradients end with the parameters one trainer gets on the whole batches.

mod common;

use std::path::Path;
use std::time::Duration;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::prelude::*;
use common::fixtures;
use detox_models::LoraConfig;
use detox_parallel::{run_local_peers, PeerJob, Topology};
use detox_train::{Duration as Steps, Example, FinetuneConfig, Mode, Start, Trainer};

type Cpu = burn::backend::Flex;
type Ad = burn::backend::Autodiff<Cpu>;

/// The CPU backend's random generator (LoRA init) is one per process: runs that are compared
/// must not draw from it concurrently.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seven short dialogue/summary pairs of different lengths (so the shares' token counts differ).
fn examples() -> Vec<Example> {
    [
        ("#Person1#: Is the shop open today?\n#Person2#: Yes, until nine.", "The shop is open until nine."),
        ("#Person1#: I lost my keys.\n#Person2#: Look in your bag.", "#Person2# helps #Person1# find the keys."),
        ("#Person1#: Let's eat out tonight.\n#Person2#: Good idea, I know a place.", "They will eat out tonight."),
        ("#Person1#: Did you finish the report?\n#Person2#: Not yet, I need one more day to check the numbers.", "#Person2# needs a day for the report."),
        ("#Person1#: Hello.\n#Person2#: Hi.", "They greet."),
        ("#Person1#: The train is late again.\n#Person2#: Then let's take the bus, it leaves in five minutes from the corner.", "They take the bus because the train is late."),
        ("#Person1#: Can I borrow your pen?\n#Person2#: Sure.", "#Person2# lends #Person1# a pen."),
    ]
    .into_iter()
    .map(|(d, s)| Example {
        id: None,
        dialogue: d.into(),
        summary: s.into(),
        topic: None,
    })
    .collect()
}

fn config(mode: Mode, steps: usize, batch_size: usize, grad_accum: usize) -> FinetuneConfig {
    FinetuneConfig {
        mode,
        lora: LoraConfig::new(4, 8.0, &["q", "v"], 0.0),
        lr: 1e-3,
        batch_size,
        grad_accum,
        duration: Steps::MaxSteps(steps),
        warmup_steps: 1,
        max_grad_norm: Some(1.0),
        dropout_rate: Some(0.0),
        log_every: 1,
        seed: 11,
        ..Default::default()
    }
}

struct Values(Vec<Vec<f32>>);

impl<B: Backend> ModuleVisitor<B> for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0
            .push(param.val().into_data().convert::<f32>().into_vec().unwrap());
    }
}

fn values(t: &Trainer<Ad>) -> Vec<Vec<f32>> {
    let mut v = Values(Vec::new());
    t.model().valid().visit(&mut v);
    v.0
}

fn new_trainer(out: &Path, cfg: &FinetuneConfig, main: bool) -> Trainer<Ad> {
    let ex = examples();
    let args = (
        &fixtures().join("t5-tiny"),
        &ex[..],
        None,
        out,
        cfg.clone(),
        Start::New,
    );
    let made = if main {
        Trainer::<Ad>::new(
            args.0,
            args.1,
            args.2,
            args.3,
            args.4,
            args.5,
            &Default::default(),
        )
    } else {
        Trainer::<Ad>::replica(
            args.0,
            args.1,
            args.2,
            args.3,
            args.4,
            args.5,
            &Default::default(),
        )
    };
    made.unwrap()
}

/// The parameters after `cfg`'s steps, and the losses, on one trainer.
fn alone(cfg: &FinetuneConfig, tag: &str) -> (Vec<Vec<f32>>, Vec<f64>) {
    let out = common::scratch_path("detox-dp", tag);
    let mut t = new_trainer(&out, cfg, true);
    let losses = (0..t.total_steps())
        .map(|_| t.train_step().unwrap().loss)
        .collect();
    (values(&t), losses)
}

/// What a peer's job returns: its parameters and its losses.
type PeerResult = (Vec<Vec<f32>>, Vec<f64>);

/// The parameters of every peer after `cfg`'s steps on `world` peers, and the main peer's losses.
fn data_parallel(cfg: &FinetuneConfig, world: usize, tag: &str) -> (Vec<Vec<Vec<f32>>>, Vec<f64>) {
    let out = common::scratch_path("detox-dp", tag);
    let trainers: Vec<Trainer<Ad>> = (0..world).map(|r| new_trainer(&out, cfg, r == 0)).collect();
    let jobs: Vec<PeerJob<'_, PeerResult, anyhow::Error>> = trainers
        .into_iter()
        .map(|mut t| {
            Box::new(move |peer| {
                t.set_peer(peer)?;
                let mut losses = Vec::new();
                for _ in 0..t.total_steps() {
                    losses.push(t.train_step()?.loss);
                }
                Ok((values(&t), losses))
            }) as PeerJob<'_, _, anyhow::Error>
        })
        .collect();
    let results = run_local_peers::<Cpu, _, anyhow::Error>(
        &Topology::local(world),
        vec![Default::default(); world],
        jobs,
        Duration::from_secs(120),
    )
    .unwrap();
    let losses = results[0].1.clone();
    (results.into_iter().map(|r| r.0).collect(), losses)
}

/// Largest absolute difference between two parameter sets.
fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn check(cfg: FinetuneConfig, world: usize, tag: &str) {
    let _serial = serial();
    let (want, want_losses) = alone(&cfg, &format!("{tag}-1"));
    let (peers, losses) = data_parallel(&cfg, world, &format!("{tag}-{world}"));
    let start = {
        let out = common::scratch_path("detox-dp", &format!("{tag}-init"));
        values(&new_trainer(&out, &cfg, true))
    };
    let moved = max_diff(&want, &start);
    for (rank, got) in peers.iter().enumerate() {
        let d = max_diff(got, &want);
        eprintln!("{tag}: peer {rank} of {world}: max |diff| {d:e} (training moved {moved:e})");
        assert!(
            d < 1e-5,
            "peer {rank} of {world} differs from one device by {d:e}"
        );
    }
    assert!(
        moved > 1e-4,
        "training must move the parameters ({moved:e})"
    );
    for (a, b) in losses.iter().zip(&want_losses) {
        assert!((a - b).abs() < 1e-5 * b.abs(), "loss {a} vs {b}");
    }
}

#[test]
fn two_peers_train_lora_as_one_device_does() {
    // 7 examples in batches of 4: shares of 2 + 2 and, at the end of the epoch, 2 + 1.
    check(config(Mode::Lora, 3, 4, 1), 2, "lora");
}

#[test]
fn three_peers_train_every_parameter_as_one_device_does() {
    // Uneven shares (2 + 1 + 1 of 4; 1 + 1 + 1 of 3) and two micro-batches per step.
    check(config(Mode::Full, 2, 4, 2), 3, "full");
}

#[test]
fn a_peer_with_an_empty_share_still_takes_part() {
    // Batches of 2 on 3 peers: the third peer's share is empty (weight 0).
    check(config(Mode::Lora, 2, 2, 1), 3, "empty");
}

#[test]
fn finetune_data_parallel_matches_one_device_and_writes_once() {
    let dir = common::scratch_dir("detox-dp", "cli");
    let data = common::synthetic_data(&dir, 6);
    let model = fixtures().join("t5-tiny");
    let run = |out: &Path, extra: &[&str]| {
        let mut args = common::tiny_lora_args(&data, out);
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = common::detox_owned(&args);
        serde_json::from_str::<serde_json::Value>(common::ok(&o).trim()).unwrap()
    };
    let (one, two) = (dir.join("one"), dir.join("two"));
    let a = run(&one, &[]);
    let b = run(&two, &["--data-parallel", "2"]);
    assert_eq!(a["steps"], 3);
    assert_eq!(b["steps"], 3);
    let (la, lb) = (
        a["last_loss"].as_f64().unwrap(),
        b["last_loss"].as_f64().unwrap(),
    );
    assert!((la - lb).abs() < 1e-5 * la.abs(), "{la} vs {lb}");
    let (ea, eb) = (
        a["eval_loss"].as_f64().unwrap(),
        b["eval_loss"].as_f64().unwrap(),
    );
    assert!((ea - eb).abs() < 1e-5 * ea.abs(), "{ea} vs {eb}");
    // One writer: one metrics row per step, the checkpoints of one run.
    let steps: Vec<usize> = common::jsonl_column(&two.join("metrics.jsonl"), "step");
    assert_eq!(steps, vec![1, 2, 3]);
    for ck in ["checkpoint-2", "checkpoint-3", "final"] {
        assert!(two.join(ck).is_dir(), "{ck}");
    }
    let d = common::adapter_diff(&one.join("final"), &two.join("final"));
    assert!(d < 1e-5, "data-parallel adapter differs by {d:e}");

    // Resumed from its checkpoint-2, a data-parallel run ends where the uninterrupted one did.
    let three = dir.join("three");
    std::fs::create_dir_all(three.join("checkpoint-2")).unwrap();
    for e in std::fs::read_dir(two.join("checkpoint-2")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), three.join("checkpoint-2").join(e.file_name())).unwrap();
    }
    let c = run(&three, &["--data-parallel", "2", "--resume"]);
    assert_eq!(c["steps"], 3);
    let d = common::adapter_diff(&two.join("final"), &three.join("final"));
    assert!(d < 1e-5, "the resumed data-parallel run differs by {d:e}");

    let o = common::detox(&[
        "finetune",
        "--model",
        model.to_str().unwrap(),
        "--mode",
        "lora",
        "--train",
        data.to_str().unwrap(),
        "--out",
        dir.join("zero").to_str().unwrap(),
        "--data-parallel",
        "0",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--data-parallel must be at least 1"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// PPO: one trl step (the fixtures of tests/parity_ppo.rs) on 1 and on 2 peers
// ---------------------------------------------------------------------------------------------

use detox_ppo::PpoTrainer;
use serde_json::Value;

fn ppo_trainer(case: &str) -> (PpoTrainer<Ad>, Value) {
    let (t, fx, _) = common::ppo_fixture_trainer::<Ad>(case);
    (t, fx)
}

/// The fixture's first step: queries, responses, scores and trl's permutations.
type StepInputs = (Vec<Vec<u32>>, Vec<Vec<u32>>, Vec<f32>, Vec<Vec<usize>>);

fn step_inputs(fx: &Value, epochs: usize, batch: usize) -> StepInputs {
    let st = &fx["steps"][0];
    let rows = |v: &Value| -> Vec<Vec<u32>> { serde_json::from_value(v.clone()).unwrap() };
    let mut perms: Vec<Vec<usize>> = serde_json::from_value(st["permutations"].clone()).unwrap();
    while perms.len() < epochs {
        perms.push((0..batch).collect());
    }
    let scores: Vec<f32> = serde_json::from_value(st["scores"].clone()).unwrap();
    (rows(&st["queries"]), rows(&st["responses"]), scores, perms)
}

fn policy_values(t: &PpoTrainer<Ad>) -> Vec<Vec<f32>> {
    let mut v = Values(Vec::new());
    t.policy().valid().visit(&mut v);
    v.0
}

/// What a PPO peer's job returns: its policy's parameters and the step's stats.
type PpoPeerResult = (Vec<Vec<f32>>, detox_rl::Stats);

fn check_ppo(case: &str) {
    let _serial = serial();
    let (mut alone, fx) = ppo_trainer(case);
    let (epochs, batch) = (alone.config.ppo_epochs, alone.config.batch_size);
    let (q, r, s, p) = step_inputs(&fx, epochs, batch);
    let start = policy_values(&alone);
    let want = alone.step_with_permutations(&q, &r, &s, Some(&p)).unwrap();
    let want_params = policy_values(&alone);

    let jobs: Vec<PeerJob<'_, PpoPeerResult, anyhow::Error>> = (0..2)
        .map(|_| {
            let (mut t, _) = ppo_trainer(case);
            let (q, r, s, p) = (q.clone(), r.clone(), s.clone(), p.clone());
            Box::new(move |peer| {
                t.set_peer(peer)?;
                let out = t.step_with_permutations(&q, &r, &s, Some(&p))?;
                Ok((policy_values(&t), out.stats))
            }) as PeerJob<'_, _, anyhow::Error>
        })
        .collect();
    let peers = run_local_peers::<Cpu, _, anyhow::Error>(
        &Topology::local(2),
        vec![Default::default(); 2],
        jobs,
        Duration::from_secs(120),
    )
    .unwrap();
    let moved = max_diff(&want_params, &start);
    assert!(moved > 1e-6, "the step must move the policy ({moved:e})");
    for (rank, (params, stats)) in peers.iter().enumerate() {
        let d = max_diff(params, &want_params);
        eprintln!("ppo {case}: peer {rank} of 2: max |diff| {d:e} (the step moved {moved:e})");
        assert!(
            d < 1e-5,
            "peer {rank}: the policy differs from one device's by {d:e}"
        );
        for (k, w) in want.stats.iter().filter(|(k, _)| !k.starts_with("time/")) {
            let g = stats[k];
            // relative 1e-4, plus the float32 resolution of t5-tiny's log-probs (about -50:
            // one ulp is 4e-6), which stats such as policykl take differences of
            let tol = 1e-4 * w.abs() + 2e-5;
            assert!(
                (g - w).abs() <= tol || (g.is_nan() && w.is_nan()),
                "peer {rank}: stat {k}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn two_peers_take_trls_ppo_step_as_one_device_does() {
    // 4 rows, minibatches of 2 (one row per peer), 2 epochs, adaptive KL, clipping.
    check_ppo("default");
}

#[test]
fn two_peers_take_the_accumulated_early_stopped_ppo_step_as_one_device_does() {
    // minibatches of 1 row (the second peer's share is empty), 2 accumulation steps, full KL,
    // whitened rewards, score clipping, early stopping on the summed policykl.
    check_ppo("full_scaled");
}

#[test]
fn ppo_data_parallel_runs_the_lab_writes_once_and_resumes() {
    let dir = common::scratch_dir("detox-dp", "ppo-cli");
    let data = common::synthetic_data(&dir, 12);
    let out = dir.join("run");
    let run = |steps: usize, extra: &[&str]| {
        let mut args = common::tiny_ppo_args(&data, &out, steps);
        args.extend(
            ["--data-parallel", "3"]
                .iter()
                .chain(extra)
                .map(|s| s.to_string()),
        );
        common::ok(&common::detox_owned(&args));
    };
    // 3 peers on batches of 4: generation shares of 2 + 1 + 1 rows, minibatch shares 1 + 1 + 0
    run(2, &[]);
    let steps: Vec<usize> = common::jsonl_column(&out.join("stats.jsonl"), "step");
    assert_eq!(steps, vec![1, 2]);
    let kl: Vec<f64> = common::jsonl_column(&out.join("stats.jsonl"), "objective/kl");
    assert!(kl.iter().all(|k| k.is_finite()), "{kl:?}");
    for f in [
        "toxicity.json",
        "comparison.json",
        "checkpoints/checkpoint-2",
        "checkpoints/final",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    // resumed on the same number of peers, from checkpoint-2
    run(3, &["--resume", "--rollout-from-generation", "false"]);
    let steps: Vec<usize> = common::jsonl_column(&out.join("stats.jsonl"), "step");
    assert_eq!(steps, vec![1, 2, 3]);
    assert!(out.join("checkpoints/checkpoint-3").is_dir());
}
