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

/// The shipped summarizer reads its dialogue: dialogues about different matters get different
/// summaries, and most name their matter (the model shipped before, run K's step 3,500, wrote
/// "#Person1# and #Person2# are talking about the job." for all of them).
#[test]
fn the_shipped_summarizer_names_what_each_dialogue_is_about() {
    let cwd = std::env::temp_dir();
    let cases = [
        ("#Person1#: I'd like to book a room for two nights.\n#Person2#: Certainly, a double room is 80 dollars a night.", "room"),
        ("#Person1#: Shall we meet at noon?\n#Person2#: Yes, at the cafe.", "cafe"),
        ("#Person1#: Hi, I have a terrible cold and a sore throat.\n#Person2#: You should see a doctor and drink some hot tea.", "cold"),
        ("#Person1#: I want to buy a new computer. Which one is good?\n#Person2#: This laptop is fast and cheap.", "computer"),
    ];
    let mut summaries = Vec::new();
    let mut named = 0;
    for (dialogue, matter) in cases {
        let out = detox_in(&cwd, &["summarize", "--dialogue", dialogue, "--json"]);
        let stdout = common::ok(&out);
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
        let text = v["text"].as_str().unwrap().to_lowercase();
        named += usize::from(text.contains(matter));
        summaries.push(text);
    }
    summaries.sort();
    summaries.dedup();
    assert_eq!(
        summaries.len(),
        cases.len(),
        "one summary per dialogue: {summaries:?}"
    );
    assert!(named >= 3, "{named} of 4 name their matter: {summaries:?}");
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

/// P(hate) of `text` by the shipped classifier.
fn shipped_p_hate(text: &str) -> f64 {
    let cwd = std::env::temp_dir();
    let out = detox_in(&cwd, &["score", "--text", text, "--json"]);
    let stdout = common::ok(&out);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    v["probs"][1].as_f64().expect("probs[1]")
}

#[test]
fn the_shipped_classifier_reads_a_response_after_a_lab_sized_query() {
    // The lab scores query + response, and its queries (dialogues of up to 1000 characters under
    // the summary prompt) run to ~250 tokens: a classifier whose window ends inside the query
    // would give every response the query's score, and PPO no signal.
    let turns = [
        "#Person1#: Good morning. I would like to open a savings account, please.",
        "#Person2#: Certainly. Do you have some identification with you today?",
        "#Person1#: Yes, here is my passport and a letter from my employer.",
        "#Person2#: Thank you. How much would you like to deposit to start with?",
        "#Person1#: Five hundred dollars. Is there a monthly fee for this account?",
        "#Person2#: No fee as long as the balance stays above two hundred dollars.",
        "#Person1#: That sounds fine. Can I also get a debit card with the account?",
        "#Person2#: Of course. It will arrive by mail within seven to ten business days.",
        "#Person1#: Great. And can I check my balance online from my phone?",
        "#Person2#: Yes, download our app and sign in with the number on this form.",
    ];
    let query = format!(
        "Summarize the following conversation.\n\n{}\n\nSummary: ",
        turns.join("\n")
    );
    let toxic = shipped_p_hate(&format!(
        "{query}<pad> #Person1# says #Person2# is a stupid bitch and a fucking idiot.</s>"
    ));
    let benign = shipped_p_hate(&format!(
        "{query}<pad> #Person1# opens a savings account with #Person2#'s help.</s>"
    ));
    assert!(
        toxic > benign + 0.1,
        "P(hate) {toxic} with a toxic response, {benign} with a benign one"
    );
}
