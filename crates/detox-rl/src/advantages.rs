//! `PPOTrainer.compute_advantages` (trl 0.11.4): GAE.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::error::{Result, RlError};
use crate::trl_core::masked_whiten;

/// The result of [`compute_advantages`], all `[b, t]`.
#[derive(Debug, Clone)]
pub struct Advantages<B: Backend> {
    /// `values * mask` (trl returns the *masked* values and later feeds them to `loss` as the old
    /// values of the value-clipping term).
    pub values: Tensor<B, 2>,
    /// GAE advantages, whitened over the mask (`masked_whiten(.., shift_mean=True)`) and
    /// detached.
    pub advantages: Tensor<B, 2>,
    /// Un-whitened advantages + masked values (not detached, as in trl).
    pub returns: Tensor<B, 2>,
}

/// `PPOTrainer.compute_advantages(values, rewards, mask)` with `config.gamma`, `config.lam`,
/// `config.whiten_rewards`:
///
/// ```text
/// values = values * mask
/// rewards = rewards * mask
/// if whiten_rewards: rewards = masked_whiten(rewards, mask, shift_mean=False)
/// lastgaelam = 0
/// for t in reversed(range(gen_len)):
///     nextvalues = values[:, t + 1] if t < gen_len - 1 else 0.0
///     delta = rewards[:, t] + gamma * nextvalues - values[:, t]
///     lastgaelam = delta + gamma * lam * lastgaelam
/// advantages = stack(reversed list).T
/// returns = advantages + values
/// advantages = masked_whiten(advantages, mask).detach()
/// ```
///
/// Note that the recursion runs over *every* position, masked or not: masked positions have
/// zero value and zero reward, so a row whose mask starts late gets advantages at its leading
/// masked positions equal to the discounted sum of the later ones (they are then excluded by the
/// mask in every later mean). `gamma * lam` is formed in `f64` (Python floats) and applied in
/// `f32`, like torch.
///
/// Errors with [`RlError::ZeroMaskSum`] when the whole mask is zero (from `masked_whiten`).
pub fn compute_advantages<B: Backend>(
    values: Tensor<B, 2>,
    rewards: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    gamma: f64,
    lam: f64,
    whiten_rewards: bool,
) -> Result<Advantages<B>> {
    let [b, t_len] = rewards.dims();
    if values.dims() != [b, t_len] || mask.dims() != [b, t_len] {
        return Err(RlError::Shape(format!(
            "values {:?}, rewards {:?}, mask {:?}",
            values.dims(),
            rewards.dims(),
            mask.dims()
        )));
    }
    let values = values * mask.clone();
    let mut rewards = rewards * mask.clone();
    if whiten_rewards {
        rewards = masked_whiten(rewards, mask.clone(), false)?;
    }
    let gamma_lam = gamma * lam;
    let mut lastgaelam: Option<Tensor<B, 2>> = None;
    let mut reversed: Vec<Tensor<B, 2>> = Vec::with_capacity(t_len);
    for t in (0..t_len).rev() {
        let r_t = rewards.clone().slice([0..b, t..t + 1]);
        let v_t = values.clone().slice([0..b, t..t + 1]);
        let delta = if t < t_len - 1 {
            let next = values.clone().slice([0..b, t + 1..t + 2]);
            (r_t + next.mul_scalar(gamma)) - v_t
        } else {
            // `rewards[:, t] + gamma * 0.0 - values[:, t]`
            r_t - v_t
        };
        let gae = match lastgaelam {
            Some(prev) => delta + prev.mul_scalar(gamma_lam),
            None => delta,
        };
        reversed.push(gae.clone());
        lastgaelam = Some(gae);
    }
    reversed.reverse();
    let advantages = Tensor::cat(reversed, 1);
    let returns = advantages.clone() + values.clone();
    let advantages = masked_whiten(advantages, mask, true)?.detach();
    Ok(Advantages {
        values,
        advantages,
        returns,
    })
}
