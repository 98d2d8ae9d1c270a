//! `RunningMoments` of trl 0.11.4 (`trl/trainer/utils.py`), the running score statistics behind
//! `PPOConfig.use_score_scaling` / `use_score_norm`.

use serde::{Deserialize, Serialize};

/// Running mean / variance of every score seen so far (Chan et al.'s parallel update), kept in
/// `f32` like trl's tensors. Starts at `mean 0, std 1, var 1, count 1e-24`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RunningMoments {
    pub mean: f32,
    pub std: f32,
    pub var: f32,
    pub count: f64,
}

impl Default for RunningMoments {
    fn default() -> Self {
        Self {
            mean: 0.0,
            std: 1.0,
            var: 1.0,
            count: 1e-24,
        }
    }
}

impl RunningMoments {
    /// `update(xs)` (single process):
    ///
    /// ```text
    /// xs_var, xs_mean = torch.var_mean(xs, unbiased=False)
    /// delta = xs_mean - mean; tot_count = count + n
    /// old_sum = var * count + delta**2 * count * n / tot_count
    /// mean += delta * n / tot_count
    /// var = (old_sum + xs_var * n) / tot_count
    /// std = sqrt(var * tot_count / (tot_count - 1)); count = tot_count
    /// return xs_mean, sqrt(xs_var * n / (n - 1))
    /// ```
    ///
    /// `count` is a Python float in trl; the tensor arithmetic with it happens in `f32`.
    pub fn update(&mut self, xs: &[f32]) -> (f32, f32) {
        let n = xs.len();
        let nf = n as f32;
        let xs_mean = xs.iter().sum::<f32>() / nf;
        let xs_var = xs
            .iter()
            .map(|x| (x - xs_mean) * (x - xs_mean))
            .sum::<f32>()
            / nf;
        let delta = xs_mean - self.mean;
        let tot_count = self.count + n as f64;
        let new_sum = xs_var * nf;
        let old_sum = self.var * self.count as f32
            + delta * delta * (self.count as f32) * nf / tot_count as f32;
        let tot_sum = old_sum + new_sum;
        self.mean += delta * nf / tot_count as f32;
        let new_var = tot_sum / tot_count as f32;
        self.std = (new_var * tot_count as f32 / (tot_count - 1.0) as f32).sqrt();
        self.var = new_var;
        self.count = tot_count;
        (xs_mean, (xs_var * nf / (nf - 1.0)).sqrt())
    }

    /// `PPOTrainer.step`'s score scaling: after [`update`](Self::update) with the batch's
    /// scores, `scores / (std + eps)` or, with `use_score_norm`, `(scores - mean) / (std + eps)`,
    /// `eps = torch.finfo(float32).eps`.
    pub fn scale(&self, scores: &mut [f32], norm: bool) {
        let factor = self.std + f32::EPSILON;
        for s in scores {
            *s = if norm {
                (*s - self.mean) / factor
            } else {
                *s / factor
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_update_matches_the_batch_moments() {
        // With count 1e-24 the prior vanishes: mean/var become the batch's (population var).
        let mut r = RunningMoments::default();
        let xs = [1.0f32, 2.0, 4.0, 7.0];
        let (m, s) = r.update(&xs);
        assert!((m - 3.5).abs() < 1e-6);
        let unbiased = (((2.5f32 * 2.5) + 1.5 * 1.5 + 0.5 * 0.5 + 3.5 * 3.5) / 3.0).sqrt();
        assert!((s - unbiased).abs() < 1e-5);
        assert!((r.mean - 3.5).abs() < 1e-6);
        assert!((r.var - 5.25).abs() < 1e-5);
        // the running std is the unbiased one over everything seen
        assert!((r.std - unbiased).abs() < 1e-5);
        // a second batch: the running moments are those of the union
        r.update(&[0.0, 10.0]);
        let all = [1.0f32, 2.0, 4.0, 7.0, 0.0, 10.0];
        let mean = all.iter().sum::<f32>() / 6.0;
        let var = all.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 6.0;
        assert!((r.mean - mean).abs() < 1e-5, "{} vs {mean}", r.mean);
        assert!((r.var - var).abs() < 1e-4, "{} vs {var}", r.var);
    }
}
