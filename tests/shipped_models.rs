//! The models in `models/` are what commands use without `--model` / `--reward-model`, from any
//! working directory, and give non-empty output with default flags.

mod common;

use std::process::Command;

fn detox_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(args)
        .current_dir(dir)
        .env_remove("DETOX_MODELS")
        .output()
        .expect("runs")
}

#[test]
fn summarize_and_score_use_the_shipped_models_from_any_directory() {
    let cwd = common::scratch_dir("detox-shipped", "cwd");
    let out = detox_in(
        &cwd,
        &[
            "summarize",
            "--dialogue",
            "#Person1#: Shall we meet at noon?\n#Person2#: Yes, at the cafe.",
            "--json",
        ],
    );
    let stdout = common::ok(&out);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert!(!v["text"].as_str().unwrap().trim().is_empty(), "{stdout}");

    let out = detox_in(
        &cwd,
        &["score", "--text", "you are a wonderful person", "--json"],
    );
    let stdout = common::ok(&out);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let text = v.to_string();
    assert!(text.contains("nothate") && text.contains("hate"), "{text}");

    // DETOX_MODELS wins; a directory without the model is an error that says where it looked.
    let out = Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(["score", "--text", "hi"])
        .current_dir(&cwd)
        .env("DETOX_MODELS", &cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "falls through to the built-in location"
    );
    std::fs::remove_dir_all(&cwd).ok();
}

#[test]
fn the_shipped_models_are_small_and_carry_their_cards() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut total = 0u64;
    for name in ["dialogsum-t5", "toxicity-roberta"] {
        let dir = root.join(name);
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "README.md",
        ] {
            assert!(dir.join(f).is_file(), "{name}/{f}");
        }
        for e in std::fs::read_dir(&dir).unwrap() {
            total += e.unwrap().metadata().unwrap().len();
        }
        let info = detox_hub::models::inspect(&dir).unwrap();
        assert_eq!(info.dtypes, vec!["BF16".to_string()], "{name} ships bf16");
    }
    assert!(total < 48 << 20, "{total} bytes in models/");
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("toxicity-roberta/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["id2label"]["0"], "nothate");
    assert_eq!(cfg["id2label"]["1"], "hate");
}
