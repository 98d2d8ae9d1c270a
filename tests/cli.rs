//! The `detox` binary end to end on the fixture models: JSON outputs and error behaviour.

mod common;

use std::process::Command;

use common::{detox, fixtures, ok, Reference};

fn fixture(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

#[test]
fn summarize_json_gives_transformers_greedy_ids() {
    for name in ["t5-tiny", "t5-tiny-bf16", "t5-tiny-relu"] {
        let r = Reference::load(name);
        let prompt = r.meta["cli_prompt"].as_str().unwrap();
        let out = detox(&[
            "summarize",
            "--model",
            &fixture(name),
            "--prompt",
            prompt,
            "--max-new-tokens",
            "20",
            "--json",
        ]);
        let stdout = ok(&out);
        let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
        assert_eq!(v["token_ids"], r.meta["cli_greedy_ids"], "{name}");
        let prompt_ids = r.meta["cli_prompt_ids"].as_array().unwrap().len();
        assert_eq!(v["prompt_tokens"].as_u64().unwrap() as usize, prompt_ids);
        assert!(v["text"].is_string() && v["elapsed_ms"].as_f64().unwrap() >= 0.0);
    }
}

#[test]
fn summarize_sampling_is_reproducible_with_a_seed() {
    let run = |seed: &str| {
        let out = detox(&[
            "summarize",
            "--model",
            &fixture("t5-tiny"),
            "--dialogue",
            "#Person1#: Hi. #Person2#: Hello.",
            "--do-sample",
            "--top-k",
            "0",
            "--top-p",
            "0.9",
            "--temperature",
            "1.5",
            "--seed",
            seed,
            "--json",
        ]);
        let stdout = ok(&out);
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        v["token_ids"].clone()
    };
    assert_eq!(run("3"), run("3"));
}

#[test]
fn score_json_gives_transformers_logits_per_text() {
    let r = Reference::load("roberta-tiny");
    let texts: Vec<String> = serde_json::from_value(r.meta["score_texts"].clone()).unwrap();
    let mut args = vec![
        "score".to_string(),
        "--model".into(),
        fixture("roberta-tiny"),
        "--json".into(),
    ];
    for t in &texts {
        args.push("--text".into());
        args.push(t.clone());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(&args)
        .output()
        .unwrap();
    let stdout = ok(&out);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), texts.len());
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["text"], texts[i].as_str());
        assert_eq!(v["labels"], serde_json::json!(["nothate", "hate"]));
        for key in ["logits", "probs"] {
            let got: Vec<f32> = serde_json::from_value(v[key].clone()).unwrap();
            let want: Vec<f32> =
                serde_json::from_value(r.meta[format!("score_{key}")][i].clone()).unwrap();
            common::assert_slices_close(key, &got, &want, 1e-4);
        }
    }
}

#[test]
fn inspect_reports_architecture_parameters_and_dtype() {
    let out = detox(&["inspect", "--model", &fixture("t5-tiny-bf16"), "--json"]);
    let stdout = ok(&out);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["dtypes"], serde_json::json!(["BF16"]));
    assert_eq!(v["files"].as_array().unwrap().len(), 4);
    // 66 tensors on disk; parameters counted once each.
    assert_eq!(v["tensors"].as_array().unwrap().len(), 66);
    let on_disk: u64 = v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t[2].as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product::<u64>()
        })
        .sum();
    assert_eq!(v["parameters"].as_u64().unwrap(), on_disk);
}

#[test]
fn bad_inputs_exit_nonzero_with_one_clear_error() {
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "summarize".into(),
                "--model".into(),
                fixture("t5-tiny"),
                "--prompt".into(),
                "   ".into(),
            ],
            "empty",
        ),
        (
            vec![
                "summarize".into(),
                "--model".into(),
                "/nonexistent/dir/x".into(),
                "--prompt".into(),
                "hi".into(),
            ],
            "/nonexistent/dir/x",
        ),
        (
            vec![
                "summarize".into(),
                "--model".into(),
                fixture("roberta-tiny"),
                "--prompt".into(),
                "hi".into(),
            ],
            "config.json",
        ),
        (
            vec![
                "score".into(),
                "--model".into(),
                fixture("roberta-tiny"),
                "--text".into(),
                "".into(),
            ],
            "empty",
        ),
        (
            vec![
                "summarize".into(),
                "--model".into(),
                fixture("t5-tiny"),
                "--dialogue-file".into(),
                "/nonexistent.txt".into(),
            ],
            "/nonexistent.txt",
        ),
    ];
    for (args, needle) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_detox"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn evaluate_writes_side_by_side_csv_and_json_with_rouge() {
    let dir = std::env::temp_dir().join(format!("detox-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("rows.jsonl");
    std::fs::write(
        &data,
        "{\"id\":\"a\",\"dialogue\":\"#Person1#: Hi, how are you? #Person2#: Fine.\",\"summary\":\"They greet.\",\"topic\":\"t\"}\n\
         {\"id\":\"b\",\"dialogue\":\"#Person1#: Lunch? #Person2#: Sure.\",\"summary\":\"They go to lunch.\",\"topic\":\"t\"}\n",
    )
    .unwrap();
    let out_dir = dir.join("out");
    let model = fixture("t5-tiny");
    let lora = format!("{}+{}", model, fixture("lora/t5-tiny-lora-qv"));
    let out = detox(&[
        "evaluate",
        "--model",
        &format!("original={model}"),
        "--model",
        &format!("lora={lora}"),
        "--dataset",
        data.to_str().unwrap(),
        "--samples",
        "2",
        "--max-new-tokens",
        "8",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    ok(&out);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("evaluation.json")).unwrap())
            .unwrap();
    assert_eq!(v["samples"], 2);
    assert_eq!(v["models"].as_array().unwrap().len(), 2);
    for m in v["models"].as_array().unwrap() {
        assert_eq!(m["summaries"].as_array().unwrap().len(), 2);
        for k in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
            assert!(m["rouge"][k].is_number(), "{k}");
        }
    }
    let csv = std::fs::read_to_string(out_dir.join("evaluation.csv")).unwrap();
    assert!(csv.starts_with(
        "\"human_baseline_summaries\",\"original_model_summaries\",\"lora_model_summaries\""
    ));
    assert_eq!(csv.lines().count(), 3);
    // A name given twice is refused.
    let out = detox(&[
        "evaluate",
        "--model",
        &format!("a={model}"),
        "--model",
        &format!("a={model}"),
        "--dataset",
        data.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
}

/// `--repetition-penalty` and `--no-repeat-ngram-size` give transformers' greedy ids
/// (`tools/make_generate_fixtures.py`), on cases where they change the result.
#[test]
fn repetition_controls_give_transformers_greedy_ids() {
    let path = fixtures().join("generate/generations.json");
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    let changed = cases
        .iter()
        .filter(|c| c["differs_from_greedy"].as_bool().unwrap())
        .count();
    assert!(
        changed >= 4,
        "only {changed} cases change the greedy result"
    );
    for c in cases {
        let penalty = c["repetition_penalty"].as_f64().unwrap().to_string();
        let ngram = c["no_repeat_ngram_size"].as_u64().unwrap().to_string();
        let out = detox(&[
            "summarize",
            "--model",
            &fixture(c["model"].as_str().unwrap()),
            "--prompt",
            c["prompt"].as_str().unwrap(),
            "--max-new-tokens",
            "20",
            "--repetition-penalty",
            &penalty,
            "--no-repeat-ngram-size",
            &ngram,
            "--json",
        ]);
        let stdout = ok(&out);
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["token_ids"], c["token_ids"], "{c}");
    }
    let out = detox(&[
        "summarize",
        "--model",
        &fixture("t5-tiny"),
        "--prompt",
        "x",
        "--repetition-penalty",
        "0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("repetition_penalty must be > 0"),
        "{err}"
    );
}
