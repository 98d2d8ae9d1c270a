//! rouge_score's default tokenizer (`rouge_score.tokenize.tokenize`).

use crate::porter::PorterStemmer;

/// Tokenizes `text` exactly like rouge_score 0.1.2's `DefaultTokenizer(use_stemmer)`:
///
/// 1. lowercase (full Unicode lowercasing, as Python's `str.lower`);
/// 2. replace every run of characters outside `[a-z0-9]` by a space and split on spaces;
/// 3. if `use_stemmer`, stem the tokens longer than 3 characters with NLTK's Porter stemmer
///    ([`PorterStemmer`]); shorter tokens are kept as they are;
/// 4. keep only non-empty tokens matching `^[a-z0-9]+$`.
///
/// Non-ASCII letters are separators (`"café"` → `["caf"]`), but characters whose lowercase
/// form is ASCII count as that letter (`"\u{212A}"`, the Kelvin sign, is `k`).
///
/// ```
/// use detox_rouge::tokenize;
/// assert_eq!(tokenize("The runners' state-of-the-art shoes!", true),
///            ["the", "runner", "state", "of", "the", "art", "shoe"]);
/// assert_eq!(tokenize("The runners' shoes!", false), ["the", "runners", "shoes"]);
/// ```
pub fn tokenize(text: &str, use_stemmer: bool) -> Vec<String> {
    let stemmer = use_stemmer.then(PorterStemmer::new);
    tokenize_with(text, stemmer.as_ref())
}

pub(crate) fn tokenize_with(text: &str, stemmer: Option<&PorterStemmer>) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !is_token_char(c))
        .filter(|t| !t.is_empty())
        .map(|t| match stemmer {
            // `t` is ASCII, so its byte length is its length in characters.
            Some(s) if t.len() > 3 => s.stem(t),
            _ => t.to_string(),
        })
        .filter(|t| !t.is_empty() && t.chars().all(is_token_char))
        .collect()
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_rules() {
        assert!(tokenize("", true).is_empty());
        assert!(tokenize(" \n\t!!! ... --- ", true).is_empty());
        assert_eq!(tokenize("Hello, WORLD!", false), ["hello", "world"]);
        assert_eq!(tokenize("it's 3:45pm", false), ["it", "s", "3", "45pm"]);
        // Only tokens longer than 3 characters are stemmed.
        assert_eq!(
            tokenize("ties dies tie lies bus was", true),
            ["tie", "die", "tie", "lie", "bus", "was"]
        );
        assert_eq!(tokenize("skies flies", true), ["sky", "fli"]);
        assert_eq!(tokenize("café naïve", false), ["caf", "na", "ve"]);
        assert_eq!(
            tokenize("\u{212A}elvin \u{130}stanbul", false),
            ["kelvin", "i", "stanbul"]
        );
        assert_eq!(tokenize("snake_case", false), ["snake", "case"]);
    }

    #[test]
    fn matches_rouge_score_on_fixture_pairs() {
        let fx = crate::test_fixture("pairs.json");
        let pairs = fx["pairs"].as_array().unwrap();
        assert!(pairs.len() >= 30);
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        for p in pairs {
            for side in ["prediction", "reference"] {
                let text = p[side].as_str().unwrap();
                assert_eq!(
                    tokenize(text, true),
                    strings(&p[format!("{side}_tokens").as_str()]),
                    "stemmed tokens of {text:?}"
                );
                assert_eq!(
                    tokenize(text, false),
                    strings(&p[format!("{side}_tokens_unstemmed").as_str()]),
                    "tokens of {text:?}"
                );
            }
        }
    }
}
