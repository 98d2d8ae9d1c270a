//! `detox annotations export`: one judgment per line,
//! `{"item", "annotator", "models": [M1, M2], "shown": [left, right], "preferred": M1|M2|"tie",
//! "confidence", "ratings": {M1: {"readability", "coherence"}, M2: {...}}, "note", "time"}`,
//! models in the items file's order, judgments in the order they were stored.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::db::{Db, JudgmentRow};
use crate::error::AnnotateError;

#[derive(Serialize)]
struct Line<'a> {
    item: &'a str,
    annotator: &'a str,
    models: &'a [String; 2],
    shown: &'a [String; 2],
    preferred: &'a str,
    confidence: u8,
    ratings: BTreeMap<&'a str, Axes>,
    note: &'a str,
    time: &'a str,
}

#[derive(Serialize)]
struct Axes {
    readability: u8,
    coherence: u8,
}

/// One JSON line for `row`.
pub fn judgment_line(row: &JudgmentRow) -> String {
    let ratings = row
        .models
        .iter()
        .zip(&row.ratings)
        .map(|(m, r)| {
            (
                m.as_str(),
                Axes {
                    readability: r.readability,
                    coherence: r.coherence,
                },
            )
        })
        .collect();
    let line = Line {
        item: &row.item,
        annotator: &row.annotator,
        models: &row.models,
        shown: &row.shown,
        preferred: &row.preferred,
        confidence: row.confidence,
        ratings,
        note: &row.note,
        time: &row.time,
    };
    serde_json::to_string(&line).expect("a judgment serializes")
}

/// Every judgment in `db` as JSONL, and how many there are.
pub fn export_jsonl(db: &Db) -> Result<(String, usize), AnnotateError> {
    let rows = db.judgments()?;
    let mut out = String::new();
    for r in &rows {
        out.push_str(&judgment_line(r));
        out.push('\n');
    }
    Ok((out, rows.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Ratings;

    #[test]
    fn a_line_has_the_documented_shape() {
        let row = JudgmentRow {
            item: "3".into(),
            annotator: "ann".into(),
            models: ["before".into(), "after".into()],
            shown: ["after".into(), "before".into()],
            preferred: "after".into(),
            confidence: 2,
            ratings: [
                Ratings {
                    readability: 3,
                    coherence: 4,
                },
                Ratings {
                    readability: 6,
                    coherence: 7,
                },
            ],
            note: "ok \"quoted\"".into(),
            time: "2026-12-02T08:00:00.000Z".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&judgment_line(&row)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"item": "3", "annotator": "ann", "models": ["before", "after"],
                "shown": ["after", "before"], "preferred": "after", "confidence": 2,
                "ratings": {"before": {"readability": 3, "coherence": 4}, "after": {"readability": 6, "coherence": 7}},
                "note": "ok \"quoted\"", "time": "2026-12-02T08:00:00.000Z"})
        );
    }
}
