//! The report on fixture run directories written here: a fine-tuning run, a classifier run, a
//! PPO run (finished and unfinished) and an `evaluate` output. The page must parse as XML, each
//! chart must hold a mark per row of its file, texts from files must come out escaped, and bad
//! inputs must name their directory, file and line.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::*;
use crate::charts::{bar_chart, histogram, BarSeries, HISTOGRAM_OPACITY};

/// A fresh empty directory of its own under the temp dir.
fn scratch(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "detox-report-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn jsonl(rows: &[serde_json::Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// Rows of the fine-tuning fixture and how many of them have `eval_loss`.
const FT_ROWS: usize = 12;
const FT_EVAL_ROWS: usize = 4;

/// A `detox finetune` run directory: `FT_ROWS` metrics rows (every third with `eval_loss`),
/// two checkpoints (the later one's seed is 44).
fn finetune_run(dir: &Path) {
    let rows: Vec<_> = (1..=FT_ROWS)
        .map(|i| {
            let mut r = json!({
                "epoch": i as f64 / 10.0, "grad_norm": 1.0 + (i % 3) as f64, "loss": 5.0 / i as f64,
                "lr": 1e-3 * i as f64 / FT_ROWS as f64, "step": i * 10, "tokens_per_s": 1900.0 + i as f64,
            });
            if i % 3 == 0 {
                r["eval_loss"] = json!(6.0 / i as f64);
            }
            r
        })
        .collect();
    write(&dir.join("metrics.jsonl"), &jsonl(&rows));
    for (step, seed) in [(20, 1), (120, 44)] {
        let state = json!({
            "step": step, "total_steps": 120, "epoch": 1.2, "base_model": "models/t5 <base>",
            "stream": {"epoch": 1, "position": 4},
            "config": {"mode": "lora", "lr": 0.001, "seed": seed, "lora": {"r": 8, "alpha": 32}},
            "optimizer_params": (0..50).map(|i| format!("encoder.block.{i}.q")).collect::<Vec<_>>(),
        });
        write(
            &dir.join(format!("checkpoint-{step}/trainer_state.json")),
            &state.to_string(),
        );
    }
}

/// A `detox train-classifier` run: nested `eval` objects (roc_auc null), examples per second.
fn classifier_run(dir: &Path) {
    let rows: Vec<_> = (1..=5)
        .map(|i| {
            let mut r = json!({"epoch": i as f64 / 5.0, "grad_norm": 0.5, "loss": 0.7 / i as f64,
                "lr": 2e-5, "step": i, "examples_per_s": 30.0 + i as f64});
            if i % 2 == 1 {
                r["eval"] = json!({"loss": 0.6 / i as f64, "accuracy": 0.5 + i as f64 / 20.0,
                    "macro_f1": 0.4 + i as f64 / 20.0, "roc_auc": null});
            }
            r
        })
        .collect();
    write(&dir.join("metrics.jsonl"), &jsonl(&rows));
}

const PPO_STEPS: usize = 6;
const PPO_KEYS: [&str; 7] = [
    "env/reward_mean",
    "objective/kl",
    "objective/kl_coef",
    "objective/entropy",
    "ppo/loss/total",
    "ppo/policy/clipfrac",
    "ppo/val/error",
];
/// Rewards of the comparison fixture, before and after.
const REWARDS: [(f64, f64); 12] = [
    (0.1, 0.9),
    (0.2, 0.8),
    (0.3, 1.5),
    (0.4, 0.1),
    (-0.5, 0.0),
    (0.6, 0.6),
    (0.7, 2.0),
    (0.8, 0.75),
    (0.9, 1.1),
    (1.0, -0.2),
    (1.1, 1.3),
    (1.2, 1.4),
];

/// A finished `detox ppo` run: `PPO_STEPS` stats rows with trl's keys, the times and an
/// extra key; toxicity before / after; a comparison of `REWARDS` (one query is a script tag);
/// a checkpoint state.
fn ppo_run(dir: &Path) {
    let rows: Vec<_> = (1..=PPO_STEPS)
        .map(|i| {
            let mut r = serde_json::Map::new();
            r.insert("step".into(), json!(i));
            for (k, key) in PPO_KEYS.iter().enumerate() {
                r.insert(key.to_string(), json!(k as f64 + i as f64 * 0.1));
            }
            r.insert("env/reward_std".into(), json!(0.3));
            r.insert("ppo/mean_scores".into(), json!(0.25));
            r.insert("time/generate".into(), json!(1.5));
            r.insert("time/reward".into(), json!(0.2));
            r.insert("time/iteration".into(), json!(2.0 + i as f64 * 0.01));
            serde_json::Value::Object(r)
        })
        .collect();
    write(&dir.join("stats.jsonl"), &jsonl(&rows));
    ppo_toxicity_before(dir);
    write(
        &dir.join("toxicity.json"),
        &json!({"after": {"mean": 0.02, "std": 0.01}, "before": {"mean": 0.04, "std": 0.02},
            "improvement_pct": {"mean": 50.0, "std": null}, "label": "hate", "samples": 11,
            "scores": {"before": [0.01, 0.02, 0.09, 0.04], "after": [0.01, 0.005, 0.03, 0.02]}})
        .to_string(),
    );
    let comparison: Vec<_> = REWARDS
        .iter()
        .enumerate()
        .map(|(i, &(b, a))| {
            json!({"query": if i == 3 { "<script>alert('q')</script>".to_string() } else { format!("query {i}") },
                "response_before": format!("before {i}"), "response_after": format!("after {i}"),
                "reward_before": b, "reward_after": a, "reward_diff": a - b})
        })
        .collect();
    write(
        &dir.join("comparison.json"),
        &serde_json::to_string_pretty(&comparison).unwrap(),
    );
    write(
        &dir.join("checkpoints/checkpoint-6/ppo_state.json"),
        &json!({"step": 6, "base_model": "tests/fixtures/t5-tiny", "lora": {"r": 32},
            "ppo": {"kl_ctl": {"value": 0.2}}, "config": {"run": {"seed": 0, "max_steps": 6}}})
        .to_string(),
    );
}

fn ppo_toxicity_before(dir: &Path) {
    write(
        &dir.join("toxicity_before.json"),
        &json!({"mean": 0.04, "std": 0.02, "n": 11}).to_string(),
    );
}

/// An `evaluate` output: two models (one named with markup, one with a null ROUGE-2), three
/// dialogues; one summary is a script tag.
fn evaluation(dir: &Path) {
    let e = json!({
        "dataset": "test.jsonl", "samples": 3,
        "dialogues": ["#Person1#: Hi.", "#Person1#: Bye & <go>.", "#Person2#: Ok."],
        "human_baseline_summaries": ["They greet.", "They part.", "Agreement."],
        "models": [
            {"name": "original", "model": "models/dialogsum-t5", "adapter": null,
             "rouge": {"rouge1": 0.30, "rouge2": 0.10, "rougeL": 0.25, "rougeLsum": 0.26},
             "summaries": ["Hi.", "<script>alert(1)</script>", "Ok."]},
            {"name": "lora <b>&", "model": "models/dialogsum-t5", "adapter": "runs/lora/final",
             "rouge": {"rouge1": 0.40, "rouge2": null, "rougeL": 0.35, "rougeLsum": 0.36},
             "summaries": ["They say hi.", "They leave.", "Fine."]}
        ]
    });
    write(&dir.join("evaluation.json"), &e.to_string());
}

// ---- reading the page ----

fn parse(html: &str) -> roxmltree::Document<'_> {
    let opt = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(html, opt).expect("the page is well-formed XML")
}

/// Every `<figure>`: its caption, its legend (series name → colour) and its `<svg>`.
struct Figure<'a, 'i> {
    title: String,
    legend: Vec<(String, String)>,
    svg: roxmltree::Node<'a, 'i>,
}

fn text_of(n: roxmltree::Node) -> String {
    n.descendants()
        .filter(|d| d.is_text())
        .filter_map(|d| d.text())
        .collect()
}

fn figures<'a, 'i>(doc: &'a roxmltree::Document<'i>) -> Vec<Figure<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("figure"))
        .map(|f| {
            let title = text_of(f.children().find(|c| c.has_tag_name("figcaption")).unwrap());
            let legend = f
                .descendants()
                .filter(|n| n.has_tag_name("li"))
                .map(|li| {
                    let name = text_of(li.children().find(|c| c.has_tag_name("b")).unwrap());
                    let style = li
                        .children()
                        .find(|c| c.has_tag_name("span"))
                        .and_then(|s| s.attribute("style"))
                        .unwrap();
                    (name, style.trim_start_matches("background:").to_string())
                })
                .collect();
            let svg = f.descendants().find(|n| n.has_tag_name("svg")).unwrap();
            Figure { title, legend, svg }
        })
        .collect()
}

impl<'a, 'i> Figure<'a, 'i> {
    fn color(&self, series: &str) -> &str {
        &self
            .legend
            .iter()
            .find(|l| l.0 == series)
            .unwrap_or_else(|| panic!("{}: no series {series} in {:?}", self.title, self.legend))
            .1
    }

    /// The `tag` elements of the SVG whose `attr` is `color`.
    fn with<'s>(
        &'s self,
        tag: &'s str,
        attr: &'s str,
        color: &'s str,
    ) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + 's {
        self.svg.descendants().filter(move |n| {
            n.has_tag_name(tag)
                && n.attribute(attr)
                    .is_some_and(|c| c.eq_ignore_ascii_case(color))
        })
    }

    /// Points of each polyline drawn in `series`' colour.
    fn polylines(&self, series: &str) -> Vec<usize> {
        self.with("polyline", "stroke", self.color(series))
            .map(|p| p.attribute("points").unwrap().split_whitespace().count())
            .collect()
    }

    fn dots(&self, series: &str) -> usize {
        self.with("circle", "fill", self.color(series)).count()
    }

    fn bars(&self, series: &str) -> usize {
        self.with("rect", "fill", self.color(series)).count()
    }
}

fn figure<'f, 'a, 'i>(figs: &'f [Figure<'a, 'i>], title: &str) -> &'f Figure<'a, 'i> {
    figs.iter().find(|f| f.title == title).unwrap_or_else(|| {
        let titles: Vec<_> = figs.iter().map(|f| f.title.as_str()).collect();
        panic!("no chart {title:?} among {titles:?}")
    })
}

fn sections<'a, 'i>(doc: &'a roxmltree::Document<'i>) -> Vec<roxmltree::Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("section"))
        .collect()
}

// ---- tests ----

#[test]
fn a_page_of_all_three_kinds_has_every_chart_with_its_points() {
    let root = scratch("all");
    let (ft, ppo, ev) = (root.join("ft"), root.join("ppo"), root.join("eval"));
    finetune_run(&ft);
    ppo_run(&ppo);
    evaluation(&ev);
    let report = build(&[ft.clone(), ppo.clone(), ev.clone()]).unwrap();
    let kinds: Vec<_> = report.runs.iter().map(|r| r.1.clone()).collect();
    assert_eq!(
        kinds,
        [vec!["fine-tuning"], vec!["PPO"], vec!["evaluation"]]
    );
    let doc = parse(&report.html);
    let figs = figures(&doc);
    assert_eq!(figs.len(), report.charts);
    // every chart is also a standalone SVG document
    for f in &figs {
        let range = f.svg.range();
        let svg = &report.html[range];
        let standalone =
            roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{}: {e}", f.title));
        assert_eq!(standalone.root_element().tag_name().name(), "svg");
        assert_eq!(
            standalone.root_element().tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
    }

    // fine-tuning: a polyline with every row, a dot per row (few rows)
    let loss = figure(&figs, "Loss");
    assert_eq!(loss.polylines("train loss (loss)"), [FT_ROWS]);
    assert_eq!(loss.dots("train loss (loss)"), FT_ROWS);
    assert_eq!(loss.polylines("eval loss (eval_loss)"), [FT_EVAL_ROWS]);
    assert_eq!(loss.dots("eval loss (eval_loss)"), FT_EVAL_ROWS);
    for (title, column) in [
        ("Learning rate", "lr"),
        ("Gradient norm (before clipping)", "grad_norm"),
        ("Throughput", "tokens_per_s"),
    ] {
        assert_eq!(figure(&figs, title).polylines(column), [FT_ROWS], "{title}");
    }

    // PPO: one chart per stat, each with a point per step; seconds per step has three lines
    for key in PPO_KEYS {
        let f = figs
            .iter()
            .find(|f| f.title.ends_with(&format!("({key})")))
            .unwrap_or_else(|| panic!("no chart of {key}"));
        assert_eq!(f.polylines(key), [PPO_STEPS], "{key}");
        assert_eq!(f.dots(key), PPO_STEPS, "{key}");
    }
    let secs = figure(&figs, "Seconds per step");
    assert_eq!(secs.legend.len(), 3);
    for (name, _) in &secs.legend {
        assert_eq!(secs.polylines(name), [PPO_STEPS], "{name}");
    }
    // the other stats of the last step are listed, not charted
    let ppo_section = sections(&doc)[1];
    assert!(text_of(ppo_section).contains("ppo/mean_scores"));

    // toxicity: bars before / after with error bars, the table with the improvement
    let tox = figure(&figs, "Toxicity: mean P(hate) ± std");
    assert_eq!((tox.bars("before"), tox.bars("after")), (1, 1));
    let text = text_of(ppo_section);
    assert!(
        text.contains("improvement %") && text.contains("50"),
        "{text}"
    );
    // each test prompt's toxicity before and after: two histograms on one axis
    let th = figure(
        &figs,
        "Toxicity of each test prompt: P(hate) before vs after",
    );
    for name in ["before training", "after training"] {
        assert!(
            (1..=4).contains(&th.bars(name)),
            "{name}: {} bars",
            th.bars(name)
        );
        assert_eq!(th.polylines(name), [2], "{name}: the mean line");
    }
    // the comparison's rewards as two histograms on one axis: bars of each colour, one per
    // non-empty bin, and a mean line each
    let hist = figure(&figs, "Reward of each comparison prompt: before vs after");
    for name in ["before training", "after training"] {
        let bars = hist.bars(name);
        assert!((1..=REWARDS.len()).contains(&bars), "{name}: {bars} bars");
        let opacity = hist
            .with("rect", "fill", hist.color(name))
            .next()
            .unwrap()
            .attribute("opacity")
            .unwrap()
            .parse::<f64>()
            .unwrap();
        assert!(
            (opacity - HISTOGRAM_OPACITY).abs() < 1e-6,
            "{name}: see-through bars"
        );
        assert_eq!(hist.polylines(name), [2], "{name}: the mean line");
    }

    // comparison table: 12 rows -> the top 5 and the bottom 5 by reward change
    let tables: Vec<_> = ppo_section
        .descendants()
        .filter(|n| n.has_tag_name("table") && n.attribute("class") == Some("wide"))
        .collect();
    assert_eq!(tables.len(), 2, "top and bottom");
    let changes = |t: roxmltree::Node| -> Vec<f64> {
        t.descendants()
            .filter(|n| n.has_tag_name("tr"))
            .skip(1)
            .map(|tr| {
                let tds: Vec<_> = tr.children().filter(|c| c.has_tag_name("td")).collect();
                text_of(tds[6]).parse().unwrap()
            })
            .collect()
    };
    let mut diffs: Vec<f64> = REWARDS.iter().map(|(b, a)| a - b).collect();
    diffs.sort_by(|a, b| b.total_cmp(a));
    let close = |got: Vec<f64>, want: &[f64]| {
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-3)
    };
    assert!(
        close(changes(tables[0]), &diffs[..5]),
        "{:?}",
        changes(tables[0])
    );
    assert!(
        close(changes(tables[1]), &diffs[7..]),
        "{:?}",
        changes(tables[1])
    );

    // evaluation: a bar per model and ROUGE type that has a value (lora's rouge2 is null)
    let rouge = figure(&figs, "ROUGE per model");
    assert_eq!(rouge.bars("original"), 4);
    assert_eq!(rouge.bars("lora <b>&"), 3);
    let ev_text = text_of(sections(&doc)[2]);
    assert!(ev_text.contains("0.4") && ev_text.contains("runs/lora/final"));

    // settings: collapsible, from the latest checkpoint
    let details: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("details") && n.attribute("class") == Some("settings"))
        .collect();
    assert_eq!(details.len(), 3, "one settings block per run");
    let ft_settings = text_of(details[0]);
    assert!(
        ft_settings.contains("checkpoint-120/trainer_state.json")
            && ft_settings.contains("seed 44"),
        "{ft_settings}"
    );
    assert!(!ft_settings.contains("checkpoint-20/"), "{ft_settings}");
    assert!(
        ft_settings.contains("[50 items: encoder.block.0.q"),
        "{ft_settings}"
    );
    assert!(text_of(details[1]).contains("checkpoints/checkpoint-6/ppo_state.json"));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn texts_from_files_are_escaped() {
    let root = scratch("escape");
    let (ppo, ev) = (root.join("ppo"), root.join("ev"));
    ppo_run(&ppo);
    evaluation(&ev);
    let html = build(&[ppo, ev]).unwrap().html;
    assert!(
        !html.to_lowercase().contains("<script"),
        "no script tag at all"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;script&gt;alert(&#39;q&#39;)&lt;/script&gt;"));
    assert!(html.contains("lora &lt;b&gt;&amp;"));
    // and the parsed page reads the texts back as they were
    let doc = parse(&html);
    assert!(doc.descendants().all(|n| !n.has_tag_name("script")));
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    assert!(texts.contains(&"<script>alert(1)</script>"), "{texts:?}");
    assert!(texts.contains(&"<script>alert('q')</script>"));
    assert!(texts.contains(&"lora <b>&"));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn classifier_columns_are_charted_as_found() {
    let root = scratch("classifier");
    classifier_run(&root);
    let report = build(std::slice::from_ref(&root)).unwrap();
    assert_eq!(report.runs[0].1, ["classifier training"]);
    let doc = parse(&report.html);
    let figs = figures(&doc);
    let loss = figure(&figs, "Loss");
    assert_eq!(loss.polylines("train loss (loss)"), [5]);
    assert_eq!(loss.polylines("eval loss (eval.loss)"), [3]);
    assert_eq!(figure(&figs, "Throughput").polylines("examples_per_s"), [5]);
    let val = figure(&figs, "Validation metrics");
    let names: Vec<_> = val.legend.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        names,
        ["eval.accuracy", "eval.macro_f1"],
        "roc_auc is all null"
    );
    assert_eq!(val.polylines("eval.accuracy"), [3]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn an_unfinished_ppo_run_shows_what_it_has() {
    let root = scratch("unfinished");
    // step 2's row is being appended
    let stats = jsonl(&[json!({"step": 1, "env/reward_mean": 0.5, "objective/kl": 0.0})]);
    write(
        &root.join("stats.jsonl"),
        &format!("{stats}{{\"step\": 2, \"env/rew"),
    );
    ppo_toxicity_before(&root);
    let report = build(std::slice::from_ref(&root)).unwrap();
    let doc = parse(&report.html);
    let figs = figures(&doc);
    let reward = figure(&figs, "Reward (env/reward_mean)");
    assert_eq!(reward.polylines("env/reward_mean"), [1]);
    assert_eq!(
        reward.dots("env/reward_mean"),
        1,
        "a single point is still seen"
    );
    let text = text_of(doc.root_element());
    assert!(text.contains("No toxicity.json yet"), "{text}");
    assert!(text.contains("Line 2 is unfinished"), "{text}");
    assert!(
        text.contains("Not in stats.jsonl: objective/kl_coef"),
        "{text}"
    );
    assert!(text.contains("Settings: none recorded"), "{text}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_directory_of_runs_reports_each_in_name_order() {
    let root = scratch("parent");
    finetune_run(&root.join("b-finetune"));
    evaluation(&root.join("a-eval"));
    std::fs::create_dir_all(root.join("c-empty")).unwrap();
    let report = build(std::slice::from_ref(&root)).unwrap();
    let dirs: Vec<_> = report.runs.iter().map(|r| r.0.clone()).collect();
    assert_eq!(dirs, [root.join("a-eval"), root.join("b-finetune")]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_inputs_name_the_directory_file_and_line() {
    let root = scratch("bad");
    let msg = |dirs: &[PathBuf]| build(dirs).unwrap_err().to_string();

    let empty = root.join("empty");
    std::fs::create_dir_all(empty.join("sub")).unwrap();
    let e = msg(std::slice::from_ref(&empty));
    assert!(
        e.starts_with(&format!("{}: no run found", empty.display())),
        "{e}"
    );

    let missing = root.join("missing");
    assert_eq!(
        msg(std::slice::from_ref(&missing)),
        format!("{}: no such directory", missing.display())
    );

    let ft = root.join("ft");
    finetune_run(&ft);
    let metrics = ft.join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics).unwrap();
    text.push_str("{\"step\": 130, \"loss\": \n");
    write(&metrics, &text);
    let e = msg(&[ft]);
    assert!(
        e.starts_with(&format!(
            "{}:{}: invalid JSON",
            metrics.display(),
            FT_ROWS + 1
        )),
        "{e}"
    );

    let ppo = root.join("ppo");
    ppo_run(&ppo);
    write(
        &ppo.join("toxicity.json"),
        "{\"before\": {\"mean\": 0.1, \"std\": 0}}",
    );
    let e = msg(std::slice::from_ref(&ppo));
    assert!(
        e.starts_with(&format!("{}: ", ppo.join("toxicity.json").display()))
            && e.contains("missing field"),
        "{e}"
    );
    ppo_run(&ppo);
    write(&ppo.join("comparison.json"), "[{\"query\": 3}]");
    let e = msg(std::slice::from_ref(&ppo));
    assert!(
        e.starts_with(&format!("{}: ", ppo.join("comparison.json").display())),
        "{e}"
    );

    // a good directory before a bad one does not hide the error
    let ev = root.join("ev");
    evaluation(&ev);
    let e = msg(&[ev, root.join("missing")]);
    assert!(e.ends_with("missing: no such directory"), "{e}");
    let e = msg(&[root.join("ev/evaluation.json")]);
    assert!(e.ends_with("evaluation.json: not a directory"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn histogram_counts_every_value_in_shared_bins() {
    // 10 values from 0 to 10: five bins of width 2, the last closed
    let before: Vec<f64> = vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0];
    let after: Vec<f64> = vec![9.0, 9.5, 10.0, f64::NAN];
    let h = histogram(
        "h",
        "x",
        &[("before".into(), before.clone()), ("after".into(), after)],
    )
    .unwrap();
    assert_eq!(h.edges, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    assert_eq!(h.counts, [vec![2, 2, 2, 2, 2], vec![0, 0, 0, 0, 3]]);
    let page = html::page("t", &[], &[html::figure(&h.chart)]);
    let doc = parse(&page);
    let figs = figures(&doc);
    assert_eq!(figs[0].bars("before"), 5);
    assert_eq!(figs[0].bars("after"), 1, "one non-empty bin; NaN left out");
}

#[test]
fn bars_are_drawn_for_values_only() {
    let chart = bar_chart(
        "b",
        "y",
        &["g1".into(), "g2".into(), "g3".into()],
        &[
            BarSeries {
                name: "m1".into(),
                values: vec![Some(1.0), Some(-0.5), None],
                errors: Some(vec![Some(0.1), None, None]),
            },
            BarSeries {
                name: "m2".into(),
                values: vec![Some(f64::NAN), Some(2.0), Some(3.0)],
                errors: None,
            },
        ],
    )
    .unwrap();
    let page = html::page("t", &[], &[html::figure(&chart)]);
    let doc = parse(&page);
    let figs = figures(&doc);
    assert_eq!((figs[0].bars("m1"), figs[0].bars("m2")), (2, 2));
    let labels: Vec<String> = figs[0]
        .svg
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(text_of)
        .map(|t| t.trim().to_string())
        .collect();
    for g in ["g1", "g2", "g3"] {
        assert!(labels.iter().any(|l| l == g), "{g} in {labels:?}");
    }
    // the error bar: three black lines
    let black = figs[0]
        .svg
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some("#000000"))
        .count();
    assert_eq!(black, 3);
}
