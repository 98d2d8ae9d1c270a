//! RLHF end to end, through the binary, with simulated annotators: two models' summaries
//! (sampled from the tiny T5) are served by `detox annotate`; two annotators who always prefer
//! the shorter summary judge them over HTTP; `annotations export` writes the judgments;
//! `detox train-reward` learns a reward model from them (held-out pairwise accuracy); and
//! `detox ppo --reward-model OUT --reward-label preferred` moves the policy the way the
//! annotators wanted: higher learned reward, shorter responses.

mod common;

use std::path::{Path, PathBuf};

use common::{arg, detox, fixtures, ok, scratch_dir, serve_annotate as serve};
use serde_json::Value;

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The text of the summary shown on `side` (`left` / `right`).
fn shown(html: &str, side: &str) -> String {
    let start = format!("id=\"summary-{side}\"><h2>");
    let at = html
        .find(&start)
        .unwrap_or_else(|| panic!("no {side} summary"));
    let rest = &html[at..];
    let p = rest.find("<p>").unwrap() + 3;
    let end = rest[p..].find("</p>").unwrap();
    unescape(&rest[p..p + end])
}

/// One simulated annotator: judges every item offered, preferring the shorter summary.
/// Returns how many judgments were made.
fn annotate_all(url: &str, who: &str) -> usize {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let mut n = 0;
    loop {
        let html = agent
            .get(&format!("{url}/rate/{who}"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let Some(at) = html.find("name=\"page\" value=\"") else {
            return n; // nothing left for this annotator
        };
        let token = &html[at + 19..at + 19 + 32];
        let (l, r) = (shown(&html, "left"), shown(&html, "right"));
        let (lc, rc) = (l.chars().count(), r.chars().count());
        let preferred = match lc.cmp(&rc) {
            std::cmp::Ordering::Less => "left",
            std::cmp::Ordering::Greater => "right",
            std::cmp::Ordering::Equal => "tie",
        };
        let r = agent.post(&format!("{url}/rate/{who}")).send_form(&[
            ("page", token),
            ("preferred", preferred),
            ("confidence", "3"),
            ("left_readability", "4"),
            ("left_coherence", "4"),
            ("right_readability", "4"),
            ("right_coherence", "4"),
        ]);
        assert_eq!(r.unwrap().status(), 303);
        n += 1;
        assert!(n < 1000, "the app keeps offering items");
    }
}

/// `detox summarize` sampling exactly `len` new tokens from the tiny T5.
fn sample(dialogue: &str, seed: u64, len: usize) -> String {
    let out = ok(&detox(&[
        "summarize",
        "--model",
        &arg(&fixtures().join("t5-tiny")),
        "--dialogue",
        dialogue,
        "--do-sample",
        "--seed",
        &seed.to_string(),
        "--min-new-tokens",
        &len.to_string(),
        "--max-new-tokens",
        &len.to_string(),
    ]));
    out.trim_end_matches('\n').to_string()
}

/// `evaluation.json` with two models' sampled summaries of the first `n` dialogues of `data`.
fn write_items(dir: &Path, data: &Path, n: usize) -> PathBuf {
    let dialogues: Vec<String> = std::fs::read_to_string(data)
        .unwrap()
        .lines()
        .take(n)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["dialogue"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let summaries = |offset: u64| -> Vec<String> {
        dialogues
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let seed = 1000 * offset + i as u64;
                sample(d, seed, 2 + (seed * 7919 % 13) as usize)
            })
            .collect()
    };
    let e = serde_json::json!({
        "dataset": arg(data), "samples": n,
        "dialogues": dialogues,
        "human_baseline_summaries": vec!["-"; n],
        "models": [
            {"name": "a", "model": "t5-tiny", "adapter": null, "rouge": {}, "summaries": summaries(1)},
            {"name": "b", "model": "t5-tiny", "adapter": null, "rouge": {}, "summaries": summaries(2)}
        ]
    });
    let p = dir.join("evaluation.json");
    std::fs::write(&p, e.to_string()).unwrap();
    p
}

/// A fresh tiny one-label RoBERTa (roberta-tiny's tokenizer, room for the lab's prompts).
fn init_reward_model(dir: &Path) -> PathBuf {
    let cfg = dir.join("rm-config.json");
    let mut c: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("roberta-tiny/config.json")).unwrap(),
    )
    .unwrap();
    c["max_position_embeddings"] = 258.into();
    c["id2label"] = serde_json::json!({"0": "preferred"});
    c["label2id"] = serde_json::json!({"preferred": 0});
    std::fs::write(&cfg, c.to_string()).unwrap();
    let out = dir.join("rm-init");
    ok(&detox(&[
        "init",
        "--config",
        &arg(&cfg),
        "--tokenizer",
        &arg(&fixtures().join("roberta-tiny")),
        "--out",
        &arg(&out),
        "--seed",
        "1",
    ]));
    out
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn simulated_annotators_train_a_reward_model_that_ppo_follows() {
    let dir = scratch_dir("detox-cli-reward", "rlhf");
    let data = common::synthetic_data(&dir, 40);
    let items = write_items(&dir, &data, 30);

    // two annotators judge every item through the web app
    let db = dir.join("ratings.sqlite");
    let (mut server, url) = serve(&items, &db);
    let judged = [annotate_all(&url, "ann"), annotate_all(&url, "bob")];
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(judged, [30, 30]);
    let ratings = dir.join("ratings.jsonl");
    ok(&detox(&[
        "annotations",
        "export",
        "--db",
        &arg(&db),
        "--out",
        &arg(&ratings),
    ]));

    // a reward model from the judgments
    let rm_init = init_reward_model(&dir);
    let rm = dir.join("rm");
    let report: Value = serde_json::from_str(&ok(&detox(&[
        "train-reward",
        "--preferences",
        &arg(&ratings),
        "--items",
        &arg(&items),
        "--model",
        &arg(&rm_init),
        "--out",
        &arg(&rm),
        "--eval-fraction",
        "0.2",
        "--lr",
        "3e-3",
        "--epochs",
        "20",
        "--batch-size",
        "8",
        "--json",
    ])))
    .unwrap();
    let accuracy = report["held_out"]["accuracy"].as_f64().unwrap();
    assert!(
        report["held_out"]["pairs"].as_u64().unwrap() >= 8,
        "{report}"
    );
    assert!(
        accuracy >= 0.75,
        "held-out pairwise accuracy {accuracy}: {report}"
    );
    assert!(
        report["last_loss"].as_f64() < report["first_loss"].as_f64(),
        "{report}"
    );
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "reward_metrics.json",
        "metrics.jsonl",
    ] {
        assert!(rm.join(f).is_file(), "{f}");
    }
    // the directory is a one-label classifier: the shorter of two texts scores higher
    let d = common::synthetic_dialogue(0);
    let prompt = format!("Summarize the following conversation.\n\n{d}\n\nSummary: ");
    let (short, long) = (
        format!("{prompt}They greet."),
        format!("{prompt}They greet and talk and talk about many things at length."),
    );
    let out = ok(&detox(&[
        "score",
        "--model",
        &arg(&rm),
        "--text",
        &short,
        "--text",
        &long,
        "--json",
    ]));
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["labels"], serde_json::json!(["preferred"]));
    let logit = |r: &Value| r["logits"][0].as_f64().unwrap();
    assert!(
        logit(&rows[0]) > logit(&rows[1]),
        "the learned reward prefers the shorter summary: {out}"
    );

    // PPO on that reward
    let run = dir.join("ppo");
    ok(&detox(&[
        "ppo",
        "--model",
        &arg(&fixtures().join("t5-tiny")),
        "--reward-model",
        &arg(&rm),
        "--reward-label",
        "preferred",
        "--toxicity-model",
        &arg(&fixtures().join("roberta-tiny")),
        "--dataset",
        &arg(&data),
        "--out",
        &arg(&run),
        "--config",
        &arg(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/lab.toml")),
        "--max-steps",
        "8",
        "--batch-size",
        "8",
        "--mini-batch-size",
        "4",
        "--learning-rate",
        "1e-3",
        "--response-length",
        "4..16",
        "--toxicity-samples",
        "3",
        "--compare-samples",
        "16",
    ]));
    let rows: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(run.join("comparison.json")).unwrap())
            .unwrap();
    let rows = rows.as_slice();
    let before = mean(rows.iter().map(|r| r["reward_before"].as_f64().unwrap()));
    let after = mean(rows.iter().map(|r| r["reward_after"].as_f64().unwrap()));
    let len = |k: &str| {
        mean(
            rows.iter()
                .map(|r| r[k].as_str().unwrap().chars().count() as f64),
        )
    };
    let (len_before, len_after) = (len("response_before"), len("response_after"));
    eprintln!(
        "reward model: {report}\nPPO: learned reward {before:.4} -> {after:.4}, response \
         characters {len_before:.2} -> {len_after:.2}"
    );
    assert!(
        after > before,
        "learned reward before {before} after {after}"
    );
    assert!(
        len_after < len_before,
        "responses should get shorter: {len_before} -> {len_after} characters"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
