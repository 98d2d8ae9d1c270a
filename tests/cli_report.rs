//! `detox report` end to end: real runs of `detox finetune`, `detox ppo` and `detox evaluate`
//! on the tiny fixture models and synthetic dialogues (no ../shared needed), reported into one
//! page that must parse as XML, hold a chart point per row of each run's log, and name what it
//! read; a directory without a run and a damaged log are one error line each.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{arg, detox, fixtures, ok, synthetic_data};

fn scratch(tag: &str) -> PathBuf {
    common::scratch_dir("detox-cli-report", tag)
}

/// The stderr of a run that must fail with one `error:` line and no panic.
fn one_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// The runs: a 3-step LoRA fine-tuning with eval loss, a 2-step PPO run, an evaluation.
fn make_runs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let data = synthetic_data(dir, 12);
    let t5 = arg(&fixtures().join("t5-tiny"));
    let (ft, ppo, ev) = (dir.join("ft"), dir.join("ppo"), dir.join("eval"));
    let data_s = arg(&data);
    ok(&detox(&[
        "finetune",
        "--model",
        &t5,
        "--mode",
        "lora",
        "--lora-r",
        "4",
        "--train",
        &data_s,
        "--eval",
        &data_s,
        "--eval-every",
        "2",
        "--out",
        &arg(&ft),
        "--batch-size",
        "2",
        "--max-source-len",
        "64",
        "--max-target-len",
        "16",
        "--log-every",
        "1",
        "--max-steps",
        "3",
    ]));
    ok(&detox(&[
        "ppo",
        "--model",
        &t5,
        "--reward-model",
        &arg(&fixtures().join("roberta-tiny")),
        "--dataset",
        &data_s,
        "--out",
        &arg(&ppo),
        "--batch-size",
        "4",
        "--mini-batch-size",
        "2",
        "--response-length",
        "4..8",
        "--toxicity-samples",
        "1",
        "--compare-samples",
        "3",
        "--max-steps",
        "2",
    ]));
    ok(&detox(&[
        "evaluate",
        "--model",
        &format!("tiny={t5}"),
        "--model",
        &format!("tiny-lora={t5}+{}", arg(&ft.join("final"))),
        "--dataset",
        &data_s,
        "--samples",
        "2",
        "--max-new-tokens",
        "8",
        "--out",
        &arg(&ev),
    ]));
    (ft, ppo, ev)
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// `(figure caption, svg node)` of every chart.
fn charts<'a, 'i>(doc: &'a roxmltree::Document<'i>) -> Vec<(String, roxmltree::Node<'a, 'i>)> {
    let text = |n: roxmltree::Node| {
        n.descendants()
            .filter(|d| d.is_text())
            .filter_map(|d| d.text())
            .collect::<String>()
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("figure"))
        .map(|f| {
            let caption = f.children().find(|c| c.has_tag_name("figcaption")).unwrap();
            (
                text(caption),
                f.descendants().find(|n| n.has_tag_name("svg")).unwrap(),
            )
        })
        .collect()
}

/// Point counts of the chart's data lines (polylines in a legend colour).
fn line_points(doc: &roxmltree::Document, title: &str) -> Vec<usize> {
    let figure = doc
        .descendants()
        .find(|n| {
            n.has_tag_name("figure")
                && n.children()
                    .any(|c| c.has_tag_name("figcaption") && c.text() == Some(title))
        })
        .unwrap_or_else(|| panic!("no chart {title}"));
    let colours: Vec<String> = figure
        .descendants()
        .filter_map(|n| {
            n.attribute("style")?
                .strip_prefix("background:")
                .map(str::to_string)
        })
        .collect();
    figure
        .descendants()
        .filter(|n| {
            n.has_tag_name("polyline")
                && n.attribute("stroke")
                    .is_some_and(|s| colours.iter().any(|c| c.eq_ignore_ascii_case(s)))
        })
        .map(|n| n.attribute("points").unwrap().split_whitespace().count())
        .collect()
}

#[test]
fn report_of_real_finetune_ppo_and_evaluate_runs() {
    let dir = scratch("runs");
    let (ft, ppo, ev) = make_runs(&dir);
    let out = dir.join("report.html");
    let res = detox(&[
        "report",
        &arg(&ft),
        &arg(&ppo),
        &arg(&ev),
        "--out",
        &arg(&out),
    ]);
    ok(&res);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains(&format!("wrote {}: 3 run(s)", out.display())),
        "{stderr}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let html = std::fs::read_to_string(&out).unwrap();
    let opt = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&html, opt).expect("well-formed");
    assert!(doc.descendants().all(|n| !n.has_tag_name("script")));
    // nothing is loaded from elsewhere: no src, and links only to the page's own sections
    for n in doc.descendants().filter(|n| n.is_element()) {
        assert!(n.attribute("src").is_none(), "{n:?}");
        assert!(
            n.attribute("href").is_none_or(|h| h.starts_with('#')),
            "{n:?}"
        );
        assert!(!n.has_tag_name("link") && !n.has_tag_name("img"), "{n:?}");
    }
    let all = charts(&doc);
    for (title, svg) in &all {
        let one = roxmltree::Document::parse(&html[svg.range()]);
        assert!(one.is_ok(), "{title}: {one:?}");
    }

    // fine-tuning: one point per metrics row; eval loss on the evaluated rows only
    let metrics = ft.join("metrics.jsonl");
    let rows = lines(&metrics);
    let evals = common::jsonl_column::<Option<f64>>(&metrics, "eval_loss")
        .into_iter()
        .flatten()
        .count();
    assert!(
        rows >= 3 && evals >= 1,
        "{rows} rows, {evals} with eval_loss"
    );
    assert_eq!(line_points(&doc, "Loss"), [rows, evals]);
    for title in [
        "Learning rate",
        "Gradient norm (before clipping)",
        "Throughput",
    ] {
        assert_eq!(line_points(&doc, title), [rows], "{title}");
    }
    // PPO: one point per step in each of the lab's stats and the times
    let steps = lines(&ppo.join("stats.jsonl"));
    for key in [
        "env/reward_mean",
        "objective/kl",
        "objective/kl_coef",
        "objective/entropy",
        "ppo/loss/total",
        "ppo/policy/clipfrac",
        "ppo/val/error",
    ] {
        let (title, _) = all
            .iter()
            .find(|(t, _)| t.ends_with(&format!("({key})")))
            .unwrap_or_else(|| panic!("no chart of {key}"));
        assert_eq!(line_points(&doc, title), [steps], "{key}");
    }
    assert_eq!(line_points(&doc, "Seconds per step"), [steps; 3]);
    let titles: Vec<&str> = all.iter().map(|(t, _)| t.as_str()).collect();
    for t in [
        "Toxicity: mean P(hate) ± std",
        "Toxicity of each test prompt: P(hate) before vs after",
        "Reward of each comparison prompt: before vs after",
        "ROUGE per model",
    ] {
        assert!(titles.contains(&t), "{t} in {titles:?}");
    }
    // what the files say is in the page: the toxicity label and samples, each model's name,
    // the comparison's queries, the settings of the checkpoints
    let text: String = doc
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    let tox: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ppo.join("toxicity.json")).unwrap()).unwrap();
    assert!(
        text.contains(&format!("to {} test prompts", tox["samples"])),
        "samples"
    );
    for name in ["tiny", "tiny-lora"] {
        assert!(text.contains(name));
    }
    let comparison: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(ppo.join("comparison.json")).unwrap())
            .unwrap();
    for row in &comparison {
        assert!(
            text.contains(row["query"].as_str().unwrap()),
            "every query (3 rows: all shown)"
        );
    }
    assert!(
        text.contains("checkpoint-3/trainer_state.json"),
        "finetune settings"
    );
    assert!(
        text.contains("checkpoints/checkpoint-2/ppo_state.json"),
        "ppo settings"
    );
    assert!(
        text.contains("run_info.json") && text.contains("detox_version"),
        "what ran each run: version, command line, device"
    );

    // the parent directory reports the same three runs (its subdirectories, sorted)
    let again = dir.join("again.html");
    let res = detox(&["report", &arg(&dir), "--out", &arg(&again)]);
    ok(&res);
    assert!(String::from_utf8_lossy(&res.stderr).contains("3 run(s)"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_errors_name_the_directory_and_the_line() {
    let dir = scratch("errors");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.join("r.html");
    let err = one_error(&detox(&["report", &arg(&empty), "--out", &arg(&out)]));
    assert!(
        err.contains(&format!("{}: no run found", empty.display())),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");

    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("metrics.jsonl"),
        "{\"step\": 1, \"loss\": 2.0}\n{\"step\": 2, \"loss\"\n",
    )
    .unwrap();
    let err = one_error(&detox(&["report", &arg(&run), "--out", &arg(&out)]));
    assert!(
        err.contains(&format!(
            "{}:2: invalid JSON",
            run.join("metrics.jsonl").display()
        )),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
    let _ = std::fs::remove_dir_all(&dir);
}
