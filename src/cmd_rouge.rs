//! `detox rouge`: ROUGE-1/2/L/Lsum of predictions against references, identical to Python's
//! rouge_score 0.1.2 with `use_stemmer=True` (see the `detox-rouge` crate).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use detox_rouge::{BootstrapScores, Example, RougeMeans, RougeScores};
use serde::Serialize;

/// Score predictions against references with ROUGE (rouge_score 0.1.2 compatible, Porter
/// stemmer). Input is either a JSONL file of pairs or two files with one text per line.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["pairs", "predictions"])))]
pub struct RougeArgs {
    /// JSONL file with one {"prediction": "...", "reference": "..."} object per line (texts may
    /// contain "\n": rougeLsum splits sentences on newlines).
    #[arg(long, value_name = "FILE.jsonl", conflicts_with_all = ["predictions", "references"])]
    pub pairs: Option<PathBuf>,
    /// Text file with one prediction per line (use with --references).
    #[arg(long, value_name = "FILE", requires = "references")]
    pub predictions: Option<PathBuf>,
    /// Text file with one reference per line, aligned with --predictions.
    #[arg(long, value_name = "FILE", requires = "predictions")]
    pub references: Option<PathBuf>,
    /// Print one JSON object {"mean": {...}, "per_example": [...], "bootstrap"?: {...}}.
    #[arg(long)]
    pub json: bool,
    /// Also compute bootstrap confidence intervals (rouge_score's BootstrapAggregator) with N
    /// resamples.
    #[arg(long, value_name = "N")]
    pub bootstrap: Option<usize>,
    /// Seed of the bootstrap resampling.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
}

#[derive(Serialize)]
struct Report<'a> {
    mean: RougeMeans,
    per_example: &'a [RougeScores],
    #[serde(skip_serializing_if = "Option::is_none")]
    bootstrap: Option<BootstrapScores>,
}

/// Runs `detox rouge`: reads the pairs, scores them and prints the JSON object (`--json`) or a
/// table of mean precision / recall / F-measure (plus bootstrap intervals with `--bootstrap`).
/// Unreadable or malformed input is an error naming the file (and line) and what was expected.
pub fn run(args: &RougeArgs) -> Result<()> {
    let out = render(args)?;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`detox rouge ... | head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Reads the input, scores it and formats the output (JSON line or table).
fn render(args: &RougeArgs) -> Result<String> {
    let examples = load_examples(args)?;
    let scores: Vec<RougeScores> = examples
        .iter()
        .map(|e| detox_rouge::score(&e.prediction, &e.reference))
        .collect();
    let bootstrap = match args.bootstrap {
        None => None,
        Some(0) => bail!("--bootstrap expects a positive number of resamples, got 0"),
        Some(n) => Some(detox_rouge::bootstrap(&scores, n, args.seed)?),
    };
    let mean = detox_rouge::mean_fmeasure(&scores);
    if args.json {
        let report = Report {
            mean,
            per_example: &scores,
            bootstrap,
        };
        let mut s = serde_json::to_string(&report).context("serializing the report")?;
        s.push('\n');
        Ok(s)
    } else {
        Ok(table(&scores, bootstrap.as_ref()))
    }
}

fn table(scores: &[RougeScores], bootstrap: Option<&BootstrapScores>) -> String {
    let means = detox_rouge::mean_scores(scores).as_array();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "ROUGE over {} examples (rouge_score 0.1.2, use_stemmer=True); means:",
        scores.len()
    );
    let _ = writeln!(
        s,
        "{:<10} {:>10} {:>10} {:>10}",
        "metric", "precision", "recall", "fmeasure"
    );
    for (name, m) in RougeScores::NAMES.iter().zip(means) {
        let _ = writeln!(
            s,
            "{name:<10} {:>10.4} {:>10.4} {:>10.4}",
            m.precision, m.recall, m.fmeasure
        );
    }
    if let Some(b) = bootstrap {
        let _ = writeln!(
            s,
            "\nbootstrap fmeasure, {} resamples, seed {} (low = 2.5%, mid = 50%, high = 97.5%):",
            b.n_samples, b.seed
        );
        let _ = writeln!(
            s,
            "{:<10} {:>10} {:>10} {:>10}",
            "metric", "low", "mid", "high"
        );
        for (name, a) in
            RougeScores::NAMES
                .iter()
                .zip([b.rouge1, b.rouge2, b.rouge_l, b.rouge_lsum])
        {
            let _ = writeln!(
                s,
                "{name:<10} {:>10.4} {:>10.4} {:>10.4}",
                a.low.fmeasure, a.mid.fmeasure, a.high.fmeasure
            );
        }
    }
    s
}

fn load_examples(args: &RougeArgs) -> Result<Vec<Example>> {
    match (&args.pairs, &args.predictions, &args.references) {
        (Some(pairs), None, None) => Ok(detox_rouge::read_pairs(pairs)?),
        (None, Some(p), Some(r)) => Ok(detox_rouge::read_parallel(p, r)?),
        _ => bail!(
            "expected either --pairs FILE.jsonl or both --predictions FILE and --references FILE"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: RougeArgs,
    }

    fn parse(argv: &[&str]) -> Result<RougeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("rouge").chain(argv.iter().copied())).map(|c| c.args)
    }

    /// A file with `content` in a fresh temporary directory.
    fn temp_file(name: &str, content: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "detox-cmd-rouge-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn args_pairs(path: &Path, json: bool) -> RougeArgs {
        RougeArgs {
            pairs: Some(path.into()),
            predictions: None,
            references: None,
            json,
            bootstrap: None,
            seed: 0,
        }
    }

    fn err_of(args: &RougeArgs) -> String {
        format!("{:#}", render(args).expect_err("expected an error"))
    }

    #[test]
    fn clap_definition() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let a = parse(&[
            "--pairs",
            "x.jsonl",
            "--json",
            "--bootstrap",
            "100",
            "--seed",
            "3",
        ])
        .unwrap();
        assert_eq!(a.pairs.as_deref(), Some(Path::new("x.jsonl")));
        assert!(a.json);
        assert_eq!((a.bootstrap, a.seed), (Some(100), 3));
        let a = parse(&["--predictions", "p", "--references", "r"]).unwrap();
        assert_eq!(a.predictions.as_deref(), Some(Path::new("p")));
        assert!(parse(&[]).is_err(), "an input is required");
        assert!(
            parse(&["--predictions", "p"]).is_err(),
            "--references is required"
        );
        assert!(parse(&["--pairs", "x", "--predictions", "p", "--references", "r"]).is_err());
    }

    #[test]
    fn json_output_from_pairs() {
        let path = temp_file(
            "pairs.jsonl",
            "{\"prediction\": \"the cat sat on the mat\", \"reference\": \"the cat was on the mat\", \"id\": 1}\n\
             \n\
             {\"reference\": \"a b\\nc d\", \"prediction\": \"c d\\na b\"}\n",
        );
        let mut args = args_pairs(&path, true);
        args.bootstrap = Some(50);
        args.seed = 9;
        let out = render(&args).unwrap();
        assert_eq!(out.lines().count(), 1, "one JSON object on one line");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        // (serde_json's default float parsing may be off by an ulp or two: compare closely.)
        let close =
            |v: &serde_json::Value, x: f64| (v.as_f64().expect("a number") - x).abs() < 1e-12;
        let per = v["per_example"].as_array().unwrap();
        assert_eq!(per.len(), 2);
        let s0 = detox_rouge::score("the cat sat on the mat", "the cat was on the mat");
        let s1 = detox_rouge::score("c d\na b", "a b\nc d");
        for (row, s) in per.iter().zip([s0, s1]) {
            for (k, x) in RougeScores::NAMES.iter().zip(s.as_array()) {
                assert!(close(&row[k]["precision"], x.precision), "{k} precision");
                assert!(close(&row[k]["recall"], x.recall), "{k} recall");
                assert!(close(&row[k]["fmeasure"], x.fmeasure), "{k} fmeasure");
            }
        }
        assert!(close(&per[1]["rougeLsum"]["recall"], 1.0));
        assert!(
            s1.rouge_l.recall < 1.0,
            "sentence order matters for rougeL only"
        );
        let mean = detox_rouge::mean_fmeasure(&[s0, s1]);
        for (k, m) in
            RougeScores::NAMES
                .iter()
                .zip([mean.rouge1, mean.rouge2, mean.rouge_l, mean.rouge_lsum])
        {
            assert!(close(&v["mean"][k], m), "mean {k}: {} vs {m}", v["mean"][k]);
        }
        assert_eq!(v["bootstrap"]["n_samples"], 50);
        assert_eq!(v["bootstrap"]["seed"], 9);
        assert!(v["bootstrap"]["rougeLsum"]["low"]["fmeasure"].is_f64());
        // Without --bootstrap there is no "bootstrap" key.
        let v: serde_json::Value =
            serde_json::from_str(&render(&args_pairs(&path, true)).unwrap()).unwrap();
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["mean", "per_example"]
        );
    }

    #[test]
    fn table_output_from_parallel_files() {
        let p = temp_file("pred.txt", "the cat sat on the mat\nhello world\n");
        let r = temp_file("ref.txt", "the cat was on the mat\r\nhello there\r\n");
        let args = RougeArgs {
            pairs: None,
            predictions: Some(p),
            references: Some(r),
            json: false,
            bootstrap: Some(10),
            seed: 1,
        };
        let out = render(&args).unwrap();
        assert!(out.contains("ROUGE over 2 examples"), "{out}");
        for name in RougeScores::NAMES {
            assert!(
                out.lines().any(|l| l.starts_with(name)),
                "no {name} row in\n{out}"
            );
        }
        let s = [
            detox_rouge::score("the cat sat on the mat", "the cat was on the mat"),
            detox_rouge::score("hello world", "hello there"),
        ];
        let mean = detox_rouge::mean_scores(&s);
        assert!(
            out.contains(&format!("{:.4}", mean.rouge1.fmeasure)),
            "{out}"
        );
        assert!(
            out.contains("bootstrap fmeasure, 10 resamples, seed 1"),
            "{out}"
        );
    }

    #[test]
    fn bad_input_is_reported() {
        // File errors (tested in detox-rouge's `files`) come through with file and line.
        let good = r#"{"prediction": "a", "reference": "b"}"#;
        let path = temp_file("bad.jsonl", &format!("{good}\n{{\"prediction\": \"a\", \n"));
        let e = err_of(&args_pairs(&path, true));
        assert!(
            e.contains("bad.jsonl:2") && e.contains("invalid JSON") && e.contains("\"prediction\""),
            "{e}"
        );

        let mut args = args_pairs(&temp_file("ok.jsonl", good), true);
        args.bootstrap = Some(0);
        assert!(err_of(&args).contains("--bootstrap"));

        let args = RougeArgs {
            pairs: None,
            predictions: None,
            references: None,
            json: true,
            bootstrap: None,
            seed: 0,
        };
        assert!(err_of(&args).contains("--pairs"));
    }
}
