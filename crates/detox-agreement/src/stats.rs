//! The statistics of a set of judgments ([`compute`]) and their JSON shape ([`Stats`], what
//! `detox annotations stats --json` prints).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::judgment::{deduplicate, Judgment, Preference, Ratings};
use crate::kappa::cohen_kappa;
use crate::krippendorff::{alpha, Level};
use crate::likert::{summarize, Summary};
use crate::wilson::{wilson_interval, Z95};

/// Everything `detox annotations stats` reports. Maps are keyed by model name / annotator pair
/// and ordered by key (byte order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Judgments counted: one per (annotator, item), see [`deduplicate`].
    pub judgments: usize,
    /// Distinct items judged.
    pub items: usize,
    /// Distinct annotators.
    pub annotators: usize,
    pub win_rate: BTreeMap<String, WinRate>,
    pub likert: BTreeMap<String, Likert>,
    pub alpha: Alphas,
    /// Key `"A|B"`, `A < B` in byte order; only pairs that judged at least one item in common.
    pub cohen_kappa: BTreeMap<String, PairKappa>,
}

/// A model's record over the judgments that showed it. A tie counts as a tie for both models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WinRate {
    pub wins: u64,
    pub losses: u64,
    pub ties: u64,
    /// `wins / (wins + losses)`; `None` when that is 0 / 0 (only ties).
    pub rate: Option<f64>,
    /// Wilson score interval of `rate` at z = 1.959963984540054 with `n = wins + losses`;
    /// `None` when `n == 0`.
    pub ci95: Option<[f64; 2]>,
}

/// A model's ratings over the judgments that showed it (see [`Summary`]: sample std, `null`
/// for a single rating).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Likert {
    pub readability: Summary,
    pub coherence: Summary,
}

/// Krippendorff's alpha (see [`crate::krippendorff`]); `None` (`null`) where undefined: no unit
/// that two annotators judged, or no disagreement to expect (a single value).
///
/// The reliability data has one row per annotator. `preferred_nominal`: one unit per item, the
/// value the preferred model's name or `"tie"`. The rating alphas: one unit per (item, model),
/// the value its 1-7 rating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alphas {
    pub preferred_nominal: Option<f64>,
    pub readability_ordinal: Option<f64>,
    pub readability_interval: Option<f64>,
    pub coherence_ordinal: Option<f64>,
    pub coherence_interval: Option<f64>,
}

/// Cohen's kappa of two annotators on `preferred` over the items both judged (categories: the
/// model names and `"tie"` they used); `None` when it is undefined (p_e = 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairKappa {
    pub kappa: Option<f64>,
    /// Items both annotators judged.
    pub items: usize,
}

/// The statistics of `judgments`. Several judgments of one item by one annotator count once:
/// the last one (see [`deduplicate`]). An empty slice gives zero counts, empty maps and `null`
/// alphas.
pub fn compute(judgments: &[Judgment]) -> Stats {
    let kept = deduplicate(judgments);
    let items: BTreeSet<&str> = kept.iter().map(|j| j.item.as_str()).collect();
    let annotators: BTreeSet<&str> = kept.iter().map(|j| j.annotator.as_str()).collect();
    Stats {
        judgments: kept.len(),
        items: items.len(),
        annotators: annotators.len(),
        win_rate: win_rates(&kept),
        likert: likert(&kept),
        alpha: alphas(&kept),
        cohen_kappa: kappas(&kept),
    }
}

fn win_rates(kept: &[&Judgment]) -> BTreeMap<String, WinRate> {
    let mut counts: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
    for j in kept {
        for m in &j.models {
            let c = counts.entry(m.as_str()).or_default();
            match &j.preferred {
                Preference::Tie => c[2] += 1,
                Preference::Model(p) if p == m => c[0] += 1,
                Preference::Model(_) => c[1] += 1,
            }
        }
    }
    counts
        .into_iter()
        .map(|(m, [wins, losses, ties])| {
            let n = wins + losses;
            let rate = (n > 0).then(|| wins as f64 / n as f64);
            let record = WinRate {
                wins,
                losses,
                ties,
                rate,
                ci95: wilson_interval(wins, n, Z95),
            };
            (m.to_string(), record)
        })
        .collect()
}

fn likert(kept: &[&Judgment]) -> BTreeMap<String, Likert> {
    let mut values: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for j in kept {
        for (m, r) in j.models.iter().zip(&j.ratings) {
            let (read, coh) = values.entry(m.as_str()).or_default();
            read.push(f64::from(r.readability));
            coh.push(f64::from(r.coherence));
        }
    }
    values
        .into_iter()
        .map(|(m, (read, coh))| {
            let summary = Likert {
                readability: summarize(&read),
                coherence: summarize(&coh),
            };
            (m.to_string(), summary)
        })
        .collect()
}

fn alphas(kept: &[&Judgment]) -> Alphas {
    // preferred: categories numbered in byte order (any numbering gives the same nominal alpha).
    let categories: BTreeSet<&str> = kept.iter().map(|j| j.preferred.label()).collect();
    let code = |label: &str| categories.iter().position(|c| *c == label).unwrap_or(0) as f64;
    let mut by_item: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for j in kept {
        by_item
            .entry(j.item.as_str())
            .or_default()
            .push(code(j.preferred.label()));
    }
    let preferred: Vec<Vec<f64>> = by_item.into_values().collect();

    let axis_units = |axis: fn(&Ratings) -> u8| -> Vec<Vec<f64>> {
        let mut units: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
        for j in kept {
            for (m, r) in j.models.iter().zip(&j.ratings) {
                units
                    .entry((j.item.as_str(), m.as_str()))
                    .or_default()
                    .push(f64::from(axis(r)));
            }
        }
        units.into_values().collect()
    };
    let readability = axis_units(|r| r.readability);
    let coherence = axis_units(|r| r.coherence);
    Alphas {
        preferred_nominal: alpha(&preferred, Level::Nominal),
        readability_ordinal: alpha(&readability, Level::Ordinal),
        readability_interval: alpha(&readability, Level::Interval),
        coherence_ordinal: alpha(&coherence, Level::Ordinal),
        coherence_interval: alpha(&coherence, Level::Interval),
    }
}

fn kappas(kept: &[&Judgment]) -> BTreeMap<String, PairKappa> {
    // str's Ord is byte order.
    let mut by: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for j in kept {
        by.entry(j.annotator.as_str())
            .or_default()
            .insert(j.item.as_str(), j.preferred.label());
    }
    let annotators: Vec<(&str, &BTreeMap<&str, &str>)> = by.iter().map(|(a, m)| (*a, m)).collect();
    let mut out = BTreeMap::new();
    for (i, (a, items_a)) in annotators.iter().enumerate() {
        for (b, items_b) in &annotators[i + 1..] {
            let pairs: Vec<(&str, &str)> = items_a
                .iter()
                .filter_map(|(item, pa)| items_b.get(item).map(|pb| (*pa, *pb)))
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let record = PairKappa {
                kappa: cohen_kappa(&pairs),
                items: pairs.len(),
            };
            out.insert(format!("{a}|{b}"), record);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(
        item: &str,
        annotator: &str,
        models: [&str; 2],
        preferred: &str,
        r: [[u8; 2]; 2],
    ) -> Judgment {
        Judgment {
            item: item.into(),
            annotator: annotator.into(),
            models: models.map(String::from),
            shown: None,
            preferred: if preferred == "tie" {
                Preference::Tie
            } else {
                Preference::Model(preferred.into())
            },
            confidence: 2,
            ratings: r.map(|[readability, coherence]| Ratings {
                readability,
                coherence,
            }),
            note: String::new(),
            time: None,
            line: 0,
        }
    }

    #[test]
    fn empty_input() {
        let s = compute(&[]);
        assert_eq!((s.judgments, s.items, s.annotators), (0, 0, 0));
        assert!(s.win_rate.is_empty() && s.likert.is_empty() && s.cohen_kappa.is_empty());
        assert_eq!(s.alpha.preferred_nominal, None);
        assert_eq!(s.alpha.coherence_interval, None);
    }

    #[test]
    fn perfect_agreement() {
        let mut js = Vec::new();
        for (i, (p, r)) in [("A", [6, 2]), ("B", [3, 5]), ("tie", [4, 4]), ("A", [7, 1])]
            .into_iter()
            .enumerate()
        {
            for ann in ["x", "y", "z"] {
                let item = format!("i{i}");
                js.push(j(&item, ann, ["A", "B"], p, [[r[0], r[0]], [r[1], r[1]]]));
            }
        }
        let s = compute(&js);
        assert_eq!(s.alpha.preferred_nominal, Some(1.0));
        assert_eq!(s.alpha.readability_ordinal, Some(1.0));
        assert_eq!(s.alpha.coherence_interval, Some(1.0));
        assert_eq!(s.cohen_kappa.len(), 3);
        for k in s.cohen_kappa.values() {
            assert_eq!(
                *k,
                PairKappa {
                    kappa: Some(1.0),
                    items: 4
                }
            );
        }
        let a = &s.win_rate["A"];
        assert_eq!((a.wins, a.losses, a.ties), (6, 3, 3));
        assert_eq!(a.rate, Some(6.0 / 9.0));
        let b = &s.win_rate["B"];
        assert_eq!((b.wins, b.losses, b.ties), (3, 6, 3));
    }

    #[test]
    fn later_duplicate_wins_and_pair_keys_are_byte_ordered() {
        let js = vec![
            j("1", "b", ["A", "B"], "A", [[1, 1], [1, 1]]),
            j("1", "B", ["A", "B"], "B", [[2, 2], [2, 2]]),
            j("1", "b", ["A", "B"], "tie", [[5, 5], [3, 3]]),
            j("2", "solo", ["A", "C"], "C", [[5, 5], [3, 3]]),
        ];
        let s = compute(&js);
        assert_eq!(s.judgments, 3);
        assert_eq!(s.annotators, 3);
        assert_eq!(s.items, 2);
        // "B" < "b" in byte order; "solo" shares no item with anyone.
        let keys: Vec<&str> = s.cohen_kappa.keys().map(String::as_str).collect();
        assert_eq!(keys, ["B|b"]);
        assert_eq!(s.cohen_kappa["B|b"].items, 1);
        // b's later judgment (tie, A rated 5) replaced the first one.
        assert_eq!(s.win_rate["A"].ties, 1);
        assert_eq!(s.likert["A"].readability.mean, Some(4.0));
        assert_eq!(s.likert["C"].readability.std, None);
        assert_eq!(s.win_rate["C"].rate, Some(1.0));
    }

    #[test]
    fn json_shape() {
        let js = vec![
            j("1", "a", ["A", "B"], "tie", [[1, 2], [3, 4]]),
            j("1", "b", ["A", "B"], "tie", [[1, 2], [3, 4]]),
        ];
        let v = serde_json::to_value(compute(&js)).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let mut top = keys(&v);
        top.sort();
        assert_eq!(
            top,
            [
                "alpha",
                "annotators",
                "cohen_kappa",
                "items",
                "judgments",
                "likert",
                "win_rate"
            ]
        );
        assert_eq!(
            v["win_rate"]["A"],
            serde_json::json!({"wins": 0, "losses": 0, "ties": 2, "rate": null, "ci95": null})
        );
        assert_eq!(
            v["likert"]["B"]["coherence"],
            serde_json::json!({"mean": 4.0, "std": 0.0, "n": 2})
        );
        assert_eq!(
            v["cohen_kappa"]["a|b"],
            serde_json::json!({"kappa": null, "items": 1})
        );
        let mut alpha_keys = keys(&v["alpha"]);
        alpha_keys.sort();
        assert_eq!(
            alpha_keys,
            [
                "coherence_interval",
                "coherence_ordinal",
                "preferred_nominal",
                "readability_interval",
                "readability_ordinal"
            ]
        );
        // One preferred value: undefined; the ratings agree: 1.
        assert!(v["alpha"]["preferred_nominal"].is_null());
        assert_eq!(v["alpha"]["readability_ordinal"], 1.0);
    }
}
