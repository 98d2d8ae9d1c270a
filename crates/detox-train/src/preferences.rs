//! Preference pairs for reward modelling: what `detox train-reward` reads.
//!
//! Two kinds of JSONL file:
//! - human judgments as `detox annotations export` writes them (`{"item", "annotator", "models",
//!   "preferred", ...}`), resolved against the items the annotators saw (dialogue and each
//!   model's summary): the preferred model's summary is `chosen`, the other's `rejected`, each
//!   prefixed by the prompt (the dialogue in the prompt template). Ties are dropped; the same
//!   item judged by several annotators gives one pair per judgment (trl trains on them as
//!   separate rows); an annotator's repeated judgment of one item counts once (the last, as
//!   `annotations stats` counts).
//! - ready pairs, one per line, as trl's implicit-prompt preference datasets hold them:
//!   `{"chosen": TEXT, "rejected": TEXT}`, with an optional `"prompt"` put before both texts and
//!   an optional `"margin"` (trl's `margin` column).
//!
//! The held-out part for pairwise accuracy is taken by item ([`split_by_item`]), so that the
//! judgments of one item by several annotators never sit on both sides.

use std::collections::HashMap;
use std::path::Path;

use detox_agreement::{Judgment, Preference};
use serde_json::Value;

use crate::data::PromptTemplate;
use crate::finetune::{io_err, TrainError};

/// One (chosen, rejected) pair: whole texts as the reward model reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct PreferencePair {
    /// What the pair belongs to (the item ID; for ready pairs, the line number): the unit of
    /// the held-out split.
    pub group: String,
    pub chosen: String,
    pub rejected: String,
    /// Subtracted from the reward difference in the loss (trl's `margin`).
    pub margin: Option<f64>,
}

/// The texts one item showed: its dialogue and each model's summary.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ItemTexts {
    pub dialogue: String,
    pub summaries: HashMap<String, String>,
}

/// What a preferences file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreferenceFile {
    Judgments,
    Pairs,
}

/// The kind of `text` (a JSONL file): ready pairs when its first record has a `chosen` key,
/// judgments otherwise.
pub fn file_kind(text: &str) -> PreferenceFile {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    match first.and_then(|l| serde_json::from_str::<Value>(l).ok()) {
        Some(Value::Object(o)) if o.contains_key("chosen") => PreferenceFile::Pairs,
        _ => PreferenceFile::Judgments,
    }
}

fn bad(path: &Path, line: usize, msg: impl std::fmt::Display) -> TrainError {
    TrainError::Config(format!("{}:{line}: {msg}", path.display()))
}

/// Ready pairs from `text` (the contents of `path`, named in errors).
pub fn parse_pairs(path: &Path, text: &str) -> Result<Vec<PreferencePair>, TrainError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| bad(path, n, e))?;
        let s = |key: &str| -> Result<Option<&str>, TrainError> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(bad(path, n, format!("`{key}` must be a string"))),
            }
        };
        let need = |key: &str| {
            s(key)?.ok_or_else(|| {
                bad(
                    path,
                    n,
                    format!("expected a `{key}` text (chosen/rejected pairs)"),
                )
            })
        };
        let prompt = s("prompt")?.unwrap_or("");
        let margin = match v.get("margin") {
            None | Some(Value::Null) => None,
            Some(m) => Some(
                m.as_f64()
                    .filter(|m| m.is_finite())
                    .ok_or_else(|| bad(path, n, "`margin` must be a finite number"))?,
            ),
        };
        out.push(PreferencePair {
            group: format!("line {n}"),
            chosen: format!("{prompt}{}", need("chosen")?),
            rejected: format!("{prompt}{}", need("rejected")?),
            margin,
        });
    }
    Ok(out)
}

/// The pairs of `judgments` (read from `path`): the preferred model's summary of the item is
/// chosen, the other's rejected, both after `template` rendered with the item's dialogue. Ties
/// are dropped. Returns the pairs and the number of ties.
pub fn pairs_from_judgments(
    path: &Path,
    judgments: &[Judgment],
    items: &HashMap<String, ItemTexts>,
    template: &PromptTemplate,
) -> Result<(Vec<PreferencePair>, usize), TrainError> {
    let mut pairs = Vec::new();
    let mut ties = 0;
    for j in judgments {
        let Preference::Model(winner) = &j.preferred else {
            ties += 1;
            continue;
        };
        let item = items.get(&j.item).ok_or_else(|| {
            bad(
                path,
                j.line,
                format!("item {:?} is not in the items file", j.item),
            )
        })?;
        let loser = if *winner == j.models[0] {
            &j.models[1]
        } else {
            &j.models[0]
        };
        let summary = |model: &str| {
            item.summaries.get(model).ok_or_else(|| {
                bad(
                    path,
                    j.line,
                    format!("item {:?} has no summary by model {model:?}", j.item),
                )
            })
        };
        let prompt = template.render(&item.dialogue);
        pairs.push(PreferencePair {
            group: j.item.clone(),
            chosen: format!("{prompt}{}", summary(winner)?),
            rejected: format!("{prompt}{}", summary(loser)?),
            margin: None,
        });
    }
    Ok((pairs, ties))
}

/// Reads a preferences file of either kind; judgments need `items`. Returns the pairs and the
/// number of ties dropped.
pub fn read_preferences(
    path: &Path,
    items: Option<&HashMap<String, ItemTexts>>,
    template: &PromptTemplate,
) -> Result<(Vec<PreferencePair>, usize), TrainError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    match file_kind(&text) {
        PreferenceFile::Pairs => Ok((parse_pairs(path, &text)?, 0)),
        PreferenceFile::Judgments => {
            let items = items.ok_or_else(|| {
                TrainError::Config(format!(
                    "{}: holds judgments (`detox annotations export`): give --items, the file the \
                     annotators rated, to find their texts",
                    path.display()
                ))
            })?;
            let judgments = detox_agreement::parse_judgments(path, text.as_bytes())
                .map_err(|e| TrainError::Config(e.to_string()))?;
            // one judgment per (annotator, item): the last, as `annotations stats` counts them
            let judgments: Vec<Judgment> = detox_agreement::deduplicate(&judgments)
                .into_iter()
                .cloned()
                .collect();
            pairs_from_judgments(path, &judgments, items, template)
        }
    }
}

/// Splits pairs into (train, held out) by group: of the groups in order of first appearance,
/// group `g` is held out when `floor((g + 1)·f) > floor(g·f)` (every `1/f`-th group, spread
/// evenly). `f` = 0 holds nothing out.
pub fn split_by_item(
    pairs: Vec<PreferencePair>,
    fraction: f64,
) -> (Vec<PreferencePair>, Vec<PreferencePair>) {
    let mut index: HashMap<String, usize> = HashMap::new();
    for p in &pairs {
        let n = index.len();
        index.entry(p.group.clone()).or_insert(n);
    }
    let held = |g: usize| ((g + 1) as f64 * fraction).floor() > (g as f64 * fraction).floor();
    pairs.into_iter().partition(|p| !held(index[&p.group]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgment(line: &str) -> Judgment {
        detox_agreement::judgment::parse_line(line).unwrap()
    }

    fn line(item: &str, who: &str, preferred: &str) -> String {
        serde_json::json!({
            "item": item, "annotator": who, "models": ["a", "b"], "shown": ["b", "a"],
            "preferred": preferred, "confidence": 2,
            "ratings": {"a": {"readability": 3, "coherence": 4}, "b": {"readability": 5, "coherence": 6}},
            "note": "", "time": "2026-12-02T10:00:00Z"
        })
        .to_string()
    }

    fn items() -> HashMap<String, ItemTexts> {
        let mut m = HashMap::new();
        for id in ["0", "1"] {
            m.insert(
                id.to_string(),
                ItemTexts {
                    dialogue: format!("dialogue {id}"),
                    summaries: [("a", "A"), ("b", "B")]
                        .map(|(k, v)| (k.to_string(), format!("{v}{id}")))
                        .into(),
                },
            );
        }
        m
    }

    #[test]
    fn judgments_become_pairs_ties_dropped_duplicates_kept() {
        let js: Vec<Judgment> = [
            line("0", "ann", "b"),
            line("0", "bob", "b"),
            line("1", "ann", "tie"),
            line("1", "bob", "a"),
        ]
        .iter()
        .map(|l| judgment(l))
        .collect();
        let t = PromptTemplate::new("D: {dialogue}\nS: ").unwrap();
        let (pairs, ties) = pairs_from_judgments(Path::new("p.jsonl"), &js, &items(), &t).unwrap();
        assert_eq!(ties, 1);
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0].chosen, "D: dialogue 0\nS: B0");
        assert_eq!(pairs[0].rejected, "D: dialogue 0\nS: A0");
        assert_eq!(pairs[1], pairs[0]);
        assert_eq!(
            (pairs[2].chosen.as_str(), pairs[2].rejected.as_str()),
            ("D: dialogue 1\nS: A1", "D: dialogue 1\nS: B1")
        );
        assert_eq!(pairs[2].group, "1");
    }

    #[test]
    fn an_unknown_item_or_model_is_one_error_naming_the_line() {
        let t = PromptTemplate::new("{dialogue}").unwrap();
        let mut j = judgment(&line("7", "ann", "a"));
        j.line = 3;
        let e = pairs_from_judgments(Path::new("p.jsonl"), &[j], &items(), &t).unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.jsonl:3: item \"7\" is not in the items file"
        );
        let mut j = judgment(&line("0", "ann", "a"));
        j.models[1] = "c".into();
        let e = pairs_from_judgments(Path::new("p.jsonl"), &[j], &items(), &t).unwrap_err();
        assert!(e.to_string().contains("no summary by model \"c\""), "{e}");
    }

    #[test]
    fn ready_pairs_take_prompt_and_margin() {
        let text = "{\"chosen\": \"x\", \"rejected\": \"y\"}\n\n{\"prompt\": \"p: \", \"chosen\": \"x\", \"rejected\": \"y\", \"margin\": 1.5}\n";
        assert_eq!(file_kind(text), PreferenceFile::Pairs);
        let p = parse_pairs(Path::new("f.jsonl"), text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].chosen.as_str(), p[0].margin), ("x", None));
        assert_eq!(
            (p[1].chosen.as_str(), p[1].rejected.as_str(), p[1].margin),
            ("p: x", "p: y", Some(1.5))
        );
        assert_eq!(p[1].group, "line 3");
        let e = parse_pairs(Path::new("f.jsonl"), "{\"chosen\": \"x\"}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.jsonl:1: expected a `rejected` text (chosen/rejected pairs)"
        );
        let e = parse_pairs(
            Path::new("f.jsonl"),
            "{\"chosen\": \"x\", \"rejected\": 3}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("`rejected` must be a string"), "{e}");
        assert_eq!(file_kind(&line("0", "a", "a")), PreferenceFile::Judgments);
    }

    #[test]
    fn the_split_keeps_an_items_pairs_together_and_spreads_the_held_out_items() {
        let pairs: Vec<PreferencePair> = (0..40)
            .map(|i| PreferencePair {
                group: format!("g{}", i / 2),
                chosen: format!("c{i}"),
                rejected: format!("r{i}"),
                margin: None,
            })
            .collect();
        let (train, held) = split_by_item(pairs, 0.1);
        assert_eq!((train.len(), held.len()), (36, 4));
        let held_groups: Vec<&str> = held.iter().map(|p| p.group.as_str()).collect();
        assert_eq!(held_groups, ["g9", "g9", "g19", "g19"]);
        assert!(train
            .iter()
            .all(|p| !held_groups.contains(&p.group.as_str())));
        let (train, held) = split_by_item(train, 0.0);
        assert_eq!((train.len(), held.len()), (36, 0));
    }
}
