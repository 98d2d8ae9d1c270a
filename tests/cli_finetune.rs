//! `detox finetune` end to end. The LoRA run is an integration test (reads DialogSum from
//! ../shared): a few steps on t5-tiny lower the loss, and the adapter it writes reloads with
//! `detox summarize --adapter` and changes the greedy summary.

mod common;

use std::path::{Path, PathBuf};

use common::{arg, detox, fixtures, ok};

fn shared() -> Option<PathBuf> {
    common::shared("data/dialogsum/train.jsonl")
}

fn scratch(tag: &str) -> PathBuf {
    common::scratch_path("detox-cli-finetune", tag)
}

fn summarize(dialogue: &str, adapter: Option<&Path>) -> serde_json::Value {
    let model = arg(&fixtures().join("t5-tiny"));
    let mut args = vec![
        "summarize",
        "--model",
        &model,
        "--dialogue",
        dialogue,
        "--max-new-tokens",
        "20",
        "--json",
    ];
    let a;
    if let Some(p) = adapter {
        a = arg(p);
        args.extend(["--adapter", &a]);
    }
    serde_json::from_str(&ok(&detox(&args))).unwrap()
}

#[test]
fn lora_finetune_lowers_the_loss_and_its_adapter_changes_summaries() {
    let Some(shared) = shared() else { return };
    let data = shared.join("data/dialogsum");
    let out = scratch("lora");
    let model = arg(&fixtures().join("t5-tiny"));
    let (train, eval, out_s) = (
        arg(&data.join("train.jsonl")),
        arg(&data.join("validation.jsonl")),
        arg(&out),
    );
    let common = [
        "finetune",
        "--model",
        &model,
        "--mode",
        "lora",
        "--lora-r",
        "4",
        "--lora-alpha",
        "8",
        "--train",
        &train,
        "--train-limit",
        "16",
        "--eval",
        &eval,
        "--eval-limit",
        "8",
        "--out",
        &out_s,
        "--lr",
        "1e-2",
        "--batch-size",
        "4",
        "--max-source-len",
        "128",
        "--max-target-len",
        "32",
        "--log-every",
        "1",
        "--seed",
        "1",
    ];
    let start = std::time::Instant::now();
    let mut args = common.to_vec();
    args.extend(["--max-steps", "12", "--json"]);
    let stdout = ok(&detox(&args));
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["steps"], 12);
    let trainable = summary["trainable_params"].as_u64().unwrap();
    // r 4 on q and v: 2 encoder + 3 decoder self-attention, 3 cross-attention layers, 4·(64+64) each.
    assert_eq!(trainable, 16 * 4 * (64 + 64));

    let rows: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 12);
    let (first, last) = (
        rows[0]["loss"].as_f64().unwrap(),
        rows[11]["loss"].as_f64().unwrap(),
    );
    assert!(last < first, "loss did not go down: {first} -> {last}");
    assert!(rows[11]["eval_loss"].is_number());

    // The adapter reloads and changes the greedy output.
    let final_dir = out.join("final");
    assert!(final_dir.join("adapter_config.json").is_file());
    let dialogue = "#Person1#: Hi, Tom. Are you free this evening?\n#Person2#: Yes, why?\n#Person1#: Let's go to the movies together.";
    let base = summarize(dialogue, None);
    let tuned = summarize(dialogue, Some(&final_dir));
    assert_ne!(
        base["token_ids"], tuned["token_ids"],
        "the adapter changed nothing"
    );
    // So does the last checkpoint (same weights as final/).
    let ck = summarize(dialogue, Some(&out.join("checkpoint-12")));
    assert_eq!(ck["token_ids"], tuned["token_ids"]);

    // Without --resume an existing run is not overwritten; with it the run goes on.
    let mut again = common.to_vec();
    again.extend(["--max-steps", "14"]);
    let refused = detox(&again);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));
    again.extend(["--resume", "--json"]);
    let resumed: serde_json::Value = serde_json::from_str(ok(&detox(&again)).trim()).unwrap();
    assert_eq!(resumed["steps"], 14);
    assert_eq!(resumed["checkpoint"], arg(&out.join("checkpoint-14")));
    assert!(start.elapsed().as_secs() < 60, "took {:?}", start.elapsed());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn finetune_reports_bad_data_with_file_and_line() {
    let dir = scratch("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("train.jsonl");
    std::fs::write(
        &file,
        "{\"dialogue\": \"#Person1#: Hi.\", \"summary\": \"Hello.\"}\n{\"dialogue\": \"#Person1#: Bye.\"}\n",
    )
    .unwrap();
    let model = arg(&fixtures().join("t5-tiny"));
    let out = detox(&[
        "finetune",
        "--model",
        &model,
        "--mode",
        "lora",
        "--train",
        &arg(&file),
        "--out",
        &arg(&dir.join("out")),
        "--max-steps",
        "1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2: missing field `summary`", file.display())),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
