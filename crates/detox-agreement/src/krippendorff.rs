//! Krippendorff's alpha with missing data, computed as the Python `krippendorff` package (0.8.x)
//! computes `krippendorff.alpha(reliability_data=..., level_of_measurement=...)` without a
//! `value_domain`:
//!
//! - the value domain is the sorted distinct values present anywhere in the data (also in units
//!   that only one coder coded);
//! - coincidences `o[c][k] = Σ_u (n_uc n_uk − [c = k] n_uc) / (m_u − 1)` over the units with
//!   `m_u ≥ 2` values (units with fewer are not pairable and add nothing); `n_c = Σ_k o[c][k]`,
//!   `n = Σ_c n_c`;
//! - expected coincidences `e[c][k] = (n_c n_k − [c = k] n_c) / (n − 1)`;
//! - distances: nominal `[c ≠ k]`; interval `(v_c − v_k)²`; ordinal
//!   `(Σ_{g=c..=k} n_g − (n_c + n_k) / 2)²` over the domain's order, with the `n_g` of the
//!   coincidence matrix (so a value of the domain that no pairable unit has weighs nothing);
//! - `α = 1 − Σ o·d / Σ e·d`.
//!
//! Where the package raises (fewer than two values in the domain, no pairable unit) or returns
//! nan (expected disagreement 0: every pairable value the same) alpha is undefined: `None`.

/// Level of measurement: which distance between two values counts as disagreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Nominal,
    Ordinal,
    Interval,
}

/// Alpha of `units`, each the values the coders gave it (one per coder who coded it; missing
/// ones are left out, and NaN counts as missing). For nominal data any numbering of the
/// categories gives the same alpha.
pub fn alpha(units: &[Vec<f64>], level: Level) -> Option<f64> {
    // `+ 0.0` turns -0.0 into 0.0, so that equal values are one domain entry.
    let values = |unit: &Vec<f64>| -> Vec<f64> {
        unit.iter()
            .filter(|v| !v.is_nan())
            .map(|v| v + 0.0)
            .collect()
    };
    let units: Vec<Vec<f64>> = units.iter().map(values).collect();
    let mut domain: Vec<f64> = units.iter().flatten().copied().collect();
    domain.sort_by(f64::total_cmp);
    domain.dedup();
    let v = domain.len();
    if v < 2 {
        return None;
    }
    let index = |x: f64| domain.partition_point(|d| *d < x);

    // Coincidence matrix, row-major v x v.
    let mut o = vec![0.0f64; v * v];
    let mut pairable = false;
    let mut counts = vec![0.0f64; v];
    for unit in &units {
        let m = unit.len();
        if m < 2 {
            continue;
        }
        pairable = true;
        counts.iter_mut().for_each(|c| *c = 0.0);
        let mut present: Vec<usize> = Vec::with_capacity(m);
        for &x in unit {
            let i = index(x);
            if counts[i] == 0.0 {
                present.push(i);
            }
            counts[i] += 1.0;
        }
        let denom = (m - 1) as f64;
        for &c in &present {
            for &k in &present {
                let diag = if c == k { counts[c] } else { 0.0 };
                o[c * v + k] += (counts[c] * counts[k] - diag) / denom;
            }
        }
    }
    if !pairable {
        return None;
    }
    let n_v: Vec<f64> = (0..v).map(|k| (0..v).map(|c| o[c * v + k]).sum()).collect();
    let n: f64 = n_v.iter().sum();

    // Ordinal: prefix[i] = Σ_{g < i} n_g.
    let mut prefix = vec![0.0f64; v + 1];
    for g in 0..v {
        prefix[g + 1] = prefix[g] + n_v[g];
    }
    let distance = |c: usize, k: usize| -> f64 {
        match level {
            Level::Nominal => f64::from(u8::from(c != k)),
            Level::Interval => (domain[c] - domain[k]).powi(2),
            Level::Ordinal => {
                let (lo, hi) = (c.min(k), c.max(k));
                (prefix[hi + 1] - prefix[lo] - (n_v[lo] + n_v[hi]) / 2.0).powi(2)
            }
        }
    };
    let (mut observed, mut expected) = (0.0f64, 0.0f64);
    for c in 0..v {
        for k in 0..v {
            let d = distance(c, k);
            let diag = if c == k { n_v[c] } else { 0.0 };
            let e = (n_v[c] * n_v[k] - diag) / (n - 1.0);
            observed += o[c * v + k] * d;
            expected += e * d;
        }
    }
    // Expected disagreement 0 (every pairable value the same): undefined, as the package's nan.
    if expected.is_nan() || expected <= 0.0 {
        return None;
    }
    let a = 1.0 - observed / expected;
    a.is_finite().then_some(a)
}

/// [`alpha`] of a reliability matrix laid out as the Python package takes it: one row per
/// coder, one column per unit, `None` (or NaN) where the coder did not code the unit. Rows may
/// differ in length; missing columns are missing values.
pub fn alpha_from_reliability_data(rows: &[Vec<Option<f64>>], level: Level) -> Option<f64> {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let units: Vec<Vec<f64>> = (0..width)
        .map(|u| {
            rows.iter()
                .filter_map(|row| row.get(u).copied().flatten())
                .collect()
        })
        .collect();
    alpha(&units, level)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NA: Option<f64> = None;

    /// Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 coders x 12
    /// units example with missing data (values 1-5). His results: nominal 0.743, ordinal 0.815,
    /// interval 0.849; the Python package (0.8.1) gives 0.743421052631579, 0.8153875037548814,
    /// 0.8491071428571428.
    fn krippendorff_2011() -> Vec<Vec<Option<f64>>> {
        let row = |r: [i32; 12]| -> Vec<Option<f64>> {
            r.iter().map(|&x| (x > 0).then_some(f64::from(x))).collect()
        };
        vec![
            row([1, 2, 3, 3, 2, 1, 4, 1, 2, 0, 0, 0]),
            row([1, 2, 3, 3, 2, 2, 4, 1, 2, 5, 0, 3]),
            row([0, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, 0]),
            row([1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, 0]),
        ]
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn krippendorff_2011_worked_example() {
        let data = krippendorff_2011();
        let nominal = alpha_from_reliability_data(&data, Level::Nominal);
        let ordinal = alpha_from_reliability_data(&data, Level::Ordinal);
        let interval = alpha_from_reliability_data(&data, Level::Interval);
        assert!(close(nominal, 0.743421052631579), "{nominal:?}");
        assert!(close(ordinal, 0.8153875037548814), "{ordinal:?}");
        assert!(close(interval, 0.8491071428571428), "{interval:?}");
        // The rounded values of the paper.
        assert_eq!(format!("{:.3}", nominal.unwrap()), "0.743");
        assert_eq!(format!("{:.3}", ordinal.unwrap()), "0.815");
        assert_eq!(format!("{:.3}", interval.unwrap()), "0.849");
    }

    /// The 3 coders x 15 units example of the package's docstring (Wikipedia's): nominal
    /// 0.691358, interval 0.810845 (rounded to 6 places there); ordinal from the package
    /// 0.8067214199413153.
    #[test]
    fn package_docstring_example() {
        let n = NA;
        let s = |x: f64| Some(x);
        let data = vec![
            vec![
                n,
                n,
                n,
                n,
                n,
                s(3.),
                s(4.),
                s(1.),
                s(2.),
                s(1.),
                s(1.),
                s(3.),
                s(3.),
                n,
                s(3.),
            ],
            vec![
                s(1.),
                n,
                s(2.),
                s(1.),
                s(3.),
                s(3.),
                s(4.),
                s(3.),
                n,
                n,
                n,
                n,
                n,
                n,
                n,
            ],
            vec![
                n,
                n,
                s(2.),
                s(1.),
                s(3.),
                s(4.),
                s(4.),
                n,
                s(2.),
                s(1.),
                s(1.),
                s(3.),
                s(3.),
                n,
                s(4.),
            ],
        ];
        assert!(close(
            alpha_from_reliability_data(&data, Level::Nominal),
            0.691358024691358
        ));
        assert!(close(
            alpha_from_reliability_data(&data, Level::Interval),
            0.8108448928121059
        ));
        assert!(close(
            alpha_from_reliability_data(&data, Level::Ordinal),
            0.8067214199413153
        ));
    }

    #[test]
    fn perfect_agreement_is_one() {
        let units = vec![
            vec![1.0, 1.0, 1.0],
            vec![3.0, 3.0],
            vec![7.0, 7.0, 7.0],
            vec![2.0],
        ];
        for level in [Level::Nominal, Level::Ordinal, Level::Interval] {
            assert_eq!(alpha(&units, level), Some(1.0), "{level:?}");
        }
    }

    #[test]
    fn undefined_cases_are_none() {
        for level in [Level::Nominal, Level::Ordinal, Level::Interval] {
            // One value in the domain.
            assert_eq!(alpha(&[vec![4.0, 4.0], vec![4.0, 4.0]], level), None);
            // No unit with two values.
            assert_eq!(alpha(&[vec![1.0], vec![2.0], vec![]], level), None);
            // Two values in the domain, but the pairable units all agree on one: De = 0.
            assert_eq!(
                alpha(&[vec![4.0, 4.0], vec![4.0, 4.0], vec![2.0]], level),
                None
            );
            assert_eq!(alpha(&[], level), None);
        }
    }

    #[test]
    fn nan_is_missing_and_categories_can_be_renumbered() {
        let a = alpha(
            &[
                vec![0.0, 1.0, f64::NAN],
                vec![1.0, 1.0],
                vec![2.0, 2.0, 0.0],
            ],
            Level::Nominal,
        );
        let b = alpha(
            &[vec![9.0, -3.0], vec![-3.0, -3.0], vec![5.5, 5.5, 9.0]],
            Level::Nominal,
        );
        assert!(a.is_some());
        assert_eq!(a, b);
    }

    /// Systematic disagreement gives alpha below 0, and ordinal distance depends on how often
    /// the values between two ranks occur (not on their numeric gap).
    #[test]
    fn disagreement_and_ordinal_ranks() {
        let units = vec![vec![1.0, 2.0], vec![2.0, 1.0], vec![1.0, 2.0]];
        assert!(alpha(&units, Level::Nominal).unwrap() < 0.0);
        // Replacing 2 by 7 changes interval alpha's distances but not ordinal's ranks.
        let stretched: Vec<Vec<f64>> =
            vec![vec![1.0, 7.0, 7.0], vec![7.0, 7.0], vec![1.0, 1.0, 4.0]];
        let squeezed: Vec<Vec<f64>> =
            vec![vec![1.0, 2.0, 2.0], vec![2.0, 2.0], vec![1.0, 1.0, 1.5]];
        assert_eq!(
            alpha(&stretched, Level::Ordinal),
            alpha(&squeezed, Level::Ordinal)
        );
        assert_ne!(
            alpha(&stretched, Level::Interval),
            alpha(&squeezed, Level::Interval)
        );
    }
}
