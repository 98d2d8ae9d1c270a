//! Parity with rouge_score 0.1.2 on the DialogSum test split: every summary scored against
//! each other reference of its dialogue (3000 pairs), compared with
//! `tests/fixtures/rouge/dialogsum_test.json` (written by `tools/make_rouge_fixtures.py`).
//!
//! The texts are read from `$DETOX_SHARED/data/dialogsum/test.jsonl`, by default
//! `<workspace root>/../shared/data/dialogsum/test.jsonl`. When that file is missing the test
//! prints a notice and passes, unless `DETOX_REQUIRE_SHARED` is set (to anything but `0` or
//! the empty string), in which case it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use detox_rouge::score;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

fn shared_dir() -> PathBuf {
    match std::env::var_os("DETOX_SHARED") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("..").join("shared"),
    }
}

fn shared_required() -> bool {
    matches!(std::env::var("DETOX_REQUIRE_SHARED"), Ok(v) if !v.is_empty() && v != "0")
}

/// (prediction row, reference row) pairs: each row against the other rows of its dialogue,
/// dialogues identified by ids `test_<dialogue>_<k>`.
fn cross_reference_pairs(ids: &[String]) -> Vec<(usize, usize)> {
    let dialogue = |id: &str| -> u64 {
        let rest = id
            .strip_prefix("test_")
            .unwrap_or_else(|| panic!("unexpected id {id:?}"));
        let (d, k) = rest
            .split_once('_')
            .unwrap_or_else(|| panic!("unexpected id {id:?}"));
        k.parse::<u64>()
            .unwrap_or_else(|_| panic!("unexpected id {id:?}"));
        d.parse().unwrap_or_else(|_| panic!("unexpected id {id:?}"))
    };
    let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        groups.entry(dialogue(id)).or_default().push(i);
    }
    let mut pairs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for &j in &groups[&dialogue(id)] {
            if j != i {
                pairs.push((i, j));
            }
        }
    }
    pairs
}

#[test]
fn dialogsum_test_split_matches_rouge_score() {
    let data = shared_dir()
        .join("data")
        .join("dialogsum")
        .join("test.jsonl");
    if !data.is_file() {
        if shared_required() {
            panic!(
                "DETOX_REQUIRE_SHARED is set but {} does not exist",
                data.display()
            );
        }
        eprintln!(
            "SKIPPED dialogsum_test_split_matches_rouge_score: {} not found \
             (set DETOX_SHARED to the shared directory; DETOX_REQUIRE_SHARED=1 makes this an error)",
            data.display()
        );
        return;
    }

    let text = std::fs::read_to_string(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
    let mut ids = Vec::new();
    let mut summaries = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let row: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{}: {e}", data.display(), n + 1));
        ids.push(row["id"].as_str().expect("string id").to_string());
        summaries.push(row["summary"].as_str().expect("string summary").to_string());
    }

    let fixture_path = workspace_root().join("tests/fixtures/rouge/dialogsum_test.json");
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&fixture_path)
            .unwrap_or_else(|e| panic!("{}: {e}", fixture_path.display())),
    )
    .expect("fixture is valid JSON");
    assert_eq!(
        fixture["rows"].as_u64(),
        Some(summaries.len() as u64),
        "row count differs from the fixture"
    );
    let rows = fixture["pairs"].as_array().expect("pairs array");

    let pairs = cross_reference_pairs(&ids);
    assert_eq!(
        pairs.len(),
        3000,
        "expected 500 dialogues x 3 references x 2 other references"
    );
    assert_eq!(rows.len(), pairs.len(), "fixture pair count");

    let names = ["rouge1", "rouge2", "rougeL", "rougeLsum"];
    let measures = ["precision", "recall", "fmeasure"];
    let mut failures = Vec::new();
    let mut max_diff = 0.0f64;
    for (row, &(i, j)) in rows.iter().zip(&pairs) {
        let row = row.as_array().expect("pair row");
        assert_eq!(row.len(), 14);
        assert_eq!(
            (row[0].as_u64(), row[1].as_u64()),
            (Some(i as u64), Some(j as u64)),
            "fixture pairs are not in the expected order"
        );
        let got = score(&summaries[i], &summaries[j]);
        let got: Vec<f64> = got
            .as_array()
            .iter()
            .flat_map(|s| [s.precision, s.recall, s.fmeasure])
            .collect();
        for (c, (g, w)) in got.iter().zip(&row[2..]).enumerate() {
            let w = w.as_f64().expect("number");
            let d = (g - w).abs();
            max_diff = max_diff.max(d);
            if d > 1e-9 {
                failures.push(format!(
                    "pred row {i} ({}) vs ref row {j} ({}): {}.{}: got {g}, rouge_score {w}",
                    ids[i],
                    ids[j],
                    names[c / 3],
                    measures[c % 3]
                ));
            }
        }
    }
    // (serde_json's default float parsing can be an ulp or two off, so max_diff may show
    // ~1e-16 even where the computed numbers equal Python's bit for bit.)
    eprintln!(
        "dialogsum: {} pairs x 12 numbers, max |diff| = {max_diff:e}",
        pairs.len()
    );
    assert!(
        failures.is_empty(),
        "{} numbers differ from rouge_score:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
