//! The lab's data: DialogSum rows filtered and split as `build_dataset` does, the prompts as
//! query ids and text, the batch of each PPO step, the response lengths, and batched generation
//! of the responses. Everything random here is a function of `(seed, step)`, so a resumed run
//! draws what an uninterrupted one would.

use burn::prelude::*;
use detox_generate::generate_with_limits;
use detox_hub::{HubError, TextTokenizer};
use detox_models::T5ForConditionalGeneration;
use detox_train::data::{epoch_order, Example};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::{DataConfig, GenerationSettings};
use super::error::LabError;

/// One prompt: its ids (`tokenizer.encode(prompt)`, EOS included) and the lab's `query` text
/// (`tokenizer.decode(input_ids)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub input_ids: Vec<u32>,
    pub text: String,
}

/// The lab's `build_dataset`: the rows with `min_chars < len(dialogue) <= max_chars`
/// (characters, as Python's `len`), split without shuffling.
pub fn split_dialogues(rows: &[Example], cfg: &DataConfig) -> (Vec<Example>, Vec<Example>) {
    let kept: Vec<Example> = rows
        .iter()
        .filter(|r| {
            let n = r.dialogue.chars().count();
            n > cfg.min_chars && n <= cfg.max_chars
        })
        .cloned()
        .collect();
    // sklearn / datasets: n_test = ceil(test_size * n)
    let n_test = (cfg.test_fraction * kept.len() as f64).ceil() as usize;
    let n_train = kept.len() - n_test.min(kept.len());
    let test = kept[n_train..].to_vec();
    let mut train = kept;
    train.truncate(n_train);
    (train, test)
}

/// `tokenizer.decode(ids)`, with the special tokens (`<pad>`, `</s>`) as the lab's texts have
/// them, or without (`skip_special_tokens=True`).
pub(crate) fn decode_text(
    tok: &TextTokenizer,
    ids: &[u32],
    with_special_tokens: bool,
) -> Result<String, HubError> {
    if with_special_tokens {
        tok.decode_with_special(ids)
    } else {
        tok.decode(ids)
    }
}

/// The prompts of `rows` (the config's template around each dialogue), encoded, with their text
/// decoded back as the lab does.
pub(crate) fn encode_queries(
    rows: &[Example],
    cfg: &DataConfig,
    tok: &TextTokenizer,
    special_in_text: bool,
) -> Result<Vec<Query>, LabError> {
    let template = cfg.template()?;
    rows.iter()
        .map(|r| {
            let input_ids = tok.encode(&template.render(&r.dialogue))?;
            let text = decode_text(tok, &input_ids, special_in_text)?;
            Ok(Query { input_ids, text })
        })
        .collect()
}

/// The example indices of PPO step `step` (0-based): trl's dataloader (`shuffle=True`,
/// `drop_last=True`) as a seeded order per epoch.
pub fn step_indices(n: usize, batch_size: usize, seed: u64, step: usize) -> Vec<usize> {
    let per_epoch = n / batch_size;
    let epoch = step / per_epoch;
    let b = step % per_epoch;
    epoch_order(n, seed, epoch as u64)[b * batch_size..(b + 1) * batch_size].to_vec()
}

/// The random stream of `(seed, step)` for one use (`salt`): 1 a step's lengths and sampling,
/// 3 the comparison, 7 the toxicity measurement.
pub(crate) fn step_rng(seed: u64, step: usize, salt: u64) -> StdRng {
    StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03))
            .wrapping_add(step as u64 + 1),
    )
}

/// trl's `LengthSampler(min, max)`: uniform in `[min, max)`.
pub fn sample_lengths(n: usize, [lo, hi]: [usize; 2], rng: &mut StdRng) -> Vec<usize> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Generates one response per query in a single batched call, each with its own length limit:
/// `[decoder_start, t1, ..., tk(, eos)]` as trl's `generate` returns it for an encoder-decoder
/// (start token kept, cut after the first EOS).
pub fn generate_responses<B: Backend>(
    model: &T5ForConditionalGeneration<B>,
    queries: &[&[u32]],
    limits: &[usize],
    settings: &GenerationSettings,
    rng: &mut StdRng,
    device: &B::Device,
) -> Vec<Vec<u32>> {
    let pad = model.config.pad_token_id;
    let rows: Vec<Vec<u32>> = queries.iter().map(|q| q.to_vec()).collect();
    let batch = detox_hub::tokenizer::pad_batch(rows, pad);
    let (ids, mask) = batch.tensors::<B>(device);
    let max = limits.iter().copied().max().unwrap_or(1);
    let start = model.config.decoder_start_token_id();
    generate_with_limits(model, ids, mask, &settings.config(max), limits, rng)
        .into_iter()
        .map(|toks| std::iter::once(start).chain(toks).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(chars: usize) -> Example {
        Example {
            id: None,
            dialogue: "é".repeat(chars),
            summary: "s".into(),
            topic: None,
        }
    }

    #[test]
    fn split_keeps_200_to_1000_characters_and_cuts_80_20_in_order() {
        // characters, not bytes: "é" is 2 bytes
        let rows: Vec<Example> = [200, 201, 1000, 1001, 500, 300, 250, 999, 400, 10, 600]
            .iter()
            .map(|&n| ex(n))
            .collect();
        let (train, test) = split_dialogues(&rows, &DataConfig::default());
        let lens = |v: &[Example]| {
            v.iter()
                .map(|e| e.dialogue.chars().count())
                .collect::<Vec<_>>()
        };
        // kept: 201 1000 500 300 250 999 400 600 (8) → test = ceil(1.6) = 2, the last two
        assert_eq!(lens(&train), vec![201, 1000, 500, 300, 250, 999]);
        assert_eq!(lens(&test), vec![400, 600]);
    }

    #[test]
    fn step_indices_cover_each_epoch_once_and_drop_the_rest() {
        let (n, bs) = (10, 3);
        let mut seen: Vec<usize> = (0..3).flat_map(|s| step_indices(n, bs, 5, s)).collect();
        assert_eq!(seen.len(), 9);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9, "no index twice within an epoch");
        // deterministic in (seed, step): a resumed run sees the same batches
        assert_eq!(step_indices(n, bs, 5, 4), step_indices(n, bs, 5, 4));
        assert_ne!(step_indices(n, bs, 5, 3), step_indices(n, bs, 6, 3));
    }

    #[test]
    fn sampled_lengths_stay_in_the_half_open_range() {
        let mut rng = step_rng(1, 0, 1);
        let l = sample_lengths(2000, [100, 400], &mut rng);
        assert!(l.iter().all(|&x| (100..400).contains(&x)));
        assert!(l.contains(&100) && l.contains(&399));
    }
}
