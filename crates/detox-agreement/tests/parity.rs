//! Every number of `compute` against the Python reference stack (krippendorff 0.8.1, numpy,
//! scipy, scikit-learn), as written by `tools/make_agreement_fixtures.py` into
//! `tests/fixtures/<set>.expected.json` for the judgments of `tests/fixtures/<set>.jsonl`.
//! The expected files have exactly the JSON shape of `Stats`, so this also checks the shape: the
//! same keys everywhere (the same models, the same annotator pairs), nulls where Python's are.

use std::path::{Path, PathBuf};

use serde_json::Value;

const TOLERANCE: f64 = 1e-9;
const SETS: [&str; 5] = ["basic", "many", "subset", "constant", "sparse_dups"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Differences between `got` and `want`, each as `path: what`.
fn compare(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let gk: Vec<&String> = g.keys().collect();
            let wk: Vec<&String> = w.keys().collect();
            if gk != wk {
                out.push(format!("{path}: keys {gk:?}, expected {wk:?}"));
                return;
            }
            for (k, wv) in w {
                compare(&format!("{path}.{k}"), &g[k], wv, out);
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            if g.len() != w.len() {
                out.push(format!(
                    "{path}: {} elements, expected {}",
                    g.len(),
                    w.len()
                ));
                return;
            }
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                compare(&format!("{path}[{i}]"), gv, wv, out);
            }
        }
        (Value::Number(g), Value::Number(w)) => {
            // Counts are integers on both sides and must be equal; floats within TOLERANCE.
            if w.is_u64() {
                if g.as_u64() != w.as_u64() {
                    out.push(format!("{path}: {g}, expected {w}"));
                }
            } else {
                let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
                if (g - w).abs() > TOLERANCE {
                    out.push(format!("{path}: {g}, expected {w} (diff {:e})", g - w));
                }
            }
        }
        (g, w) if g == w => {}
        (g, w) => out.push(format!("{path}: {g}, expected {w}")),
    }
}

fn check(set: &str) -> Value {
    let dir = fixtures();
    let stats = detox_agreement::stats_from_file(&dir.join(format!("{set}.jsonl")))
        .unwrap_or_else(|e| panic!("{e}"));
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{set}.expected.json"))).unwrap(),
    )
    .unwrap();
    let got = serde_json::to_value(&stats).unwrap();
    let mut diffs = Vec::new();
    compare("stats", &got, &expected["stats"], &mut diffs);
    assert!(diffs.is_empty(), "{set}:\n{}", diffs.join("\n"));
    // The round trip through JSON gives the same Stats (what `--json` readers see).
    let back: detox_agreement::Stats = serde_json::from_value(got).unwrap();
    assert_eq!(back, stats);
    expected
}

#[test]
fn basic() {
    check("basic");
}

#[test]
fn many_annotators_sparse_and_numeric_items() {
    let e = check("many");
    // Four models and all 15 annotator pairs that share items.
    assert_eq!(e["stats"]["win_rate"].as_object().unwrap().len(), 4);
    assert!(e["stats"]["cohen_kappa"].as_object().unwrap().len() >= 10);
}

#[test]
fn subset_of_rating_values() {
    let e = check("subset");
    // Ordinal and interval differ when the values used are not evenly spaced.
    let a = &e["stats"]["alpha"];
    let (o, i) = (
        a["readability_ordinal"].as_f64(),
        a["readability_interval"].as_f64(),
    );
    assert!((o.unwrap() - i.unwrap()).abs() > 0.01);
}

#[test]
fn constant_values_give_null() {
    let e = check("constant");
    let a = &e["stats"]["alpha"];
    assert!(a["preferred_nominal"].is_null() && a["coherence_ordinal"].is_null());
    assert!(a["coherence_interval"].is_null() && a["readability_ordinal"].is_number());
    let kappas = e["stats"]["cohen_kappa"].as_object().unwrap();
    assert!(!kappas.is_empty() && kappas.values().all(|k| k["kappa"].is_null()));
}

#[test]
fn duplicates_unpairable_units_and_a_model_seen_once() {
    let e = check("sparse_dups");
    let kappas = e["stats"]["cohen_kappa"].as_object().unwrap();
    assert!(
        !kappas.contains_key("ann0|ann2"),
        "ann0 and ann2 share no item"
    );
    assert!(e["stats"]["win_rate"]["C"]["rate"].is_null());
    assert!(e["stats"]["likert"]["C"]["readability"]["std"].is_null());
    // The file has more lines than judgments counted: the re-judgments replaced earlier ones.
    let lines = detox_agreement::read_judgments(&fixtures().join("sparse_dups.jsonl")).unwrap();
    assert_eq!(
        lines.len(),
        e["stats"]["judgments"].as_u64().unwrap() as usize + 3
    );
}

/// Every fixture set in the directory is checked above.
#[test]
fn all_fixture_sets_are_checked() {
    let mut found: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".jsonl").map(String::from)
        })
        .collect();
    found.sort();
    let mut sets: Vec<&str> = SETS.to_vec();
    sets.sort();
    assert_eq!(found, sets);
}
