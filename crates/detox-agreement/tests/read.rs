//! Reading judgments files: what is accepted, and errors that name `FILE:LINE`, say what is wrong
//! and what was expected.

use std::path::{Path, PathBuf};

use detox_agreement::{read_judgments, AgreementError, Preference};
use serde_json::{json, Value};

fn good() -> Value {
    json!({
        "item": "d1", "annotator": "ann", "models": ["M1", "M2"], "shown": ["M2", "M1"],
        "preferred": "M1", "confidence": 2,
        "ratings": {"M1": {"readability": 6, "coherence": 5}, "M2": {"readability": 4, "coherence": 3}},
        "note": "fine", "time": "2026-05-01T12:00:00Z"
    })
}

fn write(name: &str, contents: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("detox-agreement-read");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The error of a file whose line 2 is `bad` (line 1 is a good judgment).
fn error_of(name: &str, bad: &str) -> String {
    let text = format!("{}\n{bad}\n{}\n", good(), good());
    let path = write(name, text.as_bytes());
    match read_judgments(&path) {
        Err(e @ AgreementError::Line { line: 2, .. }) => {
            let msg = e.to_string();
            let prefix = format!("{}:2: ", path.display());
            assert!(msg.starts_with(&prefix), "{msg}");
            msg[prefix.len()..].to_string()
        }
        other => panic!("{name}: expected an error on line 2, got {other:?}"),
    }
}

fn with(field: &str, value: Value) -> String {
    let mut v = good();
    v[field] = value;
    v.to_string()
}

fn without(field: &str) -> String {
    let mut v = good();
    v.as_object_mut().unwrap().remove(field);
    v.to_string()
}

#[test]
fn reads_a_good_file_skipping_blank_lines() {
    let mut second = good();
    second["item"] = json!(17);
    second["preferred"] = json!("tie");
    second["annotator"] = json!("bob");
    let mut third = good();
    third["item"] = json!(17.0);
    third.as_object_mut().unwrap().remove("note");
    third.as_object_mut().unwrap().remove("shown");
    third["time"] = Value::Null;
    // BOM, CRLF line endings, blank and whitespace-only lines.
    let text = format!("\u{feff}{}\r\n\r\n   \n{second}\n\n{third}", good());
    let path = write("good.jsonl", text.as_bytes());
    let js = read_judgments(&path).unwrap();
    assert_eq!(js.len(), 3);
    assert_eq!(js.iter().map(|j| j.line).collect::<Vec<_>>(), [1, 4, 6]);
    let j = &js[0];
    assert_eq!(j.item, "d1");
    assert_eq!(j.models, ["M1".to_string(), "M2".to_string()]);
    assert_eq!(j.shown, Some(["M2".to_string(), "M1".to_string()]));
    assert_eq!(j.preferred, Preference::Model("M1".into()));
    assert_eq!(j.confidence, 2);
    assert_eq!(
        j.ratings_of("M2").map(|r| (r.readability, r.coherence)),
        Some((4, 3))
    );
    assert_eq!(j.note, "fine");
    assert_eq!(j.time.as_deref(), Some("2026-05-01T12:00:00Z"));
    // A number item is its decimal string; 17.0 is the same item as 17.
    assert_eq!(
        (js[1].item.as_str(), &js[1].preferred),
        ("17", &Preference::Tie)
    );
    assert_eq!(js[2].item, "17");
    assert_eq!(
        (js[2].note.as_str(), &js[2].shown, &js[2].time),
        ("", &None, &None)
    );
    let stats = detox_agreement::compute(&js);
    assert_eq!((stats.items, stats.annotators, stats.judgments), (2, 2, 3));
}

#[test]
fn empty_file_has_no_judgments() {
    let path = write("empty.jsonl", b"\n\n");
    assert!(read_judgments(&path).unwrap().is_empty());
    let stats = detox_agreement::stats_from_file(&path).unwrap();
    assert_eq!(stats.judgments, 0);
}

#[test]
fn missing_file_names_the_path() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no/such/judgments.jsonl");
    let e = read_judgments(&path).unwrap_err();
    assert!(matches!(e, AgreementError::Io { .. }));
    assert!(
        e.to_string().starts_with(&format!("{}: ", path.display())),
        "{e}"
    );
}

#[test]
fn invalid_json() {
    let msg = error_of("json.jsonl", r#"{"item": "d1", "annotator": "#);
    assert!(
        msg.starts_with("invalid JSON at column 28: EOF while parsing"),
        "{msg}"
    );
    assert!(
        msg.ends_with("expected one judgment object per line"),
        "{msg}"
    );
    assert!(!msg.contains("at line"), "{msg}");
    assert_eq!(
        error_of("array.jsonl", "[1, 2]"),
        "found [1, 2], expected a JSON object (one judgment)"
    );
}

#[test]
fn not_utf8_and_line_numbers_count_blank_lines() {
    let mut text = format!("{}\n\n\n", good()).into_bytes();
    text.extend_from_slice(b"{\"item\": \"\xff\"}\n");
    let path = write("utf8.jsonl", &text);
    let e = read_judgments(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:4: not UTF-8 text (invalid byte at column 11); expected one JSON object",
            path.display()
        )
    );
}

#[test]
fn preferred() {
    assert_eq!(
        error_of("pref.jsonl", &with("preferred", json!("M3"))),
        r#"`preferred` is "M3", expected one of the two models ("M1", "M2") or "tie""#
    );
    assert_eq!(
        error_of("pref2.jsonl", &with("preferred", json!("Tie"))),
        r#"`preferred` is "Tie", expected one of the two models ("M1", "M2") or "tie""#
    );
    assert_eq!(
        error_of("pref3.jsonl", &with("preferred", json!(1))),
        r#"`preferred` is 1, expected one of the two models ("M1", "M2") or "tie""#
    );
}

#[test]
fn confidence() {
    for (value, shown) in [
        (json!(0), "0"),
        (json!(4), "4"),
        (json!(2.5), "2.5"),
        (json!("2"), "\"2\""),
    ] {
        assert_eq!(
            error_of("conf.jsonl", &with("confidence", value)),
            format!("`confidence` is {shown}, expected an integer from 1 to 3")
        );
    }
}

#[test]
fn ratings() {
    let mut v = good();
    v["ratings"]["M2"]["coherence"] = json!(8);
    assert_eq!(
        error_of("rating.jsonl", &v.to_string()),
        "`ratings.M2.coherence` is 8, expected an integer from 1 to 7"
    );
    v["ratings"]["M2"]["coherence"] = json!(0);
    assert_eq!(
        error_of("rating0.jsonl", &v.to_string()),
        "`ratings.M2.coherence` is 0, expected an integer from 1 to 7"
    );
    let mut v = good();
    v["ratings"]["M1"]
        .as_object_mut()
        .unwrap()
        .remove("readability");
    assert_eq!(
        error_of("rating_axis.jsonl", &v.to_string()),
        "missing field `ratings.M1.readability`, expected an integer from 1 to 7"
    );
    let mut v = good();
    v["ratings"].as_object_mut().unwrap().remove("M2");
    assert_eq!(
        error_of("rating_model.jsonl", &v.to_string()),
        r#"`ratings` has no entry for model "M2", expected ratings of both models ("M1", "M2")"#
    );
    let mut v = good();
    v["ratings"]["M3"] = json!({"readability": 1, "coherence": 1});
    assert_eq!(
        error_of("rating_extra.jsonl", &v.to_string()),
        r#"`ratings` has an entry for "M3", expected entries for the two models ("M1", "M2") only"#
    );
    assert_eq!(
        error_of("rating_kind.jsonl", &with("ratings", json!([6, 4]))),
        r#"`ratings` is [6, 4], expected an object with the ratings of "M1" and "M2""#
    );
}

#[test]
fn models_and_shown() {
    let expected = |shown: &str| {
        format!("`models` is {shown}, expected two distinct non-empty model names, e.g. [\"M1\", \"M2\"]")
    };
    for (value, shown) in [
        (json!(["M1", "M1"]), r#"["M1", "M1"]"#),
        (json!(["M1"]), r#"["M1"]"#),
        (json!(["M1", "M2", "M3"]), r#"["M1", "M2", "M3"]"#),
        (json!("M1"), r#""M1""#),
        (json!(["M1", ""]), r#"["M1", ""]"#),
        (json!(["M1", 2]), r#"["M1", 2]"#),
    ] {
        assert_eq!(
            error_of("models.jsonl", &with("models", value)),
            expected(shown)
        );
    }
    let msg = error_of("models_tie.jsonl", &with("models", json!(["M1", "tie"])));
    assert!(
        msg.starts_with(r#"`models` is ["M1", "tie"]: "tie" is"#),
        "{msg}"
    );
    assert_eq!(
        error_of("shown.jsonl", &with("shown", json!(["M1", "M3"]))),
        r#"`shown` is ["M1", "M3"], expected the two models ("M1", "M2") in the order shown"#
    );
}

#[test]
fn item_annotator_and_missing_fields() {
    assert_eq!(
        error_of("item.jsonl", &without("item")),
        "missing field `item`, expected a string or a number"
    );
    assert_eq!(
        error_of("item_kind.jsonl", &with("item", json!(["d1"]))),
        r#"`item` is ["d1"], expected a string or a number"#
    );
    assert_eq!(
        error_of("item_empty.jsonl", &with("item", json!(""))),
        r#"`item` is "", expected a non-empty id"#
    );
    assert_eq!(
        error_of("ann.jsonl", &with("annotator", Value::Null)),
        "`annotator` is null, expected a non-empty string"
    );
    let msg = error_of("ann_bar.jsonl", &with("annotator", json!("a|b")));
    assert!(
        msg.starts_with(r#"`annotator` is "a|b", which contains '|'"#),
        "{msg}"
    );
    assert_eq!(
        error_of("pref_missing.jsonl", &without("preferred")),
        r#"missing field `preferred`, expected one of the two models or "tie""#
    );
    assert_eq!(
        error_of("ratings_missing.jsonl", &without("ratings")),
        "missing field `ratings`, expected the ratings of both models"
    );
    assert_eq!(
        error_of("note.jsonl", &with("note", json!(3))),
        "`note` is 3, expected a string"
    );
    assert_eq!(
        error_of("time.jsonl", &with("time", json!(1714564800))),
        "`time` is 1714564800, expected an RFC 3339 string"
    );
}
