//! `detox init` (a random-init model directory that loads and runs) and `detox train-classifier`
//! (loss goes down, best/final/checkpoints, test report beside Naive Bayes, resume), through
//! the binary.

mod common;

use common::{arg, detox, fixtures, ok, scratch_dir, shared};
use std::path::Path;

fn run_ok(args: &[&str]) -> String {
    ok(&detox(args))
}

fn stderr_of(args: &[&str]) -> String {
    let out = detox(args);
    assert!(!out.status.success(), "expected a failure: {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn init_writes_models_that_load_and_run() {
    let dir = scratch_dir("detox-init", "models");
    let t5 = dir.join("t5");
    let cfg = fixtures().join("t5-tiny/config.json");
    let tok = fixtures().join("t5-tiny");
    let out = run_ok(&[
        "init",
        "--config",
        &arg(&cfg),
        "--tokenizer",
        &arg(&tok),
        "--out",
        &arg(&t5),
        "--seed",
        "3",
    ]);
    assert!(out.contains("t5"), "{out}");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
    ] {
        assert!(t5.join(f).is_file(), "{f}");
    }
    let s = run_ok(&[
        "summarize",
        "--model",
        &arg(&t5),
        "--dialogue",
        "hi there",
        "--max-new-tokens",
        "4",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(s.lines().last().unwrap()).unwrap();
    assert!(
        v["token_ids"].as_array().is_some_and(|a| !a.is_empty()),
        "{s}"
    );
    // The same seed gives the same file; another seed other weights.
    let again = dir.join("t5-again");
    run_ok(&[
        "init",
        "--config",
        &arg(&cfg),
        "--tokenizer",
        &arg(&tok),
        "--out",
        &arg(&again),
        "--seed",
        "3",
    ]);
    let read = |p: &Path| std::fs::read(p.join("model.safetensors")).unwrap();
    assert_eq!(read(&t5), read(&again));
    let other = dir.join("t5-other");
    run_ok(&[
        "init",
        "--config",
        &arg(&cfg),
        "--tokenizer",
        &arg(&tok),
        "--out",
        &arg(&other),
        "--seed",
        "4",
    ]);
    assert_ne!(read(&t5), read(&other));

    // A training checkpoint converted to bf16 is a model directory: half-size weights that still
    // run, and no optimizer / trainer state of the f32 run beside them.
    std::fs::write(t5.join("optimizer.mpk"), b"moments").unwrap();
    std::fs::write(t5.join("trainer_state.json"), b"{}").unwrap();
    let half = dir.join("t5-bf16");
    let out = run_ok(&[
        "convert",
        "--model",
        &arg(&t5),
        "--out",
        &arg(&half),
        "--dtype",
        "bf16",
    ]);
    assert!(out.contains("bfloat16"), "{out}");
    assert!(!half.join("optimizer.mpk").exists());
    assert!(!half.join("trainer_state.json").exists());
    assert!(half.join("tokenizer.json").is_file());
    let size = |p: &Path| {
        std::fs::metadata(p.join("model.safetensors"))
            .unwrap()
            .len()
    };
    assert!(
        size(&half) * 10 < size(&t5) * 6,
        "{} vs {}",
        size(&half),
        size(&t5)
    );
    let config = std::fs::read_to_string(half.join("config.json")).unwrap();
    assert!(config.contains("\"bfloat16\""), "{config}");
    run_ok(&[
        "summarize",
        "--model",
        &arg(&half),
        "--dialogue",
        "hi there",
        "--max-new-tokens",
        "4",
    ]);

    let rob = dir.join("roberta");
    let rcfg = fixtures().join("roberta-tiny/config.json");
    let rtok = fixtures().join("roberta-tiny");
    run_ok(&[
        "init",
        "--config",
        &arg(&rcfg),
        "--tokenizer",
        &arg(&rtok),
        "--out",
        &arg(&rob),
    ]);
    let s = run_ok(&["score", "--model", &arg(&rob), "--text", "hello", "--json"]);
    assert!(s.contains("nothate") && s.contains("hate"), "{s}");

    // An existing directory is kept unless --overwrite; bad configs are named.
    let e = stderr_of(&[
        "init",
        "--config",
        &arg(&rcfg),
        "--tokenizer",
        &arg(&rtok),
        "--out",
        &arg(&rob),
    ]);
    assert!(e.contains("already exists"), "{e}");
    run_ok(&[
        "init",
        "--config",
        &arg(&rcfg),
        "--tokenizer",
        &arg(&rtok),
        "--out",
        &arg(&rob),
        "--overwrite",
    ]);
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"model_type": "bert", "vocab_size": 10}"#).unwrap();
    let e = stderr_of(&[
        "init",
        "--config",
        &arg(&bad),
        "--tokenizer",
        &arg(&rtok),
        "--out",
        &arg(&dir.join("x")),
    ]);
    assert!(e.contains("bad.json") && e.contains("bert"), "{e}");
    // A vocabulary smaller than the tokenizer's cannot hold its ids.
    let small = dir.join("small.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rcfg).unwrap()).unwrap();
    v["vocab_size"] = 50.into();
    std::fs::write(&small, v.to_string()).unwrap();
    let e = stderr_of(&[
        "init",
        "--config",
        &arg(&small),
        "--tokenizer",
        &arg(&rtok),
        "--out",
        &arg(&dir.join("y")),
    ]);
    assert!(e.contains("small.json") && e.contains("vocab"), "{e}");
    assert!(
        !dir.join("x").exists() && !dir.join("y").exists(),
        "nothing half-written"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `n` synthetic labeled rows: texts with "awful"/"idiot" are hate, the others not.
fn synthetic_csv(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut s = String::from("id,class,tweet\n");
    for i in 0..n {
        let (class, text) = if i % 3 == 0 {
            (2, format!("have a good day friend {i}"))
        } else {
            (i % 2, format!("you awful idiot {i}"))
        };
        s.push_str(&format!("{i},{class},\"{text}\"\n"));
    }
    let p = dir.join("labeled.csv");
    std::fs::write(&p, s).unwrap();
    p
}

fn metrics_losses(out: &Path) -> Vec<f64> {
    common::jsonl_column(&out.join("metrics.jsonl"), "loss")
}

#[test]
fn train_classifier_learns_keeps_the_best_and_reports_test_beside_naive_bayes() {
    let dir = scratch_dir("detox-train-cls", "synthetic");
    let data = synthetic_csv(&dir, 120);
    let out = dir.join("run");
    let model = fixtures().join("roberta-tiny");
    let common_args = [
        "train-classifier",
        "--model",
        &arg(&model),
        "--train",
        &arg(&data),
        "--split-by-position",
        "--text-column",
        "tweet",
        "--label-column",
        "class",
        "--label-map",
        "0=hate,1=hate,2=nothate",
        "--out",
        &arg(&out),
        "--batch-size",
        "8",
        "--lr",
        "2e-3",
        "--log-every",
        "2",
        "--eval-every",
        "4",
        "--save-every",
        "4",
        "--device",
        "ndarray",
    ];
    let mut args: Vec<&str> = common_args.to_vec();
    args.extend(["--max-steps", "8", "--json"]);
    let s = run_ok(&args);
    let report: serde_json::Value = serde_json::from_str(s.lines().last().unwrap()).unwrap();
    assert_eq!(report["steps"], 8);
    assert!(
        report["last_loss"].as_f64().unwrap() < report["first_loss"].as_f64().unwrap(),
        "{report}"
    );
    for d in ["best", "final", "checkpoint-4", "checkpoint-8"] {
        assert!(out.join(d).join("model.safetensors").is_file(), "{d}");
    }
    assert!(out.join("best/eval_metrics.json").is_file());
    let test = &report["test"];
    assert_eq!(test["rows"], 12);
    for k in ["accuracy", "macro_f1", "roc_auc"] {
        assert!(
            test["model"][k].is_number() && test["naive_bayes"][k].is_number(),
            "{test}"
        );
    }
    assert!(out.join("test_metrics.json").is_file());
    // The saved classifier scores through `detox score`.
    let s = run_ok(&[
        "score",
        "--model",
        &arg(&out.join("best")),
        "--text",
        "you awful idiot",
        "--json",
    ]);
    assert!(s.contains("hate"), "{s}");

    // Resume: the run continues from checkpoint-8 to step 12, and metrics read as one run.
    let mut args: Vec<&str> = common_args.to_vec();
    args.extend(["--max-steps", "12", "--resume"]);
    let s = ok(&detox(&args));
    assert!(s.contains("loss"), "{s}");
    let steps: Vec<u64> = common::jsonl_column(&out.join("metrics.jsonl"), "step");
    assert_eq!(steps, vec![2, 4, 6, 8, 10, 12]);
    assert!(out.join("checkpoint-12").is_dir());

    // Without --overwrite or --resume an existing run is refused; a bad label map is named.
    let mut args: Vec<&str> = common_args.to_vec();
    args.extend(["--max-steps", "2"]);
    assert!(stderr_of(&args).contains(&arg(&out)));
    let e = stderr_of(&[
        "train-classifier",
        "--model",
        &arg(&model),
        "--train",
        &arg(&data),
        "--text-column",
        "tweet",
        "--label-column",
        "class",
        "--label-map",
        "0=toxic",
        "--out",
        &arg(&dir.join("r2")),
    ]);
    assert!(e.contains("toxic"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The issue's check on real data: a few steps on 200 of the real tweets lower the loss.
#[test]
fn a_few_steps_on_200_real_tweets_lower_the_loss() {
    let Some(shared) = shared("data/hate-speech-offensive/labeled_data.csv") else {
        return;
    };
    let dir = scratch_dir("detox-train-cls", "tweets");
    let fresh = dir.join("fresh");
    let cfg = fixtures().join("roberta-tiny/config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["vocab_size"] = 50265.into();
    v["max_position_embeddings"] = 130.into();
    let cfg = dir.join("config.json");
    std::fs::write(&cfg, v.to_string()).unwrap();
    let tok = shared.join("tokenizers/roberta");
    run_ok(&[
        "init",
        "--config",
        &arg(&cfg),
        "--tokenizer",
        &arg(&tok),
        "--out",
        &arg(&fresh),
    ]);
    let out = dir.join("run");
    let data = shared.join("data/hate-speech-offensive/labeled_data.csv");
    run_ok(&[
        "train-classifier",
        "--model",
        &arg(&fresh),
        "--train",
        &arg(&data),
        "--split-by-position",
        "--train-limit",
        "200",
        "--text-column",
        "tweet",
        "--label-column",
        "class",
        "--label-map",
        "0=hate,1=hate,2=nothate",
        "--out",
        &arg(&out),
        "--batch-size",
        "20",
        "--epochs",
        "3",
        "--lr",
        "1e-3",
        "--log-every",
        "5",
    ]);
    let losses = metrics_losses(&out);
    assert_eq!(losses.len(), 6, "30 steps logged every 5");
    assert!(losses[5] < losses[0], "{losses:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `finetune --denoise` on a T5 made by `detox init` with the real T5 tokenizer: each training
/// dialogue gets a span-corrupted copy (with `--copy-prefix` also a copy example: three times the
/// examples), and the run trains; a tokenizer without T5's sentinels is refused by name.
#[test]
fn finetune_denoise_adds_a_corrupted_copy_of_each_dialogue() {
    let dir = scratch_dir("detox-denoise", "run");
    let data = common::synthetic_data(&dir, 12);
    // Without sentinel tokens (the tiny fixture's 300-token vocabulary): a clear error.
    let e = stderr_of(&[
        "finetune",
        "--model",
        &arg(&fixtures().join("t5-tiny")),
        "--mode",
        "full",
        "--train",
        &arg(&data),
        "--out",
        &arg(&dir.join("a")),
        "--max-steps",
        "1",
        "--denoise",
    ]);
    assert!(e.contains("<extra_id_0>"), "{e}");
    let Some(shared) = shared("tokenizers/t5/tokenizer.json") else {
        return;
    };
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("t5-tiny/config.json")).unwrap(),
    )
    .unwrap();
    cfg["vocab_size"] = 32128.into();
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let model = dir.join("fresh");
    run_ok(&[
        "init",
        "--config",
        &arg(&cfg_path),
        "--tokenizer",
        &arg(&shared.join("tokenizers/t5")),
        "--out",
        &arg(&model),
    ]);
    three_steps_on(
        &model,
        &data,
        &dir.join("b"),
        &["--denoise", "--copy-prefix", "16", "--group-by-length"],
        36,
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Three full fine-tuning steps of 8 examples with `extra` flags: the run reports `examples`
/// training examples, trains 3 steps and logs each.
fn three_steps_on(model: &Path, data: &Path, out: &Path, extra: &[&str], examples: usize) {
    let (model, data, out_arg) = (arg(model), arg(data), arg(out));
    let mut args = vec![
        "finetune",
        "--model",
        &model,
        "--mode",
        "full",
        "--train",
        &data,
        "--out",
        &out_arg,
        "--max-steps",
        "3",
        "--batch-size",
        "8",
        "--log-every",
        "1",
        "--json",
    ];
    args.extend_from_slice(extra);
    let run = detox(&args);
    let stdout = ok(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!("on {examples} examples")),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["steps"], 3);
    assert_eq!(metrics_losses(out).len(), 3);
}

/// `finetune --copy-prefix N`: each training dialogue also becomes a copy example (twice the
/// examples), and the run trains; the tiny fixture's tokenizer is enough.
#[test]
fn finetune_copy_prefix_adds_a_copy_example_per_dialogue() {
    let dir = scratch_dir("detox-copy-prefix", "run");
    let data = common::synthetic_data(&dir, 12);
    let model = fixtures().join("t5-tiny");
    three_steps_on(&model, &data, &dir.join("a"), &["--copy-prefix", "16"], 24);
    std::fs::remove_dir_all(&dir).ok();
}

/// `finetune --decoder-word-dropout P`: the decoder sees `<unk>` in place of some of its inputs,
/// so the first step's loss changes (the labels and the model do not), and the same seed draws
/// the same tokens again.
#[test]
fn finetune_decoder_word_dropout_changes_the_inputs_reproducibly() {
    let dir = scratch_dir("detox-word-dropout", "run");
    let data = common::synthetic_data(&dir, 12);
    let model = fixtures().join("t5-tiny");
    let off = ["--dropout-rate", "0"];
    three_steps_on(&model, &data, &dir.join("plain"), &off, 12);
    let with = ["--dropout-rate", "0", "--decoder-word-dropout", "0.5"];
    three_steps_on(&model, &data, &dir.join("a"), &with, 12);
    three_steps_on(&model, &data, &dir.join("b"), &with, 12);
    let (plain, a, b) = (
        metrics_losses(&dir.join("plain")),
        metrics_losses(&dir.join("a")),
        metrics_losses(&dir.join("b")),
    );
    assert!((a[0] - plain[0]).abs() > 1e-4, "{a:?} vs {plain:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{a:?} vs {b:?}");
    }
    let err = stderr_of(&[
        "finetune",
        "--model",
        &arg(&model),
        "--mode",
        "full",
        "--train",
        &arg(&data),
        "--out",
        &arg(&dir.join("bad")),
        "--decoder-word-dropout",
        "1.5",
    ]);
    assert!(
        err.contains("--decoder-word-dropout must be in [0, 1)"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `finetune --keywords`: every training example whose summary shares a rare word with its
/// dialogue also becomes a keyword example; here each summary names its row's own fruit (a word in
/// 1 of 40 summaries: rare; "They buy": in all), so the run has twice the examples, and trains.
#[test]
fn finetune_keywords_adds_a_keyword_example_per_summary_with_rare_source_words() {
    use std::io::Write;
    let dir = scratch_dir("detox-keywords", "run");
    let data = dir.join("fruit.jsonl");
    let mut f = std::fs::File::create(&data).unwrap();
    for i in 0..40 {
        let dialogue = format!("#Person1#: Shall we buy fruit{i} today? #Person2#: Yes, fruit{i}.");
        let row =
            serde_json::json!({"dialogue": dialogue, "summary": format!("They buy fruit{i}.")});
        writeln!(f, "{row}").unwrap();
    }
    drop(f);
    let model = fixtures().join("t5-tiny");
    three_steps_on(&model, &data, &dir.join("a"), &["--keywords"], 80);
    std::fs::remove_dir_all(&dir).ok();
}

/// `finetune --pointer-loss W`: the logged loss stays the summaries' NLL (the first step's equals
/// a plain run's: same model, same batch), while the pointer term changes the gradient (the
/// second step's loss differs); a negative weight is refused by name.
#[test]
fn finetune_pointer_loss_trains_the_pointer_and_logs_the_nll() {
    let dir = scratch_dir("detox-pointer", "run");
    let data = common::synthetic_data(&dir, 12);
    let model = fixtures().join("t5-tiny");
    let off = ["--dropout-rate", "0"];
    three_steps_on(&model, &data, &dir.join("plain"), &off, 12);
    let with = [
        "--dropout-rate",
        "0",
        "--pointer-loss",
        "1",
        "--pointer-heads",
        "2",
    ];
    three_steps_on(&model, &data, &dir.join("a"), &with, 12);
    let (plain, a) = (
        metrics_losses(&dir.join("plain")),
        metrics_losses(&dir.join("a")),
    );
    assert!(
        (a[0] - plain[0]).abs() <= 1e-5 * plain[0].abs(),
        "{a:?} vs {plain:?}"
    );
    assert!((a[1] - plain[1]).abs() > 1e-4, "{a:?} vs {plain:?}");
    let err = stderr_of(&[
        "finetune",
        "--model",
        &arg(&model),
        "--mode",
        "full",
        "--train",
        &arg(&data),
        "--out",
        &arg(&dir.join("bad")),
        "--pointer-loss=-1",
    ]);
    assert!(err.contains("--pointer-loss must be >= 0"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
