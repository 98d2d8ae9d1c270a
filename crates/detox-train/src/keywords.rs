//! A keyword objective for summarizers trained from scratch: the source is the dialogue under
//! its own instruction ([`KEYWORDS_TEMPLATE`]), the target the words of the reference summary
//! that also occur in the dialogue, in the summary's order, each once, leaving out the words
//! that occur in many summaries ([`SummaryWordFrequency`]: "#Person1#", "the", "talking", ...).
//!
//! Why: a from-scratch T5 on DialogSum learns the summaries' language and ignores the encoder for
//! thousands of steps, and copying dialogue prefixes (`--copy-prefix`) teaches cross-attention
//! to find positions in short sources, not to pick the content of long ones. Every keyword
//! target token is in the source and none can be guessed from the target's own prefix, so the
//! loss falls only by reading the dialogue, and even nearly uniform cross-attention (the mean of
//! the source's token states) already points at the right tokens: the path from "attend to a
//! content word" to "write it" gets a gradient from the first step. That path is the one the
//! summaries need. Mixed into fine-tuning by `detox finetune --keywords`.

use std::collections::{HashMap, HashSet};

/// The instruction of keyword examples: the lab's summary prompt's layout with another task.
pub const KEYWORDS_TEMPLATE: &str =
    "List the key words of the following conversation.\n\n{dialogue}\n\nKey words: ";

/// A summary's words as the keyword objective compares them: split at whitespace, stripped of
/// leading and trailing ASCII punctuation, lowercased; empty ones dropped.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace().filter_map(|w| {
        let w = trim_punctuation(w);
        (!w.is_empty()).then(|| w.to_lowercase())
    })
}

/// `word` without its leading and trailing ASCII punctuation (`#` kept: it is part of the speaker
/// tags).
fn trim_punctuation(word: &str) -> &str {
    word.trim_matches(|c: char| c.is_ascii_punctuation() && c != '#')
}

/// In how many summaries each word occurs (document frequency).
#[derive(Debug, Clone, Default)]
pub struct SummaryWordFrequency {
    docs: usize,
    df: HashMap<String, usize>,
}

impl SummaryWordFrequency {
    pub fn new<'a>(summaries: impl IntoIterator<Item = &'a str>) -> Self {
        let mut f = Self::default();
        for s in summaries {
            f.docs += 1;
            for w in words(s).collect::<HashSet<_>>() {
                *f.df.entry(w).or_default() += 1;
            }
        }
        f
    }

    /// Whether `word` occurs in more than `max_share` of the summaries.
    pub fn is_common(&self, word: &str, max_share: f64) -> bool {
        let df = self.df.get(word).copied().unwrap_or(0);
        df as f64 > max_share * self.docs.max(1) as f64
    }
}

/// Words occurring in more than this share of the training summaries are not keywords.
pub const MAX_SHARE: f64 = 0.05;

/// The keyword target of one example: the summary's words that occur in the dialogue and are not
/// common ([`MAX_SHARE`]), in the summary's order, each once, joined by spaces (the summary's
/// own spelling of its first occurrence). Empty when the summary has none.
pub fn keyword_target(summary: &str, dialogue: &str, freq: &SummaryWordFrequency) -> String {
    let in_dialogue: HashSet<String> = words(dialogue).collect();
    let mut seen = HashSet::new();
    let mut out: Vec<&str> = Vec::new();
    for raw in summary.split_whitespace().map(trim_punctuation) {
        if raw.is_empty() {
            continue;
        }
        let w = raw.to_lowercase();
        if in_dialogue.contains(&w) && !freq.is_common(&w, MAX_SHARE) && seen.insert(w) {
            out.push(raw);
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_rare_summary_words_found_in_the_dialogue_once_in_order() {
        let summaries = [
            "#Person1# and #Person2# talk about the party.",
            "#Person1# and #Person2# talk about the weather.",
            "#Person1# asks #Person2# about the train.",
            "#Person1# is late.",
        ];
        let freq = SummaryWordFrequency::new(summaries);
        let dialogue =
            "#Person1#: Is the train to Boston late? #Person2#: The Boston train is late, sorry.";
        let s = "#Person1# asks why the Boston train is late; the train, #Person2# says, is late.";
        // Of 4 summaries, a word in one is in more than 5% of them: only "Boston" (in none of
        // them) is rare; "asks", "why", "says" are not in the dialogue.
        assert_eq!(keyword_target(s, dialogue, &freq), "Boston");
        // Where only the tags and "and talk about the" are common, "train", "is", "late" count.
        let many: Vec<String> = (0..100)
            .map(|i| format!("#Person1# and #Person2# talk about the thing{i}."))
            .collect();
        let freq = SummaryWordFrequency::new(many.iter().map(String::as_str));
        assert_eq!(keyword_target(s, dialogue, &freq), "Boston train is late");
    }

    #[test]
    fn words_strip_punctuation_keep_speaker_tags_and_lowercase() {
        let w: Vec<String> = words("Hello, #Person2#! It's (fine).").collect();
        assert_eq!(w, ["hello", "#person2#", "it's", "fine"]);
        let f = SummaryWordFrequency::new(["a b", "a c", "a"]);
        assert!(f.is_common("a", 0.5));
        assert!(!f.is_common("b", 0.5));
        assert!(!f.is_common("zzz", 0.0));
    }
}
