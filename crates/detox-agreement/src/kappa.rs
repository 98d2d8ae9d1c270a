//! Cohen's kappa of two raters on nominal categories.

use std::collections::BTreeMap;

/// Cohen's kappa of the pairs `(rater A's category, rater B's category)`, one pair per unit both
/// rated: `κ = (p_o − p_e) / (1 − p_e)` with `p_o` the share of units where they agree and
/// `p_e = Σ_c (a_c / n)(b_c / n)` over the categories seen in the pairs (`a_c`, `b_c`: how often
/// each rater chose `c`). `None` when there are no pairs or `p_e == 1` (both raters always chose
/// the same single category: agreement beyond chance is undefined).
pub fn cohen_kappa<T: Ord>(pairs: &[(T, T)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let mut a: BTreeMap<&T, f64> = BTreeMap::new();
    let mut b: BTreeMap<&T, f64> = BTreeMap::new();
    let mut agree = 0.0f64;
    for (x, y) in pairs {
        *a.entry(x).or_default() += 1.0;
        *b.entry(y).or_default() += 1.0;
        if x == y {
            agree += 1.0;
        }
    }
    let n = pairs.len() as f64;
    let po = agree / n;
    let pe = a
        .iter()
        .map(|(c, ac)| ac * b.get(c).copied().unwrap_or(0.0))
        .sum::<f64>()
        / (n * n);
    if pe >= 1.0 {
        return None;
    }
    Some((po - pe) / (1.0 - pe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_example() {
        // Wikipedia's "Cohen's kappa" example: 50 proposals, yes/yes 20, yes/no 5, no/yes 10,
        // no/no 15: p_o = 0.7, p_e = 0.5, kappa = 0.4.
        let mut pairs = Vec::new();
        pairs.extend(std::iter::repeat_n(("yes", "yes"), 20));
        pairs.extend(std::iter::repeat_n(("yes", "no"), 5));
        pairs.extend(std::iter::repeat_n(("no", "yes"), 10));
        pairs.extend(std::iter::repeat_n(("no", "no"), 15));
        let k = cohen_kappa(&pairs).unwrap();
        assert!((k - 0.4).abs() < 1e-12, "{k}");
    }

    #[test]
    fn perfect_chance_and_undefined() {
        assert_eq!(
            cohen_kappa(&[("a", "a"), ("b", "b"), ("t", "t")]),
            Some(1.0)
        );
        // Agreement exactly at chance: p_o = p_e = 0.5.
        let k = cohen_kappa(&[("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")]).unwrap();
        assert!(k.abs() < 1e-15, "{k}");
        // Always the same single category: p_e = 1.
        assert_eq!(cohen_kappa(&[("a", "a"), ("a", "a")]), None);
        assert_eq!(cohen_kappa::<&str>(&[]), None);
        // Complete disagreement on two categories: kappa -1.
        assert_eq!(cohen_kappa(&[("a", "b"), ("b", "a")]), Some(-1.0));
    }
}
