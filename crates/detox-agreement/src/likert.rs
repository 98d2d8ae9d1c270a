//! Mean and spread of Likert ratings.

use serde::{Deserialize, Serialize};

/// Summary of `n` ratings: their mean and **sample** standard deviation (divisor `n − 1`, as
/// `numpy.std(x, ddof=1)`). `std` is `None` (JSON `null`) when `n < 2`, where the sample std is
/// undefined; `mean` is `None` only when `n == 0`, which [`crate::compute`] never reports (a
/// model appears only where it was rated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub n: usize,
}

/// [`Summary`] of `values` (two passes: the mean, then the squared deviations from it).
pub fn summarize(values: &[f64]) -> Summary {
    let n = values.len();
    if n == 0 {
        return Summary {
            mean: None,
            std: None,
            n,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = (n >= 2).then(|| {
        let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
        (ss / (n - 1) as f64).sqrt()
    });
    Summary {
        mean: Some(mean),
        std,
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_std() {
        // numpy: np.std([2, 4, 4, 4, 5, 5, 7, 9], ddof=1) = 2.138089935299395 (population: 2).
        let s = summarize(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s.mean, Some(5.0));
        assert!((s.std.unwrap() - 2.138089935299395).abs() < 1e-12);
        assert_eq!(s.n, 8);
    }

    #[test]
    fn one_and_no_values() {
        assert_eq!(
            summarize(&[6.0]),
            Summary {
                mean: Some(6.0),
                std: None,
                n: 1
            }
        );
        assert_eq!(
            summarize(&[]),
            Summary {
                mean: None,
                std: None,
                n: 0
            }
        );
        assert_eq!(summarize(&[3.0, 3.0]).std, Some(0.0));
    }
}
