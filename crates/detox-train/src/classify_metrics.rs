//! Classification metrics as scikit-learn computes them: accuracy, macro-F1
//! (`f1_score(average="macro")`, a class with no true and no predicted examples scoring 0) and
//! ROC-AUC (`roc_auc_score`: for two classes on the positive class's score, for more classes the
//! macro one-vs-rest mean), with tied scores counted as half (the Mann–Whitney U statistic).

use serde::Serialize;

/// The metrics of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub accuracy: f64,
    pub macro_f1: f64,
    /// `None` when some class has no example (AUC is undefined).
    pub roc_auc: Option<f64>,
}

/// Index of the largest value (the first one on ties, as `argmax`).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

pub fn accuracy(labels: &[usize], predicted: &[usize]) -> f64 {
    let right = labels.iter().zip(predicted).filter(|(a, b)| a == b).count();
    right as f64 / labels.len().max(1) as f64
}

/// Mean over `num_classes` of each class's F1 (0 for a class never true nor predicted).
pub fn macro_f1(labels: &[usize], predicted: &[usize], num_classes: usize) -> f64 {
    let mut sum = 0.0;
    for c in 0..num_classes {
        let tp = labels
            .iter()
            .zip(predicted)
            .filter(|&(&l, &p)| l == c && p == c)
            .count();
        let fp = labels
            .iter()
            .zip(predicted)
            .filter(|&(&l, &p)| l != c && p == c)
            .count();
        let fn_ = labels
            .iter()
            .zip(predicted)
            .filter(|&(&l, &p)| l == c && p != c)
            .count();
        let denom = 2 * tp + fp + fn_;
        if denom > 0 {
            sum += 2.0 * tp as f64 / denom as f64;
        }
    }
    sum / num_classes.max(1) as f64
}

/// Area under the ROC curve of `scores` for `positive` (true/false per example): the chance that
/// a random positive outscores a random negative, ties counting half. `None` without both kinds.
pub fn binary_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over runs of equal scores.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += order[i..=j].iter().filter(|&&k| positive[k]).count() as f64 * avg;
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    Some((rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// Softmax of one row of logits, in f64.
pub fn softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = row.iter().map(|&x| (x as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// ROC-AUC as `roc_auc_score(labels, probs[:, 1])` for two classes, else the macro mean of the
/// one-vs-rest AUCs (`multi_class="ovr"`).
pub fn roc_auc(labels: &[usize], probs: &[Vec<f64>]) -> Option<f64> {
    let k = probs.first()?.len();
    let auc_of = |c: usize| {
        let s: Vec<f64> = probs.iter().map(|p| p[c]).collect();
        let pos: Vec<bool> = labels.iter().map(|&l| l == c).collect();
        binary_auc(&s, &pos)
    };
    if k == 2 {
        return auc_of(1);
    }
    let aucs: Option<Vec<f64>> = (0..k).map(auc_of).collect();
    aucs.map(|a| a.iter().sum::<f64>() / k as f64)
}

/// All metrics of `logits` against `labels`.
pub fn class_metrics(labels: &[usize], logits: &[Vec<f32>]) -> ClassMetrics {
    let k = logits.first().map_or(0, Vec::len);
    let predicted: Vec<usize> = logits.iter().map(|r| argmax(r)).collect();
    let probs: Vec<Vec<f64>> = logits.iter().map(|r| softmax(r)).collect();
    ClassMetrics {
        accuracy: accuracy(labels, &predicted),
        macro_f1: macro_f1(labels, &predicted, k),
        roc_auc: roc_auc(labels, &probs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values worked out by hand from scikit-learn's definitions (pair counts for AUC,
    // per-class 2TP / (2TP + FP + FN) for F1), shown beside each case.

    #[test]
    fn f1_and_accuracy_match_scikit_learn() {
        let y = [0, 1, 1, 0, 1, 1, 0, 2];
        let p = [0, 1, 0, 0, 1, 1, 1, 1];
        assert!((accuracy(&y, &p) - 0.625).abs() < 1e-12);
        // per class F1: 0 -> 2/3, 1 -> 2*3/(6+2+1) = 0.6667, 2 -> 0
        assert!((macro_f1(&y, &p, 3) - (2.0 / 3.0 + 6.0 / 9.0) / 3.0).abs() < 1e-12);
        assert!((macro_f1(&[0, 1], &[0, 1], 2) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn auc_counts_ties_as_half() {
        // roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        let s = [0.1, 0.4, 0.35, 0.8];
        let y = [false, false, true, true];
        assert!((binary_auc(&s, &y).unwrap() - 0.75).abs() < 1e-12);
        // roc_auc_score([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == 0.875
        let s = [0.5, 0.5, 0.2, 0.9];
        let y = [false, true, false, true];
        assert!((binary_auc(&s, &y).unwrap() - 0.875).abs() < 1e-12);
        assert_eq!(binary_auc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn multiclass_auc_is_the_one_vs_rest_mean() {
        let labels = [0, 1, 2, 2];
        let probs = vec![
            vec![0.8, 0.1, 0.1],
            vec![0.2, 0.7, 0.1],
            vec![0.3, 0.3, 0.4],
            vec![0.5, 0.1, 0.4],
        ];
        // class 0: pos 0.8 vs 0.2, 0.3, 0.5 -> 1; class 1: 0.7 vs 0.1, 0.3, 0.1 -> 1;
        // class 2: pos {0.4, 0.4} vs {0.1, 0.1} -> 1
        assert!((roc_auc(&labels, &probs).unwrap() - 1.0).abs() < 1e-12);
        let m = class_metrics(&[1, 0], &[vec![0.0, 2.0], vec![1.0, -1.0]]);
        assert_eq!(m.accuracy, 1.0);
        assert_eq!(m.roc_auc, Some(1.0));
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[5.0]), 0);
    }
}
