//! Beam bookkeeping of transformers 4.46.3 (`BeamHypotheses` and `BeamSearchScorer.process` /
//! `finalize`), on the host and independent of the model: which candidates continue, which
//! hypotheses are finished, when a prompt is done, and which hypotheses are returned.
//!
//! Lengths follow transformers for an encoder-decoder model (decoder prompt = the start token):
//! a hypothesis finished by EOS at the `n`-th new token has length `n` (EOS counted), an open
//! beam at the end has length `max_new_tokens`.

use std::fmt;
use std::str::FromStr;

/// transformers' `early_stopping`: when a prompt with `num_beams` finished hypotheses is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// `True`: as soon as `num_beams` hypotheses are finished.
    Yes,
    /// `False` (transformers' default): when no open beam can beat the worst finished
    /// hypothesis, judged at the current length.
    #[default]
    Heuristic,
    /// `"never"`: when no open beam can beat it at the most favourable length.
    Never,
}

impl FromStr for EarlyStopping {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "true" => Ok(Self::Yes),
            "false" => Ok(Self::Heuristic),
            "never" => Ok(Self::Never),
            _ => Err(format!(
                "early_stopping must be true, false or never, got {s:?}"
            )),
        }
    }
}

impl fmt::Display for EarlyStopping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Yes => "true",
            Self::Heuristic => "false",
            Self::Never => "never",
        })
    }
}

/// One returned sequence: the new tokens (EOS included when it finished with one) and
/// transformers' `sequences_scores` entry, `sum_logprobs / length ** length_penalty`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub tokens: Vec<u32>,
    pub score: f64,
}

/// What the scorer needs to know about the search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamSettings {
    pub num_beams: usize,
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
    pub num_return_sequences: usize,
    pub max_new_tokens: usize,
    pub eos: u32,
}

/// A candidate continuation: running sum of log-probabilities, token, and the beam (of this
/// prompt, `0..num_beams`) it extends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub score: f32,
    pub token: u32,
    pub beam: usize,
}

/// transformers' `BeamHypotheses`: the best `num_beams` finished hypotheses of one prompt.
#[derive(Debug, Clone)]
struct BeamHypotheses {
    settings: BeamSettings,
    /// `(score, tokens)` in insertion order (with the evicted ones removed), as transformers.
    beams: Vec<(f64, Vec<u32>)>,
    worst_score: f64,
}

impl BeamHypotheses {
    fn new(settings: BeamSettings) -> Self {
        Self {
            settings,
            beams: Vec::new(),
            worst_score: 1e9,
        }
    }

    fn add(&mut self, tokens: Vec<u32>, sum_logprobs: f64, generated_len: usize) {
        let score = sum_logprobs / (generated_len as f64).powf(self.settings.length_penalty);
        if self.beams.len() < self.settings.num_beams || score > self.worst_score {
            self.beams.push((score, tokens));
            if self.beams.len() > self.settings.num_beams {
                // Python sorts (score, index) pairs: the lowest score, the first on ties, goes
                let mut order: Vec<usize> = (0..self.beams.len()).collect();
                order.sort_by(|&a, &b| self.beams[a].0.total_cmp(&self.beams[b].0).then(a.cmp(&b)));
                self.worst_score = self.beams[order[1]].0;
                self.beams.remove(order[0]);
            } else {
                self.worst_score = self.worst_score.min(score);
            }
        }
    }

    /// `is_done(best_sum_logprobs, cur_len)` with `cur_len - decoder_prompt_len` = `generated_len`.
    fn is_done(&self, best_sum_logprobs: f64, generated_len: usize) -> bool {
        let s = &self.settings;
        if self.beams.len() < s.num_beams {
            return false;
        }
        let len = match s.early_stopping {
            EarlyStopping::Yes => return true,
            EarlyStopping::Never if s.length_penalty > 0.0 => s.max_new_tokens,
            EarlyStopping::Heuristic | EarlyStopping::Never => generated_len,
        };
        let highest_attainable = best_sum_logprobs / (len as f64).powf(s.length_penalty);
        self.worst_score >= highest_attainable
    }
}

/// transformers' `BeamSearchScorer` for a batch of prompts.
#[derive(Debug, Clone)]
pub struct BeamScorer {
    settings: BeamSettings,
    hyps: Vec<BeamHypotheses>,
    done: Vec<bool>,
}

impl BeamScorer {
    pub fn new(batch: usize, settings: BeamSettings) -> Self {
        Self {
            settings,
            hyps: vec![BeamHypotheses::new(settings); batch],
            done: vec![false; batch],
        }
    }

    /// Candidates to keep per prompt and step: `2 * num_beams` for one EOS id.
    pub fn candidates_per_step(&self) -> usize {
        2 * self.settings.num_beams
    }

    pub fn is_done(&self, prompt: usize) -> bool {
        self.done[prompt]
    }

    /// One step of prompt `prompt` (`BeamSearchScorer.process`): `candidates` are its best
    /// continuations, best first; `beam_tokens[b]` are beam `b`'s new tokens so far and
    /// `generated_len` the new-token count including this step's. An EOS candidate ranked in
    /// the first `num_beams` finishes its beam as a hypothesis (an EOS ranked lower is skipped);
    /// the first `num_beams` other candidates are the next beams, returned in order.
    /// Afterwards the prompt may be done ([`Self::is_done`]).
    pub fn process(
        &mut self,
        prompt: usize,
        candidates: &[Candidate],
        beam_tokens: &[Vec<u32>],
        generated_len: usize,
    ) -> Vec<Candidate> {
        let s = self.settings;
        assert!(!self.done[prompt], "process called for a finished prompt");
        let mut next = Vec::with_capacity(s.num_beams);
        for (rank, c) in candidates.iter().enumerate() {
            if c.token == s.eos {
                if rank >= s.num_beams {
                    continue;
                }
                let mut tokens = beam_tokens[c.beam].clone();
                tokens.push(s.eos);
                self.hyps[prompt].add(tokens, c.score as f64, generated_len);
            } else {
                next.push(*c);
            }
            if next.len() == s.num_beams {
                break;
            }
        }
        assert_eq!(
            next.len(),
            s.num_beams,
            "at most num_beams of the 2*num_beams candidates can be EOS"
        );
        let best = candidates
            .iter()
            .map(|c| c.score)
            .fold(f32::NEG_INFINITY, f32::max);
        self.done[prompt] = self.hyps[prompt].is_done(best as f64, generated_len);
        next
    }

    /// `finalize`: a prompt not yet done adds its open beams (`(tokens, running score)`, length
    /// `tokens.len()`); then each prompt's best `num_return_sequences` hypotheses, best first
    /// (on equal scores the later-added first, as Python's stable sort and `pop()`).
    pub fn finalize(
        mut self,
        mut open: impl FnMut(usize) -> Vec<(Vec<u32>, f32)>,
    ) -> Vec<Vec<Hypothesis>> {
        let keep = self.settings.num_return_sequences;
        (0..self.hyps.len())
            .map(|p| {
                let hyps = &mut self.hyps[p];
                if !self.done[p] {
                    for (tokens, score) in open(p) {
                        let len = tokens.len();
                        hyps.add(tokens, score as f64, len);
                    }
                }
                let mut sorted = std::mem::take(&mut hyps.beams);
                sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
                sorted
                    .into_iter()
                    .rev()
                    .take(keep)
                    .map(|(score, tokens)| Hypothesis { tokens, score })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(
        num_beams: usize,
        early_stopping: EarlyStopping,
        length_penalty: f64,
    ) -> BeamSettings {
        BeamSettings {
            num_beams,
            length_penalty,
            early_stopping,
            num_return_sequences: num_beams,
            max_new_tokens: 10,
            eos: 1,
        }
    }

    fn cand(score: f32, token: u32, beam: usize) -> Candidate {
        Candidate { score, token, beam }
    }

    #[test]
    fn early_stopping_parses_transformers_values() {
        assert_eq!("true".parse::<EarlyStopping>(), Ok(EarlyStopping::Yes));
        assert_eq!(
            "False".parse::<EarlyStopping>(),
            Ok(EarlyStopping::Heuristic)
        );
        assert_eq!("never".parse::<EarlyStopping>(), Ok(EarlyStopping::Never));
        assert!("sometimes".parse::<EarlyStopping>().is_err());
        assert_eq!(EarlyStopping::Never.to_string(), "never");
    }

    #[test]
    fn hypotheses_keep_the_best_and_track_the_worst() {
        let mut h = BeamHypotheses::new(settings(2, EarlyStopping::Heuristic, 1.0));
        h.add(vec![5, 1], -4.0, 2); // -2.0
        assert_eq!(h.worst_score, -2.0);
        h.add(vec![6, 1], -3.0, 3); // -1.0
        assert_eq!(h.worst_score, -2.0);
        h.add(vec![7, 1], -9.0, 3); // -3.0: worse than the worst of a full set, not added
        assert_eq!(h.beams.len(), 2);
        h.add(vec![8, 8, 1], -4.5, 3); // -1.5 evicts -2.0; the worst is now -1.5
        let scores: Vec<f64> = h.beams.iter().map(|b| b.0).collect();
        assert_eq!(scores, vec![-1.0, -1.5]);
        assert_eq!(h.worst_score, -1.5);
    }

    #[test]
    fn length_penalty_divides_by_the_length_to_its_power() {
        let mut h = BeamHypotheses::new(settings(1, EarlyStopping::Heuristic, 2.0));
        h.add(vec![1], -8.0, 4);
        assert_eq!(h.beams[0].0, -0.5);
        let mut h = BeamHypotheses::new(settings(1, EarlyStopping::Heuristic, 0.0));
        h.add(vec![1], -8.0, 4);
        assert_eq!(h.beams[0].0, -8.0);
    }

    #[test]
    fn is_done_follows_each_early_stopping_rule() {
        // one finished hypothesis with score -1.0 (sum -3 over 3 tokens)
        let full = |es, lp| {
            let mut h = BeamHypotheses::new(settings(1, es, lp));
            h.add(vec![2, 2, 1], -3.0 * 3f64.powf(lp) / 3.0, 3);
            h
        };
        let h = full(EarlyStopping::Yes, 1.0);
        assert!(h.is_done(-0.1, 3));
        // heuristic: an open beam with sum -4 at length 5 reaches -0.8 > -1.0, not done
        let h = full(EarlyStopping::Heuristic, 1.0);
        assert!((h.worst_score + 1.0).abs() < 1e-12);
        assert!(!h.is_done(-4.0, 5));
        assert!(h.is_done(-6.0, 5));
        // never with a positive penalty judges at max_new_tokens (10): -9/10 > -1.0, not done
        let h = full(EarlyStopping::Never, 1.0);
        assert!(!h.is_done(-9.0, 5));
        assert!(h.is_done(-11.0, 5));
        // never with a non-positive penalty judges at the current length
        let mut h = BeamHypotheses::new(settings(1, EarlyStopping::Never, 0.0));
        h.add(vec![1], -1.0, 1);
        assert!(!h.is_done(-0.5, 5));
        assert!(h.is_done(-2.0, 5));
        // fewer than num_beams finished is never done
        let h = BeamHypotheses::new(settings(2, EarlyStopping::Yes, 1.0));
        assert!(!h.is_done(-100.0, 1));
    }

    #[test]
    fn process_finishes_top_ranked_eos_and_skips_low_ranked_eos() {
        let mut s = BeamScorer::new(1, settings(2, EarlyStopping::Heuristic, 1.0));
        let beams = vec![vec![4], vec![5]];
        let cands = [
            cand(-1.0, 1, 1), // EOS ranked 0: finishes beam 1 as [5, 1]
            cand(-1.5, 7, 0),
            cand(-2.0, 1, 0), // EOS ranked 2 (>= num_beams): skipped
            cand(-2.5, 8, 1),
        ];
        let next = s.process(0, &cands, &beams, 2);
        assert_eq!(next, vec![cand(-1.5, 7, 0), cand(-2.5, 8, 1)]);
        assert_eq!(s.hyps[0].beams, vec![(-0.5, vec![5, 1])]);
        assert!(!s.is_done(0));
    }

    #[test]
    fn finalize_adds_open_beams_and_returns_best_first() {
        let mut st = settings(2, EarlyStopping::Yes, 1.0);
        st.num_return_sequences = 2;
        let mut s = BeamScorer::new(2, st);
        let cands = [
            cand(-0.2, 1, 0),
            cand(-0.3, 1, 1),
            cand(-0.4, 3, 0),
            cand(-0.5, 4, 1),
        ];
        s.process(0, &cands, &[vec![], vec![]], 1);
        // prompt 0: two finished hypotheses of length 1, done at once
        assert!(s.is_done(0));
        let out = s.finalize(|p| {
            assert_eq!(p, 1, "done prompts add no open beams");
            vec![(vec![9, 9], -3.0), (vec![8, 8], -1.0)]
        });
        assert_eq!(out[0][0].tokens, vec![1]);
        assert!((out[0][0].score + 0.2).abs() < 1e-6);
        assert_eq!(
            out[1][0],
            Hypothesis {
                tokens: vec![8, 8],
                score: -0.5
            }
        );
        assert_eq!(
            out[1][1],
            Hypothesis {
                tokens: vec![9, 9],
                score: -1.5
            }
        );
    }
}
