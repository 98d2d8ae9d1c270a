//! A model directory's `generation_config.json`: the defaults transformers' `generate` takes
//! from it. Every field is optional; command-line flags override what the file sets.
//!
//! A setting transformers would apply but detox does not implement (constraints, forced
//! tokens, group beams, ...) is an error naming the field, rather than silently different
//! output.

use std::path::Path;

use serde_json::{Map, Value};

use crate::beam::EarlyStopping;

/// The settings a `generation_config.json` gave (`None`: the file does not set it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationFile {
    /// The file's `max_new_tokens`, or else its `max_length` minus the decoder start token.
    pub max_new_tokens: Option<usize>,
    pub min_new_tokens: Option<usize>,
    pub min_length: Option<usize>,
    pub do_sample: Option<bool>,
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub no_repeat_ngram_size: Option<usize>,
    pub num_beams: Option<usize>,
    pub length_penalty: Option<f64>,
    pub early_stopping: Option<EarlyStopping>,
    pub num_return_sequences: Option<usize>,
    pub decoder_start_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
}

/// Fields that change transformers' decoding when set to other than their default.
const UNSUPPORTED: &[&str] = &[
    "num_beam_groups",
    "diversity_penalty",
    "penalty_alpha",
    "typical_p",
    "epsilon_cutoff",
    "eta_cutoff",
    "min_p",
    "encoder_repetition_penalty",
    "encoder_no_repeat_ngram_size",
    "bad_words_ids",
    "force_words_ids",
    "constraints",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "forced_decoder_ids",
    "suppress_tokens",
    "begin_suppress_tokens",
    "sequence_bias",
    "exponential_decay_length_penalty",
    "renormalize_logits",
    "guidance_scale",
];

/// transformers' defaults of the [`UNSUPPORTED`] fields (a file may spell them out).
fn is_neutral(field: &str, v: &Value) -> bool {
    match (field, v) {
        (_, Value::Null) => true,
        ("num_beam_groups" | "typical_p" | "encoder_repetition_penalty" | "guidance_scale", v) => {
            v.as_f64() == Some(1.0)
        }
        (
            "diversity_penalty" | "epsilon_cutoff" | "eta_cutoff" | "encoder_no_repeat_ngram_size",
            v,
        ) => v.as_f64() == Some(0.0),
        ("renormalize_logits", v) => v.as_bool() == Some(false),
        (_, Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

impl GenerationFile {
    /// `dir/generation_config.json`, or all-`None` when the directory has none (transformers
    /// then takes the special ids from `config.json`, as the model loader does).
    pub fn from_model_dir(dir: &Path) -> Result<Self, String> {
        let path = dir.join("generation_config.json");
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the JSON text of a `generation_config.json`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let Value::Object(m) = value else {
            return Err("expected a JSON object".into());
        };
        for field in UNSUPPORTED {
            if let Some(v) = m.get(*field) {
                if !is_neutral(field, v) {
                    return Err(format!(
                        "`{field}` is set ({v}), which changes transformers' decoding and which \
                         detox does not implement; remove it to decode without it"
                    ));
                }
            }
        }
        let max_length = count(&m, "max_length")?;
        let max_new_tokens = match (count(&m, "max_new_tokens")?, max_length) {
            (Some(n), _) => Some(n),
            (None, Some(0)) => return Err("`max_length` must be at least 1".into()),
            (None, Some(l)) => Some(l - 1),
            (None, None) => None,
        };
        Ok(Self {
            max_new_tokens,
            min_new_tokens: count(&m, "min_new_tokens")?,
            min_length: count(&m, "min_length")?,
            do_sample: boolean(&m, "do_sample")?,
            temperature: number(&m, "temperature")?,
            top_k: count(&m, "top_k")?,
            top_p: number(&m, "top_p")?,
            repetition_penalty: number(&m, "repetition_penalty")?,
            no_repeat_ngram_size: count(&m, "no_repeat_ngram_size")?,
            num_beams: count(&m, "num_beams")?,
            length_penalty: number(&m, "length_penalty")?,
            early_stopping: early_stopping(&m)?,
            num_return_sequences: count(&m, "num_return_sequences")?,
            decoder_start_token_id: token_id(&m, "decoder_start_token_id")?,
            eos_token_id: token_id(&m, "eos_token_id")?,
            pad_token_id: token_id(&m, "pad_token_id")?,
        })
    }
}

/// `field` read with `get` (`None` when absent or null); a value `get` refuses is an error
/// saying it must be `expected`.
fn field<T>(
    m: &Map<String, Value>,
    field: &str,
    get: impl Fn(&Value) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, String> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => get(v)
            .map(Some)
            .ok_or_else(|| format!("`{field}` must be {expected}, got {v}")),
    }
}

fn count(m: &Map<String, Value>, name: &str) -> Result<Option<usize>, String> {
    field(
        m,
        name,
        |v| v.as_u64().map(|n| n as usize),
        "a non-negative integer",
    )
}

fn number(m: &Map<String, Value>, name: &str) -> Result<Option<f64>, String> {
    field(m, name, Value::as_f64, "a number")
}

fn boolean(m: &Map<String, Value>, name: &str) -> Result<Option<bool>, String> {
    field(m, name, Value::as_bool, "true or false")
}

/// `early_stopping`: `true`, `false` or `"never"`.
fn early_stopping(m: &Map<String, Value>) -> Result<Option<EarlyStopping>, String> {
    match m.get("early_stopping") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(true)) => Ok(Some(EarlyStopping::Yes)),
        Some(Value::Bool(false)) => Ok(Some(EarlyStopping::Heuristic)),
        Some(Value::String(s)) if s == "never" => Ok(Some(EarlyStopping::Never)),
        Some(v) => Err(format!(
            "`early_stopping` must be true, false or \"never\", got {v}"
        )),
    }
}

/// A token id, or a list holding one (transformers allows several EOS ids; detox one).
fn token_id(m: &Map<String, Value>, field: &str) -> Result<Option<u32>, String> {
    let bad = |v: &Value| format!("`{field}` must be a token id, got {v}");
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => match a.as_slice() {
            [] => Ok(None),
            [one] => one.as_u64().map(|n| Some(n as u32)).ok_or_else(|| bad(one)),
            _ => Err(format!(
                "`{field}` lists {} ids; detox decodes with one {field}",
                a.len()
            )),
        },
        Some(v) => v.as_u64().map(|n| Some(n as u32)).ok_or_else(|| bad(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_transformers_would_take_from_the_file() {
        let f = GenerationFile::parse(
            r#"{"_from_model_config": true, "decoder_start_token_id": 0, "eos_token_id": [1],
                "pad_token_id": 0, "num_beams": 4, "length_penalty": 0.6, "early_stopping": "never",
                "max_length": 64, "no_repeat_ngram_size": 3, "num_beam_groups": 1,
                "transformers_version": "4.46.3"}"#,
        )
        .unwrap();
        assert_eq!(f.num_beams, Some(4));
        assert_eq!(f.length_penalty, Some(0.6));
        assert_eq!(f.early_stopping, Some(EarlyStopping::Never));
        assert_eq!(
            f.max_new_tokens,
            Some(63),
            "max_length counts the start token"
        );
        assert_eq!(f.eos_token_id, Some(1));
        assert_eq!(f.no_repeat_ngram_size, Some(3));
        assert_eq!(f.do_sample, None);
        let f = GenerationFile::parse(r#"{"max_length": 64, "max_new_tokens": 10}"#).unwrap();
        assert_eq!(
            f.max_new_tokens,
            Some(10),
            "max_new_tokens wins over max_length"
        );
        let f = GenerationFile::parse(r#"{"early_stopping": true}"#).unwrap();
        assert_eq!(f.early_stopping, Some(EarlyStopping::Yes));
    }

    #[test]
    fn bad_or_unsupported_fields_are_named() {
        let err = |t: &str| GenerationFile::parse(t).unwrap_err();
        assert!(
            err(r#"{"num_beams": "four"}"#).contains("`num_beams` must be a non-negative integer")
        );
        assert!(err(r#"{"early_stopping": "soon"}"#).contains("`early_stopping`"));
        assert!(err(r#"{"eos_token_id": [1, 2]}"#).contains("lists 2 ids"));
        assert!(err(r#"{"forced_bos_token_id": 5}"#).contains("`forced_bos_token_id` is set"));
        assert!(err(r#"{"num_beam_groups": 2}"#).contains("num_beam_groups"));
        assert!(err("[1]").contains("object"));
        assert!(err("{").contains("JSON"));
        // spelled-out defaults are fine
        GenerationFile::parse(
            r#"{"typical_p": 1.0, "suppress_tokens": [], "renormalize_logits": false}"#,
        )
        .unwrap();
    }
}
