//! A bag-of-words multinomial Naive Bayes text classifier: the baseline a trained classifier must
//! beat. Words are lowercased runs of letters, digits and apostrophes (plus `@`/`#` prefixes, so
//! `@user` and `#tag` stay tokens); add-one (Laplace) smoothing; class priors from the training
//! counts — scikit-learn's `CountVectorizer(lowercase=True)` + `MultinomialNB(alpha=1)` in spirit.

use std::collections::HashMap;

/// Lowercased word tokens of `text`.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() || ch == '\'' || ((ch == '@' || ch == '#') && cur.is_empty()) {
            cur.extend(ch.to_lowercase());
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.retain(|w| w.chars().any(char::is_alphanumeric));
    out
}

/// A trained model: log priors and per-class log word probabilities.
#[derive(Debug, Clone)]
pub struct NaiveBayes {
    vocab: HashMap<String, usize>,
    log_prior: Vec<f64>,
    /// `[class][word]`.
    log_prob: Vec<Vec<f64>>,
}

impl NaiveBayes {
    /// Fits on `(text, label)` pairs with `num_classes` classes, smoothing `alpha`.
    pub fn fit<'a>(
        examples: impl IntoIterator<Item = (&'a str, usize)>,
        num_classes: usize,
        alpha: f64,
    ) -> Self {
        let mut vocab: HashMap<String, usize> = HashMap::new();
        let mut counts: Vec<Vec<f64>> = vec![Vec::new(); num_classes];
        let mut docs = vec![0usize; num_classes];
        for (text, label) in examples {
            docs[label] += 1;
            for w in words(text) {
                let n = vocab.len();
                let id = *vocab.entry(w).or_insert(n);
                for c in counts.iter_mut() {
                    if c.len() <= id {
                        c.resize(id + 1, 0.0);
                    }
                }
                counts[label][id] += 1.0;
            }
        }
        let v = vocab.len();
        let total_docs: usize = docs.iter().sum();
        let log_prior = docs
            .iter()
            .map(|&d| ((d as f64).max(1e-12) / total_docs.max(1) as f64).ln())
            .collect();
        let log_prob = counts
            .into_iter()
            .map(|mut c| {
                c.resize(v, 0.0);
                let total: f64 = c.iter().sum::<f64>() + alpha * v as f64;
                c.into_iter().map(|x| ((x + alpha) / total).ln()).collect()
            })
            .collect();
        Self {
            vocab,
            log_prior,
            log_prob,
        }
    }

    /// Joint log-likelihoods per class (unknown words ignored): the "logits" of the baseline.
    pub fn log_scores(&self, text: &str) -> Vec<f32> {
        let ids: Vec<usize> = words(text)
            .iter()
            .filter_map(|w| self.vocab.get(w).copied())
            .collect();
        self.log_prior
            .iter()
            .zip(&self.log_prob)
            .map(|(p, lp)| (p + ids.iter().map(|&i| lp[i]).sum::<f64>()) as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_handles_and_contractions() {
        assert_eq!(
            words("RT @User: You're SO #dumb!!! 100%"),
            vec!["rt", "@user", "you're", "so", "#dumb", "100"]
        );
        assert!(words("!!! ...").is_empty());
    }

    #[test]
    fn it_learns_which_words_mark_a_class() {
        let train = [
            ("you are a nasty idiot", 1),
            ("idiot trash", 1),
            ("nasty trash person", 1),
            ("have a lovely day", 0),
            ("lovely weather today", 0),
            ("what a day", 0),
        ];
        let nb = NaiveBayes::fit(train.iter().map(|&(t, l)| (t, l)), 2, 1.0);
        let s = nb.log_scores("such an idiot");
        assert!(s[1] > s[0], "{s:?}");
        let s = nb.log_scores("a lovely day");
        assert!(s[0] > s[1], "{s:?}");
        // Only unknown words: the priors decide (equal here).
        let s = nb.log_scores("zzz");
        assert!((s[0] - s[1]).abs() < 1e-6);
    }
}
