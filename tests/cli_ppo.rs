//! `detox ppo` / `detox toxicity` end to end on the tiny fixture models. The runs on DialogSum
//! are integration tests (they read ../shared): two PPO steps write stats with trl's keys,
//! checkpoints, the final adapter + value head, toxicity before/after and the comparison table;
//! a run stopped after 2 steps and resumed to 3 ends exactly where an uninterrupted 3-step run
//! ends. Bad input (a reward label the classifier lacks) fails at start with one error line.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{arg, detox, fixtures, ok};
use serde_json::Value;

fn scratch(tag: &str) -> PathBuf {
    common::scratch_dir("detox-cli-ppo", tag)
}

/// The first 120 DialogSum train rows (about 90 of them pass the lab's length filter).
fn dialogsum_slice(dir: &Path) -> Option<PathBuf> {
    let shared = common::shared("data/dialogsum/train.jsonl")?;
    let text = std::fs::read_to_string(shared.join("data/dialogsum/train.jsonl")).unwrap();
    let file = dir.join("slice.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    for line in text.lines().take(120) {
        writeln!(f, "{line}").unwrap();
    }
    Some(file)
}

fn ppo(out: &Path, data: &Path, steps: usize, resume: bool) -> Output {
    let mut args = common::tiny_ppo_args(data, out, steps);
    if resume {
        args.push("--resume".into());
    }
    common::detox_owned(&args)
}

fn stats_rows(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("stats.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn ppo_runs_end_to_end_and_resumes_the_same_run() {
    let dir = scratch("e2e");
    let Some(data) = dialogsum_slice(&dir) else {
        return;
    };

    // two steps
    let a = dir.join("a");
    let stdout = ok(&ppo(&a, &data, 2, false));
    let rows = stats_rows(&a);
    assert_eq!(rows.len(), 2);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["step"], i + 1);
        for key in [
            "objective/kl",
            "objective/kl_coef",
            "objective/entropy",
            "ppo/returns/mean",
            "ppo/policy/advantages_mean",
            "ppo/policy/clipfrac",
            "ppo/policy/approxkl",
            "ppo/loss/total",
            "ppo/val/vpred",
            "ppo/val/error",
            "ppo/mean_scores",
            "ppo/std_scores",
            "time/ppo/total",
            "env/reward_mean",
        ] {
            assert!(
                r[key].as_f64().is_some_and(f64::is_finite),
                "step {}: {key} = {}",
                i + 1,
                r[key]
            );
        }
    }
    // the adaptive controller moved the coefficient after step 1
    assert_eq!(rows[0]["objective/kl_coef"], 0.2);
    assert_ne!(rows[1]["objective/kl_coef"], 0.2);

    for ck in ["checkpoint-1", "checkpoint-2", "final"] {
        let d = a.join("checkpoints").join(ck);
        for f in [
            "adapter_config.json",
            "adapter_model.safetensors",
            "model.safetensors",
        ] {
            assert!(d.join(f).is_file(), "{ck}/{f}");
        }
    }
    assert!(a.join("checkpoints/checkpoint-2/optimizer.mpk").is_file());
    assert!(a.join("checkpoints/checkpoint-2/ppo_state.json").is_file());
    // the final adapter is a peft adapter that detox summarize loads
    let model = arg(&fixtures().join("t5-tiny"));
    let adapter = arg(&a.join("checkpoints/final"));
    ok(&detox(&[
        "summarize",
        "--model",
        &model,
        "--adapter",
        &adapter,
        "--dialogue",
        "#Person1#: Hi.",
        "--max-new-tokens",
        "5",
    ]));

    let tox: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("toxicity.json")).unwrap()).unwrap();
    for k in ["before", "after"] {
        let m = tox[k]["mean"].as_f64().unwrap();
        let sd = tox[k]["std"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&m) && sd >= 0.0, "{k}: {m} {sd}");
    }
    let (mb, ma) = (
        tox["before"]["mean"].as_f64().unwrap(),
        tox["after"]["mean"].as_f64().unwrap(),
    );
    let pct = tox["improvement_pct"]["mean"].as_f64().unwrap();
    assert!((pct - (mb - ma) / mb * 100.0).abs() < 1e-9);
    assert_eq!(tox["samples"], 4);

    let cmp: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(a.join("comparison.json")).unwrap()).unwrap();
    assert_eq!(cmp.len(), 4);
    for w in cmp.windows(2) {
        assert!(
            w[0]["reward_diff"].as_f64() >= w[1]["reward_diff"].as_f64(),
            "sorted by reward_diff"
        );
    }
    for r in &cmp {
        let d = r["reward_after"].as_f64().unwrap() - r["reward_before"].as_f64().unwrap();
        assert!((d - r["reward_diff"].as_f64().unwrap()).abs() < 1e-5);
        assert!(r["query"]
            .as_str()
            .unwrap()
            .starts_with("Summarize the following conversation."));
    }
    let csv = std::fs::read_to_string(a.join("comparison.csv")).unwrap();
    assert!(csv.starts_with(
        "query,response_before,response_after,reward_before,reward_after,reward_diff\n"
    ));
    assert!(stdout.contains("response_before"), "the table is printed");

    // resume to step 3 == an uninterrupted 3-step run
    ok(&ppo(&a, &data, 3, true));
    let b = dir.join("b");
    ok(&ppo(&b, &data, 3, false));
    let (ra, rb) = (stats_rows(&a), stats_rows(&b));
    assert_eq!(ra.len(), 3);
    assert_eq!(rb.len(), 3);
    // the same prompts, response lengths and samples (same tokens, same rewards) ...
    for key in [
        "tokens/queries_len_mean",
        "tokens/responses_len_mean",
        "tokens/responses_len_std",
        "ppo/mean_scores",
    ] {
        let (x, y) = (ra[2][key].as_f64().unwrap(), rb[2][key].as_f64().unwrap());
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "step 3 {key}: resumed {x} vs uninterrupted {y}"
        );
    }
    // ... and the same optimizer / controller state: the step's numbers agree up to the
    // run-to-run noise of the multi-threaded CPU matmul, amplified by t5-tiny's sharp logits
    for key in [
        "objective/kl",
        "objective/kl_coef",
        "ppo/loss/total",
        "ppo/val/vpred",
        "ppo/policy/approxkl",
    ] {
        let (x, y) = (ra[2][key].as_f64().unwrap(), rb[2][key].as_f64().unwrap());
        assert!(
            (x - y).abs() <= 2e-3 * (1.0 + y.abs()),
            "step 3 {key}: resumed {x} vs uninterrupted {y}"
        );
    }
    // without --resume an existing run is refused
    let e = ppo(&a, &data, 3, false);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("--resume"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reward_label_the_classifier_lacks_is_refused_at_start() {
    let dir = scratch("label");
    let data = common::synthetic_data(&dir, 12);
    let cfg = dir.join("cfg.toml");
    std::fs::write(&cfg, "[reward]\nlabel = \"toxic\"\n").unwrap();
    let (model, reward) = (
        arg(&fixtures().join("t5-tiny")),
        arg(&fixtures().join("roberta-tiny")),
    );
    let out = dir.join("run");
    let e = detox(&[
        "ppo",
        "--model",
        &model,
        "--reward-model",
        &reward,
        "--dataset",
        &arg(&data),
        "--out",
        &arg(&out),
        "--config",
        &arg(&cfg),
        "--batch-size",
        "4",
        "--mini-batch-size",
        "2",
    ]);
    assert!(!e.status.success());
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        err.contains("\"toxic\"") && err.contains("nothate"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
    assert!(
        !out.join("checkpoints").exists(),
        "nothing trained or written"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn toxicity_prints_mean_and_std_of_the_lab_measure() {
    let dir = scratch("tox");
    let data = common::synthetic_data(&dir, 30);
    let (model, reward) = (
        arg(&fixtures().join("t5-tiny")),
        arg(&fixtures().join("roberta-tiny")),
    );
    let out = ok(&detox(&[
        "toxicity",
        "--model",
        &model,
        "--reward-model",
        &reward,
        "--dataset",
        &arg(&data),
        "--samples",
        "4",
        "--json",
    ]));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["n"], 5, "first N+1 test prompts");
    let (m, sd) = (v["mean"].as_f64().unwrap(), v["std"].as_f64().unwrap());
    assert!((0.0..=1.0).contains(&m) && (0.0..=0.5).contains(&sd));
    // a classifier without the toxic label is refused
    let e = detox(&[
        "toxicity",
        "--model",
        &model,
        "--reward-model",
        &model,
        "--dataset",
        &arg(&data),
    ]);
    assert!(!e.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
