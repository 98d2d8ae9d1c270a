//! The items annotators judge, read from the file given to `--items`: one dialogue and the
//! summaries of exactly two models. Three kinds of file are read:
//!
//! - `evaluation.json` of `detox evaluate` (`dialogues`, `human_baseline_summaries`, `models`
//!   with `name` and `summaries`): one item per dialogue and pair of models; its ID is the row
//!   (`"7"`) when the file has two models, `"7:NAME_A:NAME_B"` when it has more;
//! - `comparison.json` of `detox ppo` (rows of `query`, `response_before`, `response_after`):
//!   one item per row, ID the row's position, models `before` and `after`, the query as the
//!   dialogue;
//! - JSONL, one item per line: `{"id": "...", "dialogue": "...", "reference": "..." (optional),
//!   "summaries": {"M1": "...", "M2": "..."}}` with at least two summaries (pairs expanded as
//!   for `evaluation.json`, IDs `ID` or `ID:M1:M2`).

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::AnnotateError;

/// One thing to judge: a dialogue and two models' summaries of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub dialogue: String,
    /// The human reference, when the file has one (stored, not shown to annotators).
    pub reference: Option<String>,
    /// The two models in the file's order: `models[0]` wrote `summaries[0]`.
    pub models: [String; 2],
    pub summaries: [String; 2],
}

/// Reads `path`: `.jsonl` is the JSONL kind; anything else is parsed as JSON and must be an
/// `evaluation.json` (an object) or a `comparison.json` (an array).
pub fn read_items(path: &Path) -> Result<Vec<Item>, AnnotateError> {
    let text = std::fs::read_to_string(path).map_err(|e| AnnotateError::io(path, e))?;
    let items = if path.extension().is_some_and(|e| e == "jsonl") {
        items_from_jsonl(path, &text)?
    } else {
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            AnnotateError::items(path, format!("not valid JSON ({e}); expected a `detox evaluate` evaluation.json, a `detox ppo` comparison.json or a .jsonl file of items"))
        })?;
        match value {
            Value::Array(_) => items_from_comparison(path, value)?,
            Value::Object(_) => items_from_evaluation(path, value)?,
            _ => {
                return Err(AnnotateError::items(
                    path,
                    "expected a JSON object (evaluation.json) or array (comparison.json)",
                ))
            }
        }
    };
    if items.is_empty() {
        return Err(AnnotateError::items(path, "holds no items"));
    }
    let mut seen = HashSet::new();
    for it in &items {
        if !seen.insert(it.id.as_str()) {
            return Err(AnnotateError::items(
                path,
                format!("item ID `{}` appears twice; IDs must be unique", it.id),
            ));
        }
    }
    Ok(items)
}

#[derive(Deserialize)]
struct Evaluation {
    dialogues: Vec<String>,
    #[serde(default)]
    human_baseline_summaries: Vec<String>,
    models: Vec<EvaluatedModel>,
}

#[derive(Deserialize)]
struct EvaluatedModel {
    name: String,
    summaries: Vec<String>,
}

fn items_from_evaluation(path: &Path, value: Value) -> Result<Vec<Item>, AnnotateError> {
    let e: Evaluation = serde_json::from_value(value).map_err(|err| {
        AnnotateError::items(
            path,
            format!("not a `detox evaluate` evaluation.json ({err}); expected `dialogues` and `models` with `name` and `summaries`"),
        )
    })?;
    for m in &e.models {
        if m.summaries.len() != e.dialogues.len() {
            return Err(AnnotateError::items(
                path,
                format!(
                    "model `{}` has {} summaries for {} dialogues",
                    m.name,
                    m.summaries.len(),
                    e.dialogues.len()
                ),
            ));
        }
    }
    let names: Vec<String> = e.models.iter().map(|m| m.name.clone()).collect();
    if names.len() < 2 {
        return Err(AnnotateError::items(
            path,
            format!(
                "has {} model(s); two or more are needed to compare",
                names.len()
            ),
        ));
    }
    let mut items = Vec::new();
    for (row, dialogue) in e.dialogues.iter().enumerate() {
        let summaries: Vec<(String, String)> = e
            .models
            .iter()
            .map(|m| (m.name.clone(), m.summaries[row].clone()))
            .collect();
        let reference = e.human_baseline_summaries.get(row).cloned();
        items.extend(pairs(
            path,
            &row.to_string(),
            dialogue,
            reference,
            &summaries,
        )?);
    }
    Ok(items)
}

#[derive(Deserialize)]
struct ComparisonRow {
    query: String,
    response_before: String,
    response_after: String,
}

fn items_from_comparison(path: &Path, value: Value) -> Result<Vec<Item>, AnnotateError> {
    let rows: Vec<ComparisonRow> = serde_json::from_value(value).map_err(|err| {
        AnnotateError::items(
            path,
            format!("not a `detox ppo` comparison.json ({err}); expected rows with `query`, `response_before` and `response_after`"),
        )
    })?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| Item {
            id: i.to_string(),
            dialogue: r.query,
            reference: None,
            models: ["before".into(), "after".into()],
            summaries: [r.response_before, r.response_after],
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlItem {
    id: Value,
    dialogue: String,
    #[serde(default)]
    reference: Option<String>,
    summaries: serde_json::Map<String, Value>,
}

fn items_from_jsonl(path: &Path, text: &str) -> Result<Vec<Item>, AnnotateError> {
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |msg: String| AnnotateError::items_line(path, n + 1, msg);
        let it: JsonlItem = serde_json::from_str(line).map_err(|e| {
            at(format!("{e}; expected {{\"id\", \"dialogue\", \"summaries\": {{MODEL: TEXT, ...}}}} and optionally \"reference\""))
        })?;
        let id = match it.id {
            Value::String(s) if !s.is_empty() => s,
            Value::Number(n) => n.to_string(),
            other => {
                return Err(at(format!(
                    "`id` is {other}; expected a non-empty string or a number"
                )))
            }
        };
        let mut summaries = Vec::new();
        for (model, text) in it.summaries {
            match text {
                Value::String(s) => summaries.push((model, s)),
                other => {
                    return Err(at(format!(
                        "summary of `{model}` is {other}; expected a string"
                    )))
                }
            }
        }
        if summaries.len() < 2 {
            return Err(at(format!(
                "`summaries` has {} model(s); two or more are needed to compare",
                summaries.len()
            )));
        }
        items.extend(pairs(path, &id, &it.dialogue, it.reference, &summaries)?);
    }
    Ok(items)
}

/// One item per pair of models (in the given order): ID `id` for two models, `id:A:B` for more.
fn pairs(
    path: &Path,
    id: &str,
    dialogue: &str,
    reference: Option<String>,
    summaries: &[(String, String)],
) -> Result<Vec<Item>, AnnotateError> {
    let mut out = Vec::new();
    for (i, (a, sa)) in summaries.iter().enumerate() {
        if a.is_empty() || a == "tie" {
            return Err(AnnotateError::items(
                path,
                format!("item `{id}`: model name `{a}` is not allowed (empty, or `tie`, the answer for no preference)"),
            ));
        }
        for (b, sb) in &summaries[i + 1..] {
            if a == b {
                return Err(AnnotateError::items(
                    path,
                    format!("item `{id}`: model `{a}` appears twice"),
                ));
            }
            let item_id = if summaries.len() == 2 {
                id.to_string()
            } else {
                format!("{id}:{a}:{b}")
            };
            out.push(Item {
                id: item_id,
                dialogue: dialogue.to_string(),
                reference: reference.clone(),
                models: [a.clone(), b.clone()],
                summaries: [sa.clone(), sb.clone()],
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempdir::Dir, std::path::PathBuf) {
        let d = tempdir::Dir::new();
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    /// A scratch directory removed on drop (std only).
    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "detox-annotate-items-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn evaluation_json_with_three_models_gives_every_pair_per_row() {
        let (_d, p) = write(
            "evaluation.json",
            r#"{"dataset":"x","samples":2,"dialogues":["d0","d1"],"human_baseline_summaries":["h0","h1"],
               "models":[{"name":"a","summaries":["a0","a1"]},{"name":"b","summaries":["b0","b1"]},{"name":"c","summaries":["c0","c1"]}]}"#,
        );
        let items = read_items(&p).unwrap();
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["0:a:b", "0:a:c", "0:b:c", "1:a:b", "1:a:c", "1:b:c"]);
        assert_eq!(items[5].summaries, ["b1".to_string(), "c1".to_string()]);
        assert_eq!(items[5].reference.as_deref(), Some("h1"));
    }

    #[test]
    fn evaluation_json_with_two_models_uses_the_row_as_id() {
        let (_d, p) = write(
            "evaluation.json",
            r#"{"dialogues":["d0"],"models":[{"name":"a","summaries":["a0"]},{"name":"b","summaries":["b0"]}]}"#,
        );
        let items = read_items(&p).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].id, "0");
        assert_eq!(items[0].models, ["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn comparison_json_gives_before_and_after() {
        let (_d, p) = write(
            "comparison.json",
            r#"[{"query":"q0","response_before":"x","response_after":"y","reward_before":1,"reward_after":2,"reward_diff":1}]"#,
        );
        let items = read_items(&p).unwrap();
        assert_eq!(items[0].dialogue, "q0");
        assert_eq!(items[0].models, ["before".to_string(), "after".to_string()]);
        assert_eq!(items[0].summaries, ["x".to_string(), "y".to_string()]);
    }

    #[test]
    fn jsonl_items_and_their_errors_name_the_line() {
        let (_d, p) = write(
            "items.jsonl",
            "{\"id\":\"x1\",\"dialogue\":\"d\",\"summaries\":{\"m\":\"s\",\"n\":\"t\"}}\n\n{\"id\":7,\"dialogue\":\"d\",\"summaries\":{\"m\":\"s\",\"n\":\"t\"}}\n",
        );
        let ids: Vec<String> = read_items(&p).unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["x1", "7"]);

        let (_d, p) = write(
            "items.jsonl",
            "{\"id\":\"x1\",\"dialogue\":\"d\",\"summaries\":{\"m\":\"s\",\"n\":\"t\"}}\n{\"id\":\"x2\",\"dialogue\":\"d\",\"summaries\":{\"m\":\"s\"}}\n",
        );
        let e = read_items(&p).unwrap_err().to_string();
        assert!(
            e.contains("items.jsonl:2") && e.contains("two or more"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_ids_empty_files_and_wrong_shapes_are_errors() {
        let (_d, p) = write(
            "items.jsonl",
            "{\"id\":\"x\",\"dialogue\":\"d\",\"summaries\":{\"m\":\"s\",\"n\":\"t\"}}\n{\"id\":\"x\",\"dialogue\":\"e\",\"summaries\":{\"m\":\"s\",\"n\":\"t\"}}\n",
        );
        assert!(read_items(&p)
            .unwrap_err()
            .to_string()
            .contains("appears twice"));
        let (_d, p) = write("items.jsonl", "\n");
        assert!(read_items(&p).unwrap_err().to_string().contains("no items"));
        let (_d, p) = write("evaluation.json", "{\"dialogues\":[\"d\"]}");
        assert!(read_items(&p)
            .unwrap_err()
            .to_string()
            .contains("evaluation.json"));
        let (_d, p) = write("x.json", "3");
        assert!(read_items(&p)
            .unwrap_err()
            .to_string()
            .contains("expected a JSON object"));
        let (_d, p) = write(
            "items.jsonl",
            "{\"id\":\"x\",\"dialogue\":\"d\",\"summaries\":{\"tie\":\"s\",\"n\":\"t\"}}\n",
        );
        assert!(read_items(&p).unwrap_err().to_string().contains("`tie`"));
    }
}
