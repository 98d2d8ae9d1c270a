//! `detox annotate` as a user runs it: the real binary serving an `evaluate` output on
//! 127.0.0.1, killed with SIGKILL and restarted (nothing acknowledged is lost, an open page
//! comes back), one server per database, then `annotations export` and `annotations stats`.

mod common;

use std::path::Path;

use common::{arg, detox, ok, scratch_dir, serve_annotate as serve};

fn write_evaluation(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("evaluation.json");
    let e = serde_json::json!({
        "dataset": "d.jsonl", "samples": 3,
        "dialogues": ["#Person1#: a\n#Person2#: b", "#Person1#: c", "#Person1#: <script>x</script>"],
        "human_baseline_summaries": ["h0", "h1", "h2"],
        "models": [
            {"name": "original", "model": "m", "adapter": null, "rouge": {}, "summaries": ["o0", "o1", "o2"]},
            {"name": "peft", "model": "m", "adapter": "a", "rouge": {}, "summaries": ["p0", "p1", "p2"]}
        ]
    });
    std::fs::write(&p, e.to_string()).unwrap();
    p
}

fn page(url: &str, who: &str) -> String {
    ureq::get(&format!("{url}/rate/{who}"))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
}

fn token(html: &str) -> String {
    let at = html.find("name=\"page\" value=\"").unwrap() + 19;
    html[at..at + 32].to_string()
}

fn rate(url: &str, who: &str, preferred: &str) {
    let t = token(&page(url, who));
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let r = agent.post(&format!("{url}/rate/{who}")).send_form(&[
        ("page", &t),
        ("preferred", preferred),
        ("confidence", "3"),
        ("left_readability", "5"),
        ("left_coherence", "4"),
        ("right_readability", "2"),
        ("right_coherence", "3"),
    ]);
    assert_eq!(r.unwrap().status(), 303);
}

#[test]
fn a_killed_server_loses_nothing_and_exports_and_stats_follow() {
    let dir = scratch_dir("detox-cli-annotate", "kill");
    let items = write_evaluation(&dir);
    let db = dir.join("ratings.sqlite");
    let (mut child, url) = serve(&items, &db);
    rate(&url, "ann", "left");
    rate(&url, "ann", "tie");
    rate(&url, "bob", "right");
    let open = token(&page(&url, "ann")); // shown, not submitted
                                          // a second server on the same database is refused
    let second = detox(&[
        "annotate",
        "--items",
        &arg(&items),
        "--db",
        &arg(&db),
        "--bind",
        "127.0.0.1:0",
    ]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another `detox annotate`"));
    child.kill().unwrap(); // SIGKILL: no chance to flush anything
    child.wait().unwrap();

    let (mut child, url) = serve(&items, &db);
    let html = page(&url, "ann");
    assert_eq!(
        token(&html),
        open,
        "the open page comes back after the restart"
    );
    assert!(html.contains(">2 / 3<"), "ann's two judgments survived");
    child.kill().unwrap();
    child.wait().unwrap();

    let out = dir.join("ratings.jsonl");
    ok(&detox(&[
        "annotations",
        "export",
        "--db",
        &arg(&db),
        "--out",
        &arg(&out),
    ]));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["models"], serde_json::json!(["original", "peft"]));
    assert_eq!(lines[1]["preferred"], "tie");

    let stats: serde_json::Value = serde_json::from_str(&ok(&detox(&[
        "annotations",
        "stats",
        "--ratings",
        &arg(&out),
        "--json",
    ])))
    .unwrap();
    assert_eq!(stats["judgments"], 3);
    assert_eq!(stats["annotators"], 2);
    assert_eq!(stats["items"], 2);
    let wins: u64 = ["original", "peft"]
        .iter()
        .map(|m| stats["win_rate"][m]["wins"].as_u64().unwrap())
        .sum();
    assert_eq!(wins, 2, "two judgments preferred a model, one was a tie");
    let text = ok(&detox(&["annotations", "stats", "--ratings", &arg(&out)]));
    assert!(
        text.contains("3 judgments of 2 items by 2 annotators"),
        "{text}"
    );
}

#[test]
fn bad_items_and_databases_get_one_clear_error() {
    let dir = scratch_dir("detox-cli-annotate", "bad");
    let items = dir.join("evaluation.json");
    std::fs::write(&items, "{\"dialogues\": 3}").unwrap();
    let out = detox(&[
        "annotate",
        "--items",
        &arg(&items),
        "--db",
        &arg(&dir.join("r.sqlite")),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("evaluation.json") && err.contains("not a `detox evaluate`"),
        "{err}"
    );
    let out = detox(&[
        "annotations",
        "export",
        "--db",
        &arg(&dir.join("none.sqlite")),
        "--out",
        &arg(&dir.join("o.jsonl")),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such database"));
    assert!(!dir.join("o.jsonl").exists());
}
