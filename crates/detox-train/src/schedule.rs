//! transformers' `get_linear_schedule_with_warmup` (the Trainer's default `lr_scheduler_type`).
//!
//! It is a `LambdaLR`: the lr of optimizer step `s` (0-based) is `base_lr · λ(s)` — the first
//! step uses `λ(0)`, which is 0 when there is a warmup.

use serde::{Deserialize, Serialize};

/// Linear warmup from 0 over `warmup` steps, then linear decay to 0 at `total` steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearSchedule {
    pub base_lr: f64,
    pub warmup: usize,
    pub total: usize,
}

impl LinearSchedule {
    pub fn new(base_lr: f64, warmup: usize, total: usize) -> Self {
        Self {
            base_lr,
            warmup,
            total,
        }
    }

    /// `_get_linear_schedule_with_warmup_lr_lambda(step)`.
    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup {
            return step as f64 / self.warmup.max(1) as f64;
        }
        let left = self.total as f64 - step as f64;
        (left / (self.total.saturating_sub(self.warmup)).max(1) as f64).max(0.0)
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        self.base_lr * self.factor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_linear_decay() {
        let s = LinearSchedule::new(1e-3, 3, 10);
        let lrs: Vec<f64> = (0..=10).map(|k| s.lr(k)).collect();
        let want = [
            0.0,
            1.0 / 3.0,
            2.0 / 3.0,
            1.0,
            6.0 / 7.0,
            5.0 / 7.0,
            4.0 / 7.0,
            3.0 / 7.0,
            2.0 / 7.0,
            1.0 / 7.0,
            0.0,
        ];
        for (a, b) in lrs.iter().zip(want) {
            assert!((a - b * 1e-3).abs() < 1e-15, "{lrs:?}");
        }
        assert_eq!(s.lr(12), 0.0);
    }

    #[test]
    fn no_warmup_starts_at_the_base_lr() {
        let s = LinearSchedule::new(2.0, 0, 4);
        assert_eq!((s.lr(0), s.lr(1), s.lr(3)), (2.0, 1.5, 0.5));
    }
}
