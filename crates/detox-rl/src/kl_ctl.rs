//! `AdaptiveKLController` / `FixedKLController` (trl 0.11.4, `trl/trainer/utils.py`).

use serde::{Deserialize, Serialize};

/// trl's `AdaptiveKLController` (Ziegler et al. 2019):
///
/// ```text
/// proportional_error = np.clip(current / target - 1, -0.2, 0.2)
/// mult = 1 + proportional_error * n_steps / horizon
/// value *= mult
/// ```
///
/// Arithmetic is `f64` like Python's. `PPOTrainer.step` calls
/// `update(stats["objective/kl"], batch_size * num_processes)` after each step, where
/// `objective/kl` is an `f32` (pass it widened to `f64`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveKLController {
    /// The current KL coefficient (`init_kl_coef` at construction).
    pub value: f64,
    /// `PPOConfig.target` (6.0 by default).
    pub target: f64,
    /// `PPOConfig.horizon` (10000.0 by default).
    pub horizon: f64,
}

impl AdaptiveKLController {
    /// `AdaptiveKLController(init_kl_coef, target, horizon)`.
    pub fn new(init_kl_coef: f64, target: f64, horizon: f64) -> Self {
        Self {
            value: init_kl_coef,
            target,
            horizon,
        }
    }

    /// `update(current, n_steps)`.
    pub fn update(&mut self, current: f64, n_steps: usize) {
        let target = self.target;
        let e = current / target - 1.0;
        // np.clip(e, -0.2, 0.2) == minimum(maximum(e, -0.2), 0.2); NaN stays NaN
        let proportional_error = if e.is_nan() { e } else { e.clamp(-0.2, 0.2) };
        let mult = 1.0 + proportional_error * n_steps as f64 / self.horizon;
        self.value *= mult;
    }
}

/// trl's `FixedKLController`: `update` does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FixedKLController {
    /// The constant KL coefficient.
    pub value: f64,
}

impl FixedKLController {
    /// `FixedKLController(kl_coef)`.
    pub fn new(kl_coef: f64) -> Self {
        Self { value: kl_coef }
    }

    /// `update(current, n_steps)`: a no-op.
    pub fn update(&mut self, _current: f64, _n_steps: usize) {}
}

/// Either controller, as `PPOTrainer.__init__` picks one:
/// `AdaptiveKLController(init_kl_coef, target, horizon) if adap_kl_ctrl else FixedKLController(init_kl_coef)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum KlController {
    /// `adap_kl_ctrl = True` (trl's default).
    Adaptive(AdaptiveKLController),
    /// `adap_kl_ctrl = False`.
    Fixed(FixedKLController),
}

impl KlController {
    /// `PPOTrainer.__init__`'s choice.
    pub fn new(adap_kl_ctrl: bool, init_kl_coef: f64, target: f64, horizon: f64) -> Self {
        if adap_kl_ctrl {
            KlController::Adaptive(AdaptiveKLController::new(init_kl_coef, target, horizon))
        } else {
            KlController::Fixed(FixedKLController::new(init_kl_coef))
        }
    }

    /// `kl_ctl.value`.
    pub fn value(&self) -> f64 {
        match self {
            KlController::Adaptive(c) => c.value,
            KlController::Fixed(c) => c.value,
        }
    }

    /// `kl_ctl.update(current, n_steps)`.
    pub fn update(&mut self, current: f64, n_steps: usize) {
        match self {
            KlController::Adaptive(c) => c.update(current, n_steps),
            KlController::Fixed(c) => c.update(current, n_steps),
        }
    }
}
