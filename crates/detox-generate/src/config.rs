//! Generation settings with transformers' meaning, and their validation.

use burn::prelude::*;
use detox_models::T5ForConditionalGeneration;

use crate::beam::EarlyStopping;

/// Generation settings, with transformers' meaning (`top_k` 0 and `top_p` 1.0 are "off").
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    pub min_new_tokens: usize,
    /// transformers' `min_length`: total decoder length including the start token.
    pub min_length: usize,
    pub do_sample: bool,
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    /// transformers' `repetition_penalty` (1.0 = off).
    pub repetition_penalty: f64,
    /// transformers' `no_repeat_ngram_size` (0 = off).
    pub no_repeat_ngram_size: usize,
    /// Beam search when > 1 (transformers' `num_beams`).
    pub num_beams: usize,
    /// Finished beam hypotheses score `sum_logprobs / length ** length_penalty`.
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
    /// Sequences returned per prompt (at most `num_beams` with beam search).
    pub num_return_sequences: usize,
    /// Start / EOS / padding ids; `None` takes the model config's.
    pub special_tokens: Option<SpecialTokens>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 20,
            min_new_tokens: 0,
            min_length: 0,
            do_sample: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
            num_beams: 1,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            num_return_sequences: 1,
            special_tokens: None,
        }
    }
}

impl GenerationConfig {
    /// New tokens before which EOS is suppressed.
    pub fn effective_min_new_tokens(&self) -> usize {
        self.min_new_tokens.max(self.min_length.saturating_sub(1))
    }

    /// The special token ids decoding uses with `model`.
    pub fn special_tokens<B: Backend>(
        &self,
        model: &T5ForConditionalGeneration<B>,
    ) -> SpecialTokens {
        self.special_tokens
            .unwrap_or_else(|| SpecialTokens::of_t5(model))
    }

    /// One message per invalid setting or combination (named as transformers' fields).
    pub fn validate(&self) -> Result<(), String> {
        if self.max_new_tokens == 0 {
            return Err("max_new_tokens must be at least 1".into());
        }
        if self.do_sample && !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature must be > 0, got {}", self.temperature));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.num_beams == 0 {
            return Err("num_beams must be at least 1".into());
        }
        if !self.length_penalty.is_finite() {
            return Err(format!(
                "length_penalty must be a finite number, got {}",
                self.length_penalty
            ));
        }
        if self.num_return_sequences == 0 {
            return Err("num_return_sequences must be at least 1".into());
        }
        if self.num_beams > 1 && self.do_sample {
            return Err(
                "do_sample with num_beams > 1 (beam sampling) is not implemented; use one or the other"
                    .into(),
            );
        }
        if self.num_beams > 1 && self.num_return_sequences > self.num_beams {
            return Err(format!(
                "num_return_sequences ({}) must be at most num_beams ({})",
                self.num_return_sequences, self.num_beams
            ));
        }
        if self.num_beams == 1 && !self.do_sample && self.num_return_sequences > 1 {
            return Err(format!(
                "greedy decoding returns one sequence; num_return_sequences {} needs num_beams >= {} or do_sample",
                self.num_return_sequences, self.num_return_sequences
            ));
        }
        Ok(())
    }
}

/// Token ids of the special tokens decoding needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    pub decoder_start: u32,
    pub eos: u32,
    pub pad: u32,
}

impl SpecialTokens {
    pub fn of_t5<B: Backend>(model: &T5ForConditionalGeneration<B>) -> Self {
        let c = &model.config;
        Self {
            decoder_start: c.decoder_start_token_id(),
            eos: c.eos_token_id,
            pad: c.pad_token_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut GenerationConfig)) -> Result<(), String> {
        let mut c = GenerationConfig::default();
        f(&mut c);
        c.validate()
    }

    #[test]
    fn invalid_combinations_are_refused_with_the_field_named() {
        assert!(check(|_| {}).is_ok());
        let err = |f: fn(&mut GenerationConfig)| check(f).unwrap_err();
        assert!(err(|c| c.num_beams = 0).contains("num_beams"));
        assert!(err(|c| {
            c.num_beams = 2;
            c.num_return_sequences = 3;
        })
        .contains("num_return_sequences (3) must be at most num_beams (2)"));
        assert!(err(|c| {
            c.num_beams = 4;
            c.do_sample = true;
        })
        .contains("beam sampling"));
        assert!(err(|c| c.repetition_penalty = -1.0).contains("repetition_penalty"));
        assert!(err(|c| c.length_penalty = f64::NAN).contains("length_penalty"));
        assert!(err(|c| c.num_return_sequences = 2).contains("greedy"));
        assert!(check(|c| {
            c.num_beams = 4;
            c.num_return_sequences = 4;
            c.length_penalty = -2.0;
        })
        .is_ok());
        assert!(check(|c| {
            c.do_sample = true;
            c.num_return_sequences = 3;
        })
        .is_ok());
    }
}
