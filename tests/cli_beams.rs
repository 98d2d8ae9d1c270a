//! `detox summarize` / `evaluate` with beam search and the other generation settings: the
//! `--json` sequences against transformers (`tools/make_beam_fixtures.py`), defaults from
//! `generation_config.json`, and one clear error for each invalid combination.

mod common;

use common::{detox, fixtures, ok, scratch_dir};
use serde_json::Value;

fn beams() -> Value {
    let path = fixtures().join("generate/beams.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn early_stopping(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        _ => panic!("{v}"),
    }
}

/// The flags of a fixture case, all sequences returned.
fn case_flags(case: &Value) -> Vec<String> {
    let mut f = vec![
        "--num-beams".to_string(),
        case["num_beams"].to_string(),
        "--num-return-sequences".into(),
        case["num_beams"].to_string(),
        "--length-penalty".into(),
        case["length_penalty"].to_string(),
        "--early-stopping".into(),
        early_stopping(&case["early_stopping"]),
        "--repetition-penalty".into(),
        case["repetition_penalty"].to_string(),
        "--no-repeat-ngram-size".into(),
        case["no_repeat_ngram_size"].to_string(),
        "--min-new-tokens".into(),
        case["min_new_tokens"].to_string(),
    ];
    f.extend(["--max-new-tokens".into(), "20".into(), "--json".into()]);
    f
}

fn summarize(model: &str, prompt: &str, flags: &[String]) -> Value {
    let mut args = vec!["summarize", "--model", model, "--prompt", prompt];
    args.extend(flags.iter().map(String::as_str));
    serde_json::from_str(&ok(&detox(&args))).unwrap()
}

/// `sequences` (token ids, scores) of a JSON output against a fixture case's for one prompt.
fn assert_sequences(got: &Value, want: &Value, what: &str) {
    let got = got["sequences"].as_array().unwrap();
    let want = want.as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{what}");
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g["token_ids"], w["token_ids"], "{what} sequence {j}");
        let len = w["token_ids"].as_array().unwrap().len() as f64;
        let (gs, ws) = (g["score"].as_f64().unwrap(), w["score"].as_f64().unwrap());
        // 1e-4 on the log-prob sum (see tests/parity_beam.rs)
        assert!(
            (gs - ws).abs() < 1e-4 * len.max(1.0),
            "{what} sequence {j}: {gs} vs {ws}"
        );
    }
}

#[test]
fn summarize_json_sequences_match_transformers_beams() {
    let fx = beams();
    let mut checked = 0;
    for case in fx["cases"].as_array().unwrap() {
        if case["near_tie"][0] == true {
            continue;
        }
        let m = &fx["models"][case["model"].as_str().unwrap()];
        let model = fixtures().join(m["dir"].as_str().unwrap());
        let prompt = m["prompts"][0].as_str().unwrap();
        let v = summarize(&model.display().to_string(), prompt, &case_flags(case));
        assert_sequences(&v, &case["sequences"][0], &case.to_string());
        assert_eq!(v["token_ids"], v["sequences"][0]["token_ids"]);
        assert_eq!(v["text"], v["sequences"][0]["text"]);
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} cases");
}

#[test]
fn greedy_and_sampling_sequences_have_no_score() {
    let model = fixtures().join("t5-tiny").display().to_string();
    let v = summarize(&model, "hello", &["--json".into()]);
    let seqs = v["sequences"].as_array().unwrap();
    assert_eq!(seqs.len(), 1);
    assert!(seqs[0]["score"].is_null());
    assert_eq!(seqs[0]["token_ids"], v["token_ids"]);
    let flags: Vec<String> = ["--do-sample", "--num-return-sequences", "3", "--json"]
        .map(String::from)
        .to_vec();
    let v = summarize(&model, "hello", &flags);
    assert_eq!(v["sequences"].as_array().unwrap().len(), 3);
}

/// A model directory whose generation_config.json asks for beams gets them without flags,
/// flags override it, `--verbose` says where each setting came from, and a setting detox does
/// not implement is refused naming the file and field.
#[test]
fn generation_config_json_supplies_defaults_and_flags_override() {
    let fx = beams();
    let case = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["model"] == "t5-tiny"
                && c["num_beams"] == 4
                && c["length_penalty"] == -1.0
                && c["early_stopping"] == false
                && c["repetition_penalty"] == 1.0
                && c["near_tie"][0] == false
        })
        .expect("a clean beam-4 case");
    let dir = scratch_dir("detox-genconfig", "beams");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixtures().join("t5-tiny").join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0, "num_beams": 4,
            "num_return_sequences": 4, "length_penalty": -1.0, "max_length": 21}"#,
    )
    .unwrap();
    let model = dir.display().to_string();
    let prompt = fx["models"]["t5-tiny"]["prompts"][0].as_str().unwrap();
    let args = [
        "summarize",
        "--model",
        &model,
        "--prompt",
        prompt,
        "--json",
        "--verbose",
    ];
    let out = detox(&args);
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_sequences(&v, &case["sequences"][0], "from generation_config.json");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("num_beams = 4 (generation_config.json)"),
        "{err}"
    );
    assert!(
        err.contains("max_new_tokens = 20 (generation_config.json)"),
        "{err}"
    );
    assert!(err.contains("early_stopping = false (default)"), "{err}");

    // flags win: greedy, as plain `generate` gives it
    let greedy = ["--num-beams", "1", "--num-return-sequences", "1", "--json"].map(String::from);
    let v = summarize(&model, prompt, &greedy);
    let plain = summarize(
        &fixtures().join("t5-tiny").display().to_string(),
        prompt,
        &["--max-new-tokens".into(), "20".into(), "--json".into()],
    );
    assert_eq!(v["token_ids"], plain["token_ids"]);
    assert_eq!(v["sequences"].as_array().unwrap().len(), 1);

    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"num_beams": 4, "forced_bos_token_id": 5}"#,
    )
    .unwrap();
    let out = detox(&["summarize", "--model", &model, "--prompt", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("generation_config.json") && err.contains("forced_bos_token_id"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn invalid_generation_combinations_are_one_clear_error() {
    let model = fixtures().join("t5-tiny").display().to_string();
    for (flags, message) in [
        (
            vec!["--num-beams", "2", "--num-return-sequences", "3"],
            "num_return_sequences (3) must be at most num_beams (2)",
        ),
        (vec!["--num-beams", "0"], "num_beams must be at least 1"),
        (vec!["--num-beams", "4", "--do-sample"], "beam sampling"),
        (
            vec!["--num-return-sequences", "2"],
            "greedy decoding returns one sequence",
        ),
        (
            vec!["--repetition-penalty", "-1"],
            "repetition_penalty must be > 0",
        ),
        (
            vec!["--early-stopping", "soon"],
            "early_stopping must be true, false or never",
        ),
    ] {
        let mut args = vec!["summarize", "--model", &model, "--prompt", "x"];
        args.extend(flags.iter().copied());
        let out = detox(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} succeeded");
        assert!(err.contains(message), "{flags:?}: {err}");
        assert!(!err.contains("panicked"), "{flags:?}: {err}");
    }
}

/// `evaluate --num-beams 4` summarizes each dialogue as `summarize --num-beams 4` does.
#[test]
fn evaluate_decodes_with_beams() {
    let dir = scratch_dir("detox-eval-beams", "run");
    let data = dir.join("rows.jsonl");
    let dialogues = [
        "#Person1#: Hi, how are you? #Person2#: Fine.",
        "#Person1#: Lunch? #Person2#: Sure.",
    ];
    let rows: String = dialogues
        .iter()
        .map(|d| {
            format!(
                "{}\n",
                serde_json::json!({"id": "a", "dialogue": d, "summary": "They talk.", "topic": "t"})
            )
        })
        .collect();
    std::fs::write(&data, rows).unwrap();
    let model = fixtures().join("t5-tiny").display().to_string();
    let out_dir = dir.join("out");
    let beam = [
        "--num-beams",
        "4",
        "--length-penalty",
        "-1",
        "--max-new-tokens",
        "12",
    ];
    let mut args = vec![
        "evaluate",
        "--model",
        "m=",
        "--dataset",
        data.to_str().unwrap(),
        "--samples",
        "2",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let spec = format!("m={model}");
    args[2] = &spec;
    args.extend(beam);
    ok(&detox(&args));
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("evaluation.json")).unwrap())
            .unwrap();
    let summaries = v["models"][0]["summaries"].as_array().unwrap();
    for (d, s) in dialogues.iter().zip(summaries) {
        let mut a = vec!["summarize", "--model", &model, "--dialogue", d, "--json"];
        a.extend(beam);
        let one: Value = serde_json::from_str(&ok(&detox(&a))).unwrap();
        assert_eq!(&one["text"], s, "{d}");
    }
    let mut bad = args.clone();
    bad.extend(["--num-return-sequences", "2"]);
    let out = detox(&bad);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--num-return-sequences must be 1"));
}
