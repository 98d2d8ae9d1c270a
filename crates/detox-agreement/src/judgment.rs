//! One human judgment, as `detox annotations export` writes it (one JSON object a line), and the
//! reading and validation of such files.
//!
//! A line looks like
//!
//! ```json
//! {"item": "d017", "annotator": "ann", "models": ["M1", "M2"], "shown": ["M2", "M1"],
//!  "preferred": "M1", "confidence": 2,
//!  "ratings": {"M1": {"readability": 6, "coherence": 5}, "M2": {"readability": 4, "coherence": 4}},
//!  "note": "", "time": "2026-05-01T12:00:00Z"}
//! ```
//!
//! Required: `item` (a string, or a JSON number, which stands for its decimal string: `17` and
//! `"17"` are the same item; an integral float such as `17.0` is written without the fraction),
//! `annotator`, `models` (two distinct names), `preferred` (one of the two models or `"tie"`),
//! `confidence` (an integer 1-3) and `ratings` (for each of the two models, `readability` and
//! `coherence`, integers 1-7). Optional, checked when present (`null` counts as absent): `shown`
//! (the two models in the order shown, left then right), `note` and `time` (strings; `time` is
//! kept as written, not parsed). Other fields, and other keys inside a model's ratings, are
//! ignored, so that newer exports stay readable. Blank lines are skipped.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::AgreementError;

/// The `preferred` value that means neither model; not allowed as a model name.
pub const TIE: &str = "tie";
/// Likert ratings are integers in `RATING_MIN..=RATING_MAX`.
pub const RATING_MIN: u8 = 1;
pub const RATING_MAX: u8 = 7;
/// `confidence` is an integer in `CONFIDENCE_MIN..=CONFIDENCE_MAX`.
pub const CONFIDENCE_MIN: u8 = 1;
pub const CONFIDENCE_MAX: u8 = 3;

/// Which of the two models the annotator preferred.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Preference {
    Model(String),
    Tie,
}

impl Preference {
    /// The value as the file writes it: the model's name, or `"tie"`.
    pub fn label(&self) -> &str {
        match self {
            Preference::Model(m) => m,
            Preference::Tie => TIE,
        }
    }
}

/// The Likert ratings (1-7) of one model in one judgment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratings {
    pub readability: u8,
    pub coherence: u8,
}

/// One annotator's judgment of one item: a preference between two models and a rating of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgment {
    pub item: String,
    pub annotator: String,
    /// Two distinct names, neither `"tie"`.
    pub models: [String; 2],
    /// The two models in the order shown (left, right), when the file says.
    pub shown: Option<[String; 2]>,
    pub preferred: Preference,
    /// 1-3.
    pub confidence: u8,
    /// The ratings of `models[0]` and `models[1]`, in that order.
    pub ratings: [Ratings; 2],
    pub note: String,
    pub time: Option<String>,
    /// The 1-based line of the file it was read from; 0 when built in code.
    pub line: usize,
}

impl Judgment {
    /// The ratings of `model`, if this judgment shows it.
    pub fn ratings_of(&self, model: &str) -> Option<Ratings> {
        self.models
            .iter()
            .position(|m| m == model)
            .map(|i| self.ratings[i])
    }
}

/// Reads and validates a judgments file (JSONL, one judgment a line, blank lines skipped).
///
/// Errors name the file and line: `FILE:LINE: what is wrong, what was expected`.
pub fn read_judgments(path: &Path) -> Result<Vec<Judgment>, AgreementError> {
    let bytes = std::fs::read(path).map_err(AgreementError::io(path))?;
    parse_judgments(path, &bytes)
}

/// [`read_judgments`] on contents already in memory; `path` is only used in error messages.
pub fn parse_judgments(path: &Path, bytes: &[u8]) -> Result<Vec<Judgment>, AgreementError> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = match i {
            0 => raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw),
            _ => raw,
        };
        let text = std::str::from_utf8(raw).map_err(|e| {
            AgreementError::line(
                path,
                line,
                format!(
                    "not UTF-8 text (invalid byte at column {}); expected one JSON object",
                    e.valid_up_to() + 1
                ),
            )
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let mut judgment = parse_line(text).map_err(|msg| AgreementError::line(path, line, msg))?;
        judgment.line = line;
        out.push(judgment);
    }
    Ok(out)
}

/// One line's judgment, or what is wrong with it.
pub fn parse_line(text: &str) -> Result<Judgment, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        // serde_json appends " at line 1 column N": the line is the file's, so keep the column.
        let mut msg = e.to_string();
        if let Some(at) = msg.rfind(" at line ") {
            msg.truncate(at);
        }
        format!(
            "invalid JSON at column {}: {msg}; expected one judgment object per line",
            e.column()
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(format!(
            "found {}, expected a JSON object (one judgment)",
            describe(&value)
        ));
    };

    let item = item(required(&obj, "item", "a string or a number")?)?;
    let annotator = name(
        required(&obj, "annotator", "the annotator's name")?,
        "annotator",
    )?;
    if annotator.contains('|') {
        return Err(format!(
            "`annotator` is {}, which contains '|'; expected a name without it (it separates \
             the two names of an annotator pair)",
            quoted(&annotator)
        ));
    }
    let models = models(required(&obj, "models", "two distinct model names")?)?;
    let shown = match optional(&obj, "shown") {
        None => None,
        Some(v) => Some(shown(v, &models)?),
    };
    let preferred = preferred(
        required(&obj, "preferred", "one of the two models or \"tie\"")?,
        &models,
    )?;
    let confidence = small_int(
        required(&obj, "confidence", "an integer from 1 to 3")?,
        "confidence",
        CONFIDENCE_MIN,
        CONFIDENCE_MAX,
    )?;
    let ratings = ratings(
        required(&obj, "ratings", "the ratings of both models")?,
        &models,
    )?;
    let note = match optional(&obj, "note") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => return Err(format!("`note` is {}, expected a string", describe(v))),
    };
    let time = match optional(&obj, "time") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(format!(
                "`time` is {}, expected an RFC 3339 string",
                describe(v)
            ))
        }
    };
    Ok(Judgment {
        item,
        annotator,
        models,
        shown,
        preferred,
        confidence,
        ratings,
        note,
        time,
        line: 0,
    })
}

/// The judgments the statistics count: one per (annotator, item). Should a file hold several
/// judgments of the same item by the same annotator (re-judging it; the annotation tool is not
/// meant to write that), the **last one in file order wins** and the earlier ones are dropped.
/// The kept judgments are returned in the order of their positions in `judgments`.
pub fn deduplicate(judgments: &[Judgment]) -> Vec<&Judgment> {
    let mut last: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, j) in judgments.iter().enumerate() {
        last.insert((j.annotator.as_str(), j.item.as_str()), i);
    }
    judgments
        .iter()
        .enumerate()
        .filter(|(i, j)| last[&(j.annotator.as_str(), j.item.as_str())] == *i)
        .map(|(_, j)| j)
        .collect()
}

fn required<'a>(obj: &'a Map<String, Value>, field: &str, what: &str) -> Result<&'a Value, String> {
    match obj.get(field) {
        Some(v) => Ok(v),
        None => Err(format!("missing field `{field}`, expected {what}")),
    }
}

fn optional<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

fn item(v: &Value) -> Result<String, String> {
    let id = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.to_string()
            } else if let Some(i) = n.as_i64() {
                i.to_string()
            } else {
                // A float: integral ones (within f64's exact integers) without the fraction.
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                    format!("{}", f as i64)
                } else {
                    format!("{f}")
                }
            }
        }
        _ => {
            return Err(format!(
                "`item` is {}, expected a string or a number",
                describe(v)
            ))
        }
    };
    if id.is_empty() {
        return Err("`item` is \"\", expected a non-empty id".into());
    }
    Ok(id)
}

fn name(v: &Value, field: &str) -> Result<String, String> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(format!(
            "`{field}` is {}, expected a non-empty string",
            describe(v)
        )),
    }
}

fn two_names(v: &Value) -> Option<[String; 2]> {
    match v.as_array().map(Vec::as_slice) {
        Some([Value::String(a), Value::String(b)]) => Some([a.clone(), b.clone()]),
        _ => None,
    }
}

fn models(v: &Value) -> Result<[String; 2], String> {
    let bad = || {
        format!(
            "`models` is {}, expected two distinct non-empty model names, e.g. [\"M1\", \"M2\"]",
            describe(v)
        )
    };
    let [a, b] = two_names(v).ok_or_else(bad)?;
    if a.is_empty() || b.is_empty() || a == b {
        return Err(bad());
    }
    if a == TIE || b == TIE {
        return Err(format!(
            "`models` is {}: \"{TIE}\" is the `preferred` value for neither model, expected other \
             model names",
            describe(v)
        ));
    }
    Ok([a, b])
}

fn shown(v: &Value, models: &[String; 2]) -> Result<[String; 2], String> {
    match two_names(v) {
        Some([a, b])
            if (a == models[0] && b == models[1]) || (a == models[1] && b == models[0]) =>
        {
            Ok([a, b])
        }
        _ => Err(format!(
            "`shown` is {}, expected the two models ({}, {}) in the order shown",
            describe(v),
            quoted(&models[0]),
            quoted(&models[1])
        )),
    }
}

fn preferred(v: &Value, models: &[String; 2]) -> Result<Preference, String> {
    match v {
        Value::String(s) if s == TIE => Ok(Preference::Tie),
        Value::String(s) if models.contains(s) => Ok(Preference::Model(s.clone())),
        _ => Err(format!(
            "`preferred` is {}, expected one of the two models ({}, {}) or \"{TIE}\"",
            describe(v),
            quoted(&models[0]),
            quoted(&models[1])
        )),
    }
}

fn small_int(v: &Value, field: &str, lo: u8, hi: u8) -> Result<u8, String> {
    match v.as_u64() {
        Some(x) if (u64::from(lo)..=u64::from(hi)).contains(&x) => Ok(x as u8),
        _ => Err(format!(
            "`{field}` is {}, expected an integer from {lo} to {hi}",
            describe(v)
        )),
    }
}

fn ratings(v: &Value, models: &[String; 2]) -> Result<[Ratings; 2], String> {
    let Value::Object(obj) = v else {
        return Err(format!(
            "`ratings` is {}, expected an object with the ratings of {} and {}",
            describe(v),
            quoted(&models[0]),
            quoted(&models[1])
        ));
    };
    if let Some(other) = obj.keys().find(|k| !models.contains(k)) {
        return Err(format!(
            "`ratings` has an entry for {}, expected entries for the two models ({}, {}) only",
            quoted(other),
            quoted(&models[0]),
            quoted(&models[1])
        ));
    }
    let one = |model: &String| -> Result<Ratings, String> {
        let Some(r) = obj.get(model) else {
            return Err(format!(
                "`ratings` has no entry for model {}, expected ratings of both models ({}, {})",
                quoted(model),
                quoted(&models[0]),
                quoted(&models[1])
            ));
        };
        let Value::Object(r) = r else {
            return Err(format!(
                "`ratings.{model}` is {}, expected {{\"readability\": 1-7, \"coherence\": 1-7}}",
                describe(r)
            ));
        };
        let axis = |a: &str| -> Result<u8, String> {
            let field = format!("ratings.{model}.{a}");
            match r.get(a) {
                None => Err(format!(
                    "missing field `{field}`, expected an integer from {RATING_MIN} to {RATING_MAX}"
                )),
                Some(x) => small_int(x, &field, RATING_MIN, RATING_MAX),
            }
        };
        Ok(Ratings {
            readability: axis("readability")?,
            coherence: axis("coherence")?,
        })
    };
    Ok([one(&models[0])?, one(&models[1])?])
}

/// A JSON value for an error message: scalars as written (long strings cut), containers by kind.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quoted(s),
        Value::Array(a) if a.iter().all(|x| !x.is_array() && !x.is_object()) && a.len() <= 4 => {
            let parts: Vec<String> = a.iter().map(describe).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Array(a) => format!("an array of {} elements", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

fn quoted(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}
