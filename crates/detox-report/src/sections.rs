//! What the report shows of each kind of run: which charts, tables and summaries, built from
//! the parsed files of [`crate::runs`] with [`crate::charts`] and [`crate::html`].

use std::fmt::Write as _;

use crate::charts::{bar_chart, histogram, line_chart, BarSeries, Series};
use crate::error::ReportError;
use crate::html::{escape, figure, para, settings_block, table, Cell};
use crate::metrics::MetricsLog;
use crate::num::{fmt_num, fmt_opt};
use crate::runs::{ComparisonRow, Evaluation, PpoRun, Rouge, Run};

/// One run's part of the page.
pub struct Section {
    pub id: String,
    pub heading: String,
    pub html: String,
    pub charts: usize,
}

/// Rows of the comparison table shown from each end (all rows when there are at most twice
/// as many).
pub const COMPARISON_ROWS_EACH_END: usize = 5;
/// Dialogues of an evaluation shown side by side.
pub const EVALUATION_ROWS: usize = 20;

/// A chart of some columns of a log against step: `(title, y axis, [(series name, column)])`.
type Plan<'a> = (String, &'a str, Vec<(String, String)>);

/// HTML of the charts a plan asks for, the columns it used, and the number drawn. A series
/// whose column the log lacks is left out; a chart with no series is not drawn.
fn draw_plans(log: &MetricsLog, plans: &[Plan]) -> Result<(String, usize), ReportError> {
    let mut html = String::new();
    let mut n = 0;
    for (title, y_desc, columns) in plans {
        let series: Vec<Series> = columns
            .iter()
            .filter(|(_, c)| log.has(c))
            .map(|(name, c)| Series {
                name: name.clone(),
                points: log.series(c),
            })
            .collect();
        if series.is_empty() {
            continue;
        }
        html.push_str(&figure(&line_chart(title, "step", y_desc, &series)?));
        n += 1;
    }
    Ok((html, n))
}

/// A note on an unfinished last line of `log`, if it had one.
fn incomplete_note(log: &MetricsLog) -> String {
    match log.incomplete_line {
        Some(line) => para(
            "note",
            &format!(
                "Line {line} is unfinished (being written, or cut short by a kill) and is left out."
            ),
        ),
        None => String::new(),
    }
}

fn charts_div(inner: &str) -> String {
    format!("<div class=\"charts\">{inner}</div>")
}

fn one(title: &str, y: &'static str, column: &str) -> Plan<'static> {
    (
        title.to_string(),
        y,
        vec![(column.to_string(), column.to_string())],
    )
}

/// Fine-tuning (`detox finetune`) or classifier (`detox train-classifier`) metrics: loss with
/// eval loss, learning rate, gradient norm, throughput, then whatever other columns the file
/// has (the classifier's validation metrics in one chart).
fn training_part(log: &MetricsLog) -> Result<(String, usize), ReportError> {
    let file = log.path.display().to_string();
    let mut s = format!(
        "<h3>Training: <span class=\"path\">{}</span></h3>",
        escape(&file)
    );
    s.push_str(&incomplete_note(log));
    if log.rows.is_empty() {
        s.push_str(&para("note", "metrics.jsonl has no rows yet."));
        return Ok((s, 0));
    }
    let eval_loss = if log.has("eval_loss") {
        "eval_loss"
    } else {
        "eval.loss"
    };
    let throughput = if log.has("tokens_per_s") {
        ("tokens_per_s", "tokens / s")
    } else {
        ("examples_per_s", "examples / s")
    };
    let mut plans: Vec<Plan> = vec![
        (
            "Loss".into(),
            "loss",
            vec![
                ("train loss (loss)".into(), "loss".into()),
                (format!("eval loss ({eval_loss})"), eval_loss.into()),
            ],
        ),
        one("Learning rate", "lr", "lr"),
        one("Gradient norm (before clipping)", "grad_norm", "grad_norm"),
        one("Throughput", throughput.1, throughput.0),
    ];
    let used: Vec<String> = plans
        .iter()
        .flat_map(|p| p.2.iter().map(|c| c.1.clone()))
        .chain(["epoch".to_string()])
        .collect();
    let validation: Vec<(String, String)> = log
        .columns
        .iter()
        .filter(|c| c.starts_with("eval.") && !used.contains(c))
        .map(|c| (c.clone(), c.clone()))
        .collect();
    let validation_cols: Vec<String> = validation.iter().map(|v| v.1.clone()).collect();
    if !validation.is_empty() {
        plans.push(("Validation metrics".into(), "score", validation));
    }
    for c in &log.columns {
        if !used.contains(c) && !validation_cols.contains(c) {
            plans.push(one(c, "value", c));
        }
    }
    s.push_str(&para("summary", &training_summary(log, eval_loss)));
    let (charts, n) = draw_plans(log, &plans)?;
    s.push_str(&charts_div(&charts));
    Ok((s, n))
}

fn training_summary(log: &MetricsLog, eval_loss: &str) -> String {
    let (first, last) = (&log.rows[0], &log.rows[log.rows.len() - 1]);
    let mut t = format!(
        "{} rows, steps {}–{}",
        log.rows.len(),
        fmt_num(first.step),
        fmt_num(last.step)
    );
    if let Some((_, e)) = log.last("epoch") {
        let _ = write!(t, ", epoch {}", fmt_num(e));
    }
    if let Some((step, l)) = log.last("loss") {
        let _ = write!(
            t,
            "; last train loss {} (step {})",
            fmt_num(l),
            fmt_num(step)
        );
    }
    if let Some((step, l)) = log.min(eval_loss) {
        let _ = write!(
            t,
            "; lowest eval loss {} at step {}",
            fmt_num(l),
            fmt_num(step)
        );
    }
    t
}

/// The stats a PPO run is judged by, in this order: (title, y axis, [(name, key)]).
fn ppo_plans() -> Vec<Plan<'static>> {
    vec![
        one("Reward (env/reward_mean)", "reward", "env/reward_mean"),
        one("KL to the reference (objective/kl)", "KL", "objective/kl"),
        one(
            "KL coefficient (objective/kl_coef)",
            "coefficient",
            "objective/kl_coef",
        ),
        one(
            "Entropy (objective/entropy)",
            "entropy",
            "objective/entropy",
        ),
        one("Total PPO loss (ppo/loss/total)", "loss", "ppo/loss/total"),
        one(
            "Policy clip fraction (ppo/policy/clipfrac)",
            "fraction",
            "ppo/policy/clipfrac",
        ),
        one("Value error (ppo/val/error)", "error", "ppo/val/error"),
        (
            "Seconds per step".into(),
            "seconds",
            vec![
                (
                    "whole step (time/iteration)".into(),
                    "time/iteration".into(),
                ),
                ("generation (time/generate)".into(), "time/generate".into()),
                ("reward (time/reward)".into(), "time/reward".into()),
            ],
        ),
    ]
}

fn ppo_stats_part(log: &MetricsLog) -> Result<(String, usize), ReportError> {
    let file = log.path.display().to_string();
    let mut s = format!(
        "<h3>PPO steps: <span class=\"path\">{}</span></h3>",
        escape(&file)
    );
    s.push_str(&incomplete_note(log));
    if log.rows.is_empty() {
        s.push_str(&para("note", "stats.jsonl has no rows yet."));
        return Ok((s, 0));
    }
    let plans = ppo_plans();
    let mut summary = format!("{} steps", log.rows.len());
    if let (Some(first), Some(last)) = (
        log.series("env/reward_mean").first().copied(),
        log.last("env/reward_mean"),
    ) {
        let _ = write!(
            summary,
            "; reward mean {} at step {} → {} at step {}",
            fmt_num(first.1),
            fmt_num(first.0),
            fmt_num(last.1),
            fmt_num(last.0)
        );
    }
    s.push_str(&para("summary", &summary));
    let missing: Vec<&str> = plans
        .iter()
        .flat_map(|p| p.2.iter())
        .map(|c| c.1.as_str())
        .filter(|c| !log.has(c))
        .collect();
    if !missing.is_empty() {
        s.push_str(&para(
            "note",
            &format!("Not in stats.jsonl: {}.", missing.join(", ")),
        ));
    }
    let (charts, n) = draw_plans(log, &plans)?;
    s.push_str(&charts_div(&charts));
    let last = &log.rows[log.rows.len() - 1];
    let rows: Vec<Vec<Cell>> = last
        .values
        .iter()
        .map(|(k, v)| vec![Cell::Text(k.clone()), Cell::Num(fmt_num(*v))])
        .collect();
    let _ = write!(
        s,
        "<details><summary>Every stat of the last step ({}, line {})</summary>{}</details>",
        fmt_num(last.step),
        last.line,
        table("stats", &["key", "value"], &rows)
    );
    Ok((s, n))
}

/// Toxicity before / after (`toxicity.json`, or `toxicity_before.json` alone while the run is
/// unfinished) as a table and bars with ± std, and the per-prompt rewards of the comparison
/// before and after as two histograms on one axis.
fn toxicity_part(ppo: &PpoRun) -> Result<(String, usize), ReportError> {
    let mut s = String::from("<h3>Toxicity before vs after</h3>");
    let mut figures = String::new();
    let mut n = 0;
    match (&ppo.toxicity, &ppo.toxicity_before) {
        (Some(t), _) => {
            let rows = vec![
                vec![
                    Cell::Text("before".into()),
                    Cell::Num(fmt_opt(t.before.mean)),
                    Cell::Num(fmt_opt(t.before.std)),
                ],
                vec![
                    Cell::Text("after".into()),
                    Cell::Num(fmt_opt(t.after.mean)),
                    Cell::Num(fmt_opt(t.after.std)),
                ],
                vec![
                    Cell::Text("improvement %".into()),
                    Cell::Num(fmt_opt(t.improvement_pct.mean)),
                    Cell::Num(fmt_opt(t.improvement_pct.std)),
                ],
            ];
            s.push_str(&para(
                "summary",
                &format!(
                    "P({}) of the policy's responses to {} test prompts (toxicity.json); \
                     improvement as the lab computes it, (before − after) / before × 100: \
                     positive means less toxic.",
                    t.label, t.samples
                ),
            ));
            s.push_str(&table("", &["policy", "mean", "std"], &rows));
            let bar = |name: &str, m: crate::runs::MeanStd| BarSeries {
                name: name.into(),
                values: vec![m.mean],
                errors: Some(vec![m.std]),
            };
            let mut chart = bar_chart(
                &format!("Toxicity: mean P({}) ± std", t.label),
                &format!("P({})", t.label),
                &[format!("{} prompts", t.samples)],
                &[bar("before", t.before), bar("after", t.after)],
            )?;
            chart.caption = Some(format!(
                "Mean improvement {} %.",
                fmt_opt(t.improvement_pct.mean)
            ));
            figures.push_str(&figure(&chart));
            n += 1;
            if let Some(sc) = t
                .scores
                .as_ref()
                .filter(|s| !s.before.is_empty() || !s.after.is_empty())
            {
                let series = [
                    ("before training".to_string(), sc.before.clone()),
                    ("after training".to_string(), sc.after.clone()),
                ];
                let mut h = histogram(
                    &format!(
                        "Toxicity of each test prompt: P({}) before vs after",
                        t.label
                    ),
                    &format!("P({})", t.label),
                    &series,
                )?
                .chart;
                h.caption = Some(format!(
                    "P({}) of the initial and the trained policy's response to each of the {} \
                     test prompts (toxicity.json).",
                    t.label, t.samples
                ));
                figures.push_str(&figure(&h));
                n += 1;
            }
        }
        (None, Some(b)) => {
            s.push_str(&para(
                "note",
                "No toxicity.json yet (the run has not finished): the initial policy's toxicity \
                 from toxicity_before.json.",
            ));
            let rows = vec![vec![
                Cell::Text("before".into()),
                Cell::Num(fmt_opt(b.mean)),
                Cell::Num(fmt_opt(b.std)),
                Cell::Num(b.n.to_string()),
            ]];
            s.push_str(&table("", &["policy", "mean", "std", "texts"], &rows));
        }
        (None, None) => s.push_str(&para("note", "No toxicity_before.json or toxicity.json.")),
    }
    if let Some(rows) = &ppo.comparison {
        let values = |f: fn(&ComparisonRow) -> Option<f64>| -> Vec<f64> {
            rows.iter().filter_map(f).collect()
        };
        let series = [
            ("before training".to_string(), values(|r| r.reward_before)),
            ("after training".to_string(), values(|r| r.reward_after)),
        ];
        if series.iter().any(|s| !s.1.is_empty()) {
            let mut h = histogram(
                "Reward of each comparison prompt: before vs after",
                "reward",
                &series,
            )?
            .chart;
            h.caption = Some(format!(
                "The reward model's score of the initial and the trained policy's response to \
                 each of the {} prompts of comparison.json (the lab's reward: higher is less \
                 toxic).",
                rows.len()
            ));
            figures.push_str(&figure(&h));
            n += 1;
        }
    }
    if !figures.is_empty() {
        s.push_str(&charts_div(&figures));
    }
    Ok((s, n))
}

/// The comparison table: the largest and the smallest reward changes.
fn comparison_part(rows: &[ComparisonRow]) -> String {
    let mut sorted: Vec<(usize, &ComparisonRow)> = rows.iter().enumerate().collect();
    sorted.sort_by(|a, b| {
        let key = |r: &ComparisonRow| r.reward_diff.unwrap_or(f64::NEG_INFINITY);
        key(b.1).total_cmp(&key(a.1))
    });
    let k = COMPARISON_ROWS_EACH_END;
    let mut s = String::from("<h3>Comparison: reward changes</h3>");
    let head = [
        "#",
        "query",
        "response before",
        "response after",
        "reward before",
        "reward after",
        "change",
    ];
    let cells = |part: &[(usize, &ComparisonRow)]| -> Vec<Vec<Cell>> {
        part.iter()
            .map(|(i, r)| {
                vec![
                    Cell::Num(i.to_string()),
                    Cell::Long(r.query.clone()),
                    Cell::Long(r.response_before.clone()),
                    Cell::Long(r.response_after.clone()),
                    Cell::Num(fmt_opt(r.reward_before)),
                    Cell::Num(fmt_opt(r.reward_after)),
                    Cell::Num(fmt_opt(r.reward_diff)),
                ]
            })
            .collect()
    };
    if sorted.len() <= 2 * k {
        s.push_str(&para(
            "summary",
            &format!(
                "All {} rows of comparison.json, largest reward gain first (# is the row in the file).",
                sorted.len()
            ),
        ));
        s.push_str(&table("wide", &head, &cells(&sorted)));
    } else {
        s.push_str(&para(
            "summary",
            &format!(
                "The {k} largest and the {k} smallest reward changes of {} rows (# is the row in \
                 the file).",
                sorted.len()
            ),
        ));
        s.push_str(&format!("<h4>Top {k}</h4>"));
        s.push_str(&table("wide", &head, &cells(&sorted[..k])));
        s.push_str(&format!("<h4>Bottom {k}</h4>"));
        s.push_str(&table("wide", &head, &cells(&sorted[sorted.len() - k..])));
    }
    s
}

/// `detox evaluate`'s output: ROUGE per model as a table and grouped bars, the side-by-side
/// summaries in a collapsible block.
fn evaluation_part(e: &Evaluation, file: &str) -> Result<(String, usize), ReportError> {
    let mut s = format!(
        "<h3>Evaluation: <span class=\"path\">{}</span></h3>",
        escape(file)
    );
    s.push_str(&para(
        "summary",
        &format!(
            "{} dialogues of {}; ROUGE F-measure (rouge_score, stemmed) of each model's summaries \
             against the human ones.",
            e.samples, e.dataset
        ),
    ));
    let mut head = vec!["model", "directory", "adapter"];
    head.extend(Rouge::NAMES);
    let rows: Vec<Vec<Cell>> = e
        .models
        .iter()
        .map(|m| {
            let mut row = vec![
                Cell::Text(m.name.clone()),
                Cell::Text(m.model.clone()),
                Cell::Text(m.adapter.clone().unwrap_or_else(|| "–".into())),
            ];
            row.extend(m.rouge.values().map(|v| Cell::Num(fmt_opt(v))));
            row
        })
        .collect();
    s.push_str(&table("", &head, &rows));
    let mut n = 0;
    if !e.models.is_empty() {
        let series: Vec<BarSeries> = e
            .models
            .iter()
            .map(|m| BarSeries {
                name: m.name.clone(),
                values: m.rouge.values().to_vec(),
                errors: None,
            })
            .collect();
        let groups: Vec<String> = Rouge::NAMES.iter().map(|g| g.to_string()).collect();
        let chart = bar_chart("ROUGE per model", "F-measure", &groups, &series)?;
        s.push_str(&charts_div(&figure(&chart)));
        n += 1;
    }
    let shown = e.human_baseline_summaries.len().min(EVALUATION_ROWS);
    if shown > 0 {
        let mut head: Vec<String> = vec!["#".into(), "dialogue".into(), "human".into()];
        head.extend(e.models.iter().map(|m| m.name.clone()));
        let rows: Vec<Vec<Cell>> = (0..shown)
            .map(|i| {
                let mut row = vec![
                    Cell::Num(i.to_string()),
                    Cell::Long(e.dialogues.get(i).cloned().unwrap_or_default()),
                    Cell::Long(e.human_baseline_summaries[i].clone()),
                ];
                row.extend(
                    e.models
                        .iter()
                        .map(|m| Cell::Long(m.summaries.get(i).cloned().unwrap_or_default())),
                );
                row
            })
            .collect();
        let head: Vec<&str> = head.iter().map(String::as_str).collect();
        let _ = write!(
            s,
            "<details><summary>Summaries side by side (the first {shown} of {})</summary>{}</details>",
            e.human_baseline_summaries.len(),
            table("wide", &head, &rows)
        );
    }
    Ok((s, n))
}

/// The section of the `index`-th run (1-based).
pub fn run_section(index: usize, run: &Run) -> Result<Section, ReportError> {
    let id = format!("run-{index}");
    let dir = run.dir.display().to_string();
    let heading = format!("{} — {}", run.kinds().join(" + "), dir);
    let mut html = format!(
        "<section class=\"run\" id=\"{id}\"><h2>{}</h2><p class=\"path\">{}</p>",
        escape(&run.kinds().join(" + ")),
        escape(&dir)
    );
    let mut charts = 0;
    let mut add = |part: (String, usize)| {
        html.push_str(&part.0);
        charts += part.1;
    };
    if let Some(log) = &run.training {
        add(training_part(log)?);
    }
    if let Some(ppo) = &run.ppo {
        if let Some(log) = &ppo.stats {
            add(ppo_stats_part(log)?);
        }
        add(toxicity_part(ppo)?);
        if let Some(rows) = &ppo.comparison {
            add((comparison_part(rows), 0));
        }
    }
    if let Some(e) = &run.evaluation {
        let file = run.dir.join(crate::runs::EVALUATION_FILE);
        add(evaluation_part(e, &file.display().to_string())?);
    }
    html.push_str(&settings_block(&run.settings));
    html.push_str("</section>");
    Ok(Section {
        id,
        heading,
        html,
        charts,
    })
}
