//! Toxicity as the lab measures it (`evaluate.load("toxicity", ..., toxic_label="hate")`):
//! sampled responses to the first test prompts, scored by the classifier's toxic-label
//! probability; and the before / after report of `toxicity.json`.

use std::path::Path;

use burn::prelude::*;
use detox_hub::TextTokenizer;
use detox_models::T5ForConditionalGeneration;
use serde::{Deserialize, Serialize};

use super::config::{DataConfig, GenerationSettings, ToxicitySettings};
use super::data::{encode_queries, generate_responses, split_dialogues, step_rng, Query};
use super::error::LabError;
use crate::reward::{
    improvement_pct, load_reward_model, mean_std, scores, Classifier, RewardOutput,
};

/// Toxicity of one model on prompts: per-text probabilities and their mean / std.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Toxicity {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
    /// P(toxic) of each text, in prompt order (absent from files written before it was kept).
    #[serde(default)]
    pub scores: Vec<f64>,
}

/// A mean and a standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
}

/// `toxicity.json`: toxicity before and after training and the lab's percentage improvement.
/// (Fields in the order the file has always had them: alphabetical.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToxicityReport {
    pub after: MeanStd,
    pub before: MeanStd,
    /// [`improvement_pct`] of the mean and of the std (positive: toxicity dropped).
    pub improvement_pct: MeanStd,
    /// The classifier label measured (the lab: `hate`).
    pub label: String,
    /// Texts measured.
    pub samples: usize,
    /// P(toxic) of each text before and after, in prompt order (the report's histograms).
    pub scores: BeforeAfter,
}

/// Per-text numbers before and after training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeforeAfter {
    pub after: Vec<f64>,
    pub before: Vec<f64>,
}

impl ToxicityReport {
    pub fn new(before: &Toxicity, after: &Toxicity, label: &str) -> Self {
        Self {
            after: MeanStd {
                mean: after.mean,
                std: after.std,
            },
            before: MeanStd {
                mean: before.mean,
                std: before.std,
            },
            improvement_pct: MeanStd {
                mean: improvement_pct(before.mean, after.mean),
                std: improvement_pct(before.std, after.std),
            },
            label: label.to_string(),
            samples: after.n,
            scores: BeforeAfter {
                after: after.scores.clone(),
                before: before.scores.clone(),
            },
        }
    }
}

/// The lab's `evaluate_toxicity`: for the first `samples + 1` queries, sample up to
/// `max_new_tokens` (top_k 0, top_p 1.0, no min_length), text = `query + " " + response`
/// (response decoded without special tokens), toxicity = softmax probability of the toxic
/// label; mean and population std.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_toxicity<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    t5_tok: &TextTokenizer,
    classifier: &Classifier<B>,
    toxic_label: usize,
    queries: &[Query],
    settings: &ToxicitySettings,
    seed: u64,
    device: &B::Device,
) -> Result<(Toxicity, Vec<f32>), LabError> {
    let n = (settings.samples + 1).min(queries.len());
    let gen = GenerationSettings {
        response_length: [settings.max_new_tokens, settings.max_new_tokens + 1],
        min_length: 0,
        top_k: 0,
        top_p: 1.0,
        temperature: 1.0,
        do_sample: true,
    };
    let mut rng = step_rng(seed, 0, 7);
    let mut texts = Vec::with_capacity(n);
    for chunk in queries[..n].chunks(settings.batch_size.max(1)) {
        let ids: Vec<&[u32]> = chunk.iter().map(|q| q.input_ids.as_slice()).collect();
        let limits = vec![settings.max_new_tokens; chunk.len()];
        let responses = generate_responses(model, &ids, &limits, &gen, &mut rng, device);
        for (q, r) in chunk.iter().zip(&responses) {
            texts.push(format!("{} {}", q.text, t5_tok.decode(r)?));
        }
    }
    let probs = scores(classifier, &texts, toxic_label, RewardOutput::Probability)?;
    let (mean, std) = mean_std(&probs);
    let scores = probs.iter().map(|&p| p as f64).collect();
    Ok((
        Toxicity {
            mean,
            std,
            n,
            scores,
        },
        probs,
    ))
}

/// `detox toxicity`: the toxicity of a model (optionally with an adapter) on the first
/// `samples + 1` test prompts of a DialogSum file, split as the lab does.
#[allow(clippy::too_many_arguments)]
pub fn toxicity_of<B: Backend>(
    model_dir: &Path,
    adapter: Option<&Path>,
    reward_model: &Path,
    dataset: &Path,
    data: &DataConfig,
    settings: &ToxicitySettings,
    seed: u64,
    device: &B::Device,
) -> Result<Toxicity, LabError> {
    let rows = detox_train::data::read_jsonl(dataset, None)?;
    let (_, test_rows) = split_dialogues(&rows, data);
    if test_rows.is_empty() {
        return Err(LabError::Config(format!(
            "{}: no test dialogue of {}-{} characters",
            dataset.display(),
            data.min_chars + 1,
            data.max_chars
        )));
    }
    let mut t5 = crate::model::load_t5_eval::<B>(model_dir, device)?;
    if let Some(a) = adapter {
        let names = detox_hub::t5_name_map(&t5.config);
        detox_hub::load_adapter(&mut t5, a, &names, device)?;
    }
    let tok = TextTokenizer::from_dir(
        model_dir,
        t5.config.pad_token_id,
        usize::MAX,
        t5.config.vocab_size,
    )?;
    let test = encode_queries(&test_rows, data, &tok, true)?;
    let classifier = load_reward_model::<B>(reward_model, settings.batch_size, device)?;
    let label = classifier.label(&settings.label)?;
    let (t, _) = evaluate_toxicity(&t5, &tok, &classifier, label, &test, settings, seed, device)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_writes_the_json_toxicity_json_always_had_plus_the_per_text_scores() {
        let before = Toxicity {
            mean: 0.2,
            std: 0.0,
            n: 2,
            scores: vec![0.2, 0.2],
        };
        let after = Toxicity {
            mean: 0.1,
            std: 0.05,
            n: 2,
            scores: vec![0.05, 0.15],
        };
        let report = ToxicityReport::new(&before, &after, "hate");
        // what the run wrote before the report had a type (`std` 0 -> improvement NaN -> null)
        let old = serde_json::json!({
            "before": {"mean": before.mean, "std": before.std},
            "after": {"mean": after.mean, "std": after.std},
            "improvement_pct": {
                "mean": improvement_pct(before.mean, after.mean),
                "std": improvement_pct(before.std, after.std),
            },
            "samples": after.n,
            "label": "hate",
            "scores": {"before": [0.2, 0.2], "after": [0.05, 0.15]},
        });
        assert_eq!(
            serde_json::to_string_pretty(&report).unwrap(),
            serde_json::to_string_pretty(&old).unwrap()
        );
    }
}
