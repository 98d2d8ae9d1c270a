//! The fine-tuning loop on the t5-tiny fixture: checkpoints reload, resuming continues the same
//! run (optimizer state, data position, dropout masks), metrics rows, refusals.

mod common;

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use common::{adapter_values, assert_slices_close, fixtures, Reference};
use detox_models::LoraConfig;
use detox_train::{Duration, Example, FinetuneConfig, Mode, Resume, Start, Trainer};

type Cpu = burn::backend::NdArray<f32>;
type Ad = burn::backend::Autodiff<Cpu>;

/// The CPU backend's random generator (dropout masks, LoRA init) is one per process: tests that
/// compare runs must not draw from it concurrently.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn scratch(tag: &str) -> PathBuf {
    common::scratch_path("detox-train-loop", tag)
}

/// Six short dialogue/summary pairs (the SFT fixture's three, and three more).
fn examples() -> Vec<Example> {
    let r = Reference::load("sft");
    let d: Vec<String> = serde_json::from_value(r.meta["dialogues"].clone()).unwrap();
    let s: Vec<String> = serde_json::from_value(r.meta["summaries"].clone()).unwrap();
    let mut out: Vec<Example> = d
        .iter()
        .zip(&s)
        .map(|(d, s)| Example {
            id: None,
            dialogue: d.clone(),
            summary: s.clone(),
            topic: None,
        })
        .collect();
    for (d, s) in [
        (
            "#Person1#: Is the shop open today?\n#Person2#: Yes, until nine.",
            "The shop is open until nine.",
        ),
        (
            "#Person1#: I lost my keys.\n#Person2#: Look in your bag.",
            "#Person2# helps #Person1# find the keys.",
        ),
        (
            "#Person1#: Let's eat out tonight.\n#Person2#: Good idea, I know a place.",
            "They will eat out tonight.",
        ),
    ] {
        out.push(Example {
            id: None,
            dialogue: d.into(),
            summary: s.into(),
            topic: None,
        });
    }
    out
}

fn config(mode: Mode, steps: usize) -> FinetuneConfig {
    FinetuneConfig {
        mode,
        lora: LoraConfig::new(4, 8.0, &["q", "v"], 0.1),
        lr: 1e-2,
        batch_size: 4,
        grad_accum: 1,
        duration: Duration::MaxSteps(steps),
        warmup_steps: 1,
        max_grad_norm: Some(1.0),
        log_every: 1,
        seed: 7,
        ..Default::default()
    }
}

fn start(resume: Option<Resume>) -> Start {
    resume.map_or(Start::New, Start::Resume)
}

fn trainer(out: &Path, cfg: FinetuneConfig, resume: Option<Resume>) -> Trainer<Ad> {
    let ex = examples();
    Trainer::<Ad>::new(
        &fixtures().join("t5-tiny"),
        &ex,
        Some(&ex[..2]),
        out,
        cfg,
        start(resume),
        &Default::default(),
    )
    .unwrap()
}

/// Relative L2 distance between two adapters' trained updates.
fn distance(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for ((ka, va), (kb, vb)) in a.iter().zip(b) {
        assert_eq!(ka, kb);
        for (x, y) in va.iter().zip(vb) {
            num += (*x as f64 - *y as f64).powi(2);
            den += (*y as f64).powi(2);
        }
    }
    (num / den).sqrt()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn resuming_a_lora_run_continues_it() {
    let _serial = serial();
    // Uninterrupted: 4 steps, checkpoints at 2 and 4.
    let a = scratch("a");
    let mut cfg = config(Mode::Lora, 4);
    cfg.save_every = Some(2);
    let sa = trainer(&a, cfg.clone(), None).run(false).unwrap();
    assert_eq!(sa.steps, 4);
    assert_eq!(sa.last_checkpoint, a.join("checkpoint-4"));
    // The same run, stopped after step 3 (its metrics row written, checkpoint-2 the latest).
    let b = scratch("b");
    copy_dir(&a.join("checkpoint-2"), &b.join("checkpoint-2"));
    let rows = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    let first3: String = rows.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(b.join("metrics.jsonl"), first3).unwrap();
    let mut t = trainer(&b, cfg.clone(), Some(Resume::Latest));
    assert_eq!(t.step(), 2);
    assert_eq!(t.resumed_from(), Some(b.join("checkpoint-2").as_path()));
    let sb = t.run(false).unwrap();
    assert_eq!(sb.steps, 4);
    let (fa, fb) = (adapter_values(&sa.final_dir), adapter_values(&sb.final_dir));
    let d = distance(&fb, &fa);
    // Not bit-identical only because the multi-threaded CPU matmul does not sum in a fixed order.
    assert!(
        d < 1e-4,
        "the resumed run differs from the uninterrupted one by {d:e}"
    );

    // Resuming with fresh AdamW moments instead (what a weights-only resume does) ends elsewhere:
    // the check above does tell the two apart.
    let c = scratch("c");
    copy_dir(&a.join("checkpoint-2"), &c.join("checkpoint-2"));
    let mut t = trainer(&c, cfg.clone(), Some(Resume::Latest));
    t.reset_optimizer();
    let sc = t.run(false).unwrap();
    let dc = distance(&adapter_values(&sc.final_dir), &fa);
    eprintln!("resumed: {d:e}, fresh moments: {dc:e}");
    assert!(
        dc > 100.0 * d.max(1e-6),
        "fresh moments: {dc:e} vs resumed {d:e}"
    );

    // A checkpoint without its optimizer state is refused, not silently resumed with fresh moments.
    drop(t); // (its lock on the run directory)
    std::fs::remove_file(c.join("checkpoint-4/optimizer.mpk")).unwrap();
    let err = match Trainer::<Ad>::new(
        &fixtures().join("t5-tiny"),
        &examples(),
        None,
        &c,
        cfg.clone(),
        Start::Resume(Resume::Latest),
        &Default::default(),
    ) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("resume without optimizer state must fail"),
    };
    assert!(err.contains("optimizer.mpk"), "{err}");

    // metrics.jsonl: one row per step; the resumed file reads as one run.
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(b.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<u64> = rows.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
    for r in &rows {
        for k in ["loss", "lr", "grad_norm", "tokens_per_s", "epoch"] {
            assert!(r[k].is_number(), "{k} in {r}");
        }
    }
    assert_eq!(
        rows[0]["lr"].as_f64().unwrap(),
        0.0,
        "warmup: the first step uses lr 0"
    );
    assert!(rows[3]["eval_loss"].is_number(), "eval at the end");
    for d in [a, b, c] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn full_checkpoints_are_model_directories_that_reload() {
    let _serial = serial();
    let out = scratch("full");
    let mut cfg = config(Mode::Full, 2);
    cfg.lr = 1e-3;
    cfg.save_every = Some(1);
    let mut t = trainer(&out, cfg, None);
    let (trainable, all) = t.parameter_counts();
    assert_eq!(trainable, all);
    let s = t.run(false).unwrap();
    for dir in [
        out.join("checkpoint-1"),
        out.join("checkpoint-2"),
        s.final_dir.clone(),
    ] {
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            assert!(dir.join(f).is_file(), "{}/{f}", dir.display());
        }
    }
    assert!(!s.final_dir.join("optimizer.mpk").exists());
    // The saved model gives the trained model's logits.
    let device = Default::default();
    let reloaded = detox_hub::load_t5::<Cpu>(&s.final_dir, &device).unwrap();
    let r = Reference::load("t5-tiny");
    let run = |m: &detox_models::T5ForConditionalGeneration<Cpu>| -> Vec<f32> {
        m.forward(
            r.int::<Cpu, 2>("input_ids", &device),
            r.int::<Cpu, 2>("attention_mask", &device),
            r.int::<Cpu, 2>("decoder_input_ids", &device),
        )
        .into_data()
        .into_vec()
        .unwrap()
    };
    let trained = t.model().valid();
    assert_slices_close("reloaded logits", &run(&reloaded), &run(&trained), 1e-4);
    let base = detox_hub::load_t5::<Cpu>(&fixtures().join("t5-tiny"), &device).unwrap();
    let (x, y) = (run(&reloaded), run(&base));
    assert!(
        x.iter().zip(&y).any(|(a, b)| (a - b).abs() > 1e-3),
        "training changed nothing"
    );
    // Resuming full mode from a checkpoint directory given explicitly.
    drop(t); // (its lock on the run directory)
    let mut cfg = config(Mode::Full, 3);
    cfg.lr = 1e-3;
    let mut t = trainer(&out, cfg, Some(Resume::Dir(out.join("checkpoint-1"))));
    assert_eq!(t.step(), 1);
    assert_eq!(t.run(false).unwrap().steps, 3);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn refusals_are_clear() {
    let _serial = serial();
    let out = scratch("refuse");
    trainer(&out, config(Mode::Lora, 1), None)
        .run(false)
        .unwrap();
    let err = |cfg: FinetuneConfig, resume: Option<Resume>| -> String {
        match Trainer::<Ad>::new(
            &fixtures().join("t5-tiny"),
            &examples(),
            None,
            &out,
            cfg,
            start(resume),
            &Default::default(),
        ) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected an error"),
        }
    };
    assert!(err(config(Mode::Lora, 2), None).contains("pass --resume"));
    assert!(err(config(Mode::Full, 2), Some(Resume::Latest)).contains("--mode"));
    let mut bad = config(Mode::Lora, 2);
    bad.lr = -1.0;
    assert!(err(bad, None).contains("--lr"));
    let mut bad = config(Mode::Lora, 2);
    bad.lora.target_modules = detox_models::TargetModules::List(vec!["nothing".into()]);
    assert!(err(bad, Some(Resume::Dir(scratch("none")))).contains("trainer_state.json"));
    let _ = std::fs::remove_dir_all(&out);
}
