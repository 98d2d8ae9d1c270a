//! Error type of the crate.

use std::fmt;

/// The situations in which trl 0.11.4 raises (or would index out of range).
#[derive(Debug, Clone, PartialEq)]
pub enum RlError {
    /// `masked_var(..., unbiased=True)` with `mask.sum() == 0`. trl raises
    /// `ValueError("The sum of the mask is zero, which can happen when `mini_batch_size=1`; ...")`.
    /// (With `mask.sum() == 1` trl does *not* raise: the Bessel factor is `1/0` and the variance
    /// becomes NaN; this crate reproduces that NaN.)
    ZeroMaskSum,
    /// `compute_rewards` on a row whose mask is all zero: trl's `mask.nonzero()[-1]` raises
    /// `IndexError`. The payload is the row index.
    EmptyRowMask(usize),
    /// `kl_penalty = "full"` needs the full log-distributions (`[b, t, vocab]`), not gathered
    /// log-probabilities: call [`crate::compute_rewards_full`] / [`crate::kl_penalty_full`].
    FullKlNeedsLogits,
    /// Inputs whose shapes do not fit together.
    Shape(String),
    /// A NaN or infinity in the named tensor (`rewards`, `logprobs`, `loss/total`, ...): the step
    /// stops instead of writing non-finite parameters.
    NonFinite { tensor: String, value: f32 },
    /// `queries`, `responses` and `scores` of a step disagree with `batch_size` or with each
    /// other (trl's `_step_safety_checker`).
    Batch(String),
    /// A data-parallel collective operation failed (another peer stopped, a timeout).
    Collective(String),
}

impl fmt::Display for RlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RlError::ZeroMaskSum => write!(
                f,
                "The sum of the mask is zero, which can happen when `mini_batch_size=1`;\
                 try increase the `mini_batch_size` or `gradient_accumulation_steps`"
            ),
            RlError::EmptyRowMask(row) => {
                write!(f, "compute_rewards: the mask of row {row} has no non-zero entry")
            }
            RlError::FullKlNeedsLogits => write!(
                f,
                "kl_penalty \"full\" needs full logits / log-distributions: use compute_rewards_full"
            ),
            RlError::Shape(msg) => write!(f, "shape mismatch: {msg}"),
            RlError::NonFinite { tensor, value } => write!(
                f,
                "`{tensor}` holds a non-finite value ({value}); the PPO step was stopped \
                 (lower the learning rate or check the reward model)"
            ),
            RlError::Batch(msg) => f.write_str(msg),
            RlError::Collective(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for RlError {}

/// `Result` with [`RlError`].
pub type Result<T> = std::result::Result<T, RlError>;
