//! Per-token log-probabilities and entropies over a vocabulary on burn-flex (inference) and
//! `Autodiff<Flex>` (training): trl's `logprobs_from_logits` (`log_softmax` then `gather`) with
//! its backward, and `entropy_from_logits` of detached logits, one parallel pass per row.
//!
//! Why: composed of burn ops, `log_softmax` over `[rows, 32128]` logits is five
//! single-threaded passes (max, subtract, a scalar `expf`, sum, log, subtract) over a tensor
//! that is a strided view (trl drops the last position with a slice), its backward as many
//! again, and the PPO loss's entropy statistic another eight: on a T5-base PPO step ~1.5 s on
//! one core while the other waited (BENCHMARKS.md). Here each row is read in place, the
//! exponentials go through the vectorized `exp` of `kernels_math`, sums are accumulated in f64,
//! and only the `[rows]` results (forward) or the dense gradient (backward) are written.
//!
//! Same formulas as the composition: `log p[label] = (x[label] - max) - ln(sum(exp(x - max)))`;
//! `entropy = logsumexp(x) - sum(softmax(x) * x)`; the gradient of `log p[label]` with respect
//! to the logits is `onehot(label) - softmax(x)`.

use std::cell::RefCell;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::kernels::{new_flex, primitive_as, tensor_of};
use crate::kernels_autodiff::{contiguous, from_ad, into_ad, Ad, AdTensor};
use crate::kernels_math::exp_in_place;

thread_local! {
    /// One row's `x - max` / exponentials, kept per worker thread.
    static ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `[b, t, v]` f32 logits read in place: rows `(i, p)` start at `offset + i*s0 + p*s1`, and
/// the `v` values of a row are contiguous.
#[derive(Clone)]
struct Rows {
    t: FlexTensor,
    dims: [usize; 3],
    s: [usize; 2],
    offset: usize,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "logits {:?}", self.dims)
    }
}

impl Rows {
    fn of(t: FlexTensor) -> Result<Self, FlexTensor> {
        let l = t.layout();
        let (shape, st) = (l.shape(), l.strides());
        if t.dtype() != DType::F32 || st.len() != 3 || st[2] != 1 || st[..2].iter().any(|&x| x < 0)
        {
            return Err(t);
        }
        let (dims, s, offset) = (
            [shape[0], shape[1], shape[2]],
            [st[0] as usize, st[1] as usize],
            l.start_offset(),
        );
        Ok(Self { t, dims, s, offset })
    }

    fn count(&self) -> usize {
        self.dims[0] * self.dims[1]
    }

    /// Row `r` (row-major over `[b, t]`).
    fn row(&self, r: usize) -> &[f32] {
        let (i, p) = (r / self.dims[1], r % self.dims[1]);
        &self.t.storage::<f32>()[self.offset + i * self.s[0] + p * self.s[1]..][..self.dims[2]]
    }
}

/// `(max, sum(exp(x - max)))` of a row, the sum accumulated in f64; `scratch` receives the
/// exponentials.
fn max_and_sum(x: &[f32], scratch: &mut Vec<f32>) -> (f32, f64) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    scratch.clear();
    scratch.extend(x.iter().map(|&v| v - max));
    exp_in_place(scratch);
    (max, scratch.iter().map(|&e| e as f64).sum())
}

/// The labels as indices, when every one lies in `0..v`.
fn label_indices<B: Backend>(labels: &Tensor<B, 2, Int>, v: usize) -> Option<Vec<usize>> {
    let values = labels.to_data().convert::<i64>().into_vec::<i64>().ok()?;
    values
        .into_iter()
        .map(|l| usize::try_from(l).ok().filter(|&l| l < v))
        .collect()
}

/// Logits this module's kernels take: burn-flex's, or autodiff's over burn-flex (with the
/// autodiff tensor, for its graph node), read as [`Rows`].
enum Logits {
    Flex(Rows),
    Ad(AdTensor, Rows),
}

impl Logits {
    /// `t` as kernel input when it is burn-flex or `Autodiff<Flex>` f32 with a contiguous last
    /// dimension; else `t` back.
    fn of<B: Backend>(t: Tensor<B, 3>) -> Result<Self, Tensor<B, 3>> {
        match primitive_as::<FlexTensor, B, 3>(t) {
            Ok(f) => Rows::of(f).map(Self::Flex).map_err(tensor_of),
            Err(t) => {
                let x = into_ad(t)?;
                match Rows::of(x.primitive.clone()) {
                    Ok(rows) => Ok(Self::Ad(x, rows)),
                    Err(_) => Err(from_ad(x)),
                }
            }
        }
    }

    fn rows(&self) -> &Rows {
        match self {
            Self::Flex(rows) | Self::Ad(_, rows) => rows,
        }
    }

    /// The logits as the tensor they came as.
    fn back<B: Backend>(self) -> Tensor<B, 3> {
        match self {
            Self::Flex(rows) => tensor_of(rows.t),
            Self::Ad(x, _) => from_ad(x),
        }
    }
}

/// `log_softmax(logits)[label]` per row, `[b, t]`, for `[b, t, v]` burn-flex or
/// `Autodiff<Flex>` f32 logits whose last dimension is contiguous (slices of the model's logits
/// are) and labels in `0..v`; else both back. Under autodiff the logits get their gradient.
#[allow(clippy::type_complexity)]
pub fn logprobs_gather<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
) -> Result<Tensor<B, 2>, (Tensor<B, 3>, Tensor<B, 2, Int>)> {
    let [b, t, v] = logits.dims();
    if labels.dims() != [b, t] || b * t * v == 0 {
        return Err((logits, labels));
    }
    let logits = match Logits::of(logits) {
        Ok(logits) => logits,
        Err(logits) => return Err((logits, labels)),
    };
    // read only once the logits are known to be on the CPU
    let Some(idx) = label_indices(&labels, v) else {
        return Err((logits.back(), labels));
    };
    let (out, lse) = gathered(logits.rows(), &idx);
    let out = new_flex(out, &[b, t]);
    match logits {
        Logits::Flex(_) => Ok(tensor_of(out)),
        Logits::Ad(x, rows) => {
            let out = match LogprobsBackward
                .prepare::<NoCheckpointing>([x.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish((rows, idx, lse), out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            };
            Ok(from_ad(out))
        }
    }
}

/// Each row's `log p[label]` and log-sum-exp.
fn gathered(rows: &Rows, idx: &[usize]) -> (Vec<f32>, Vec<f32>) {
    (0..rows.count())
        .into_par_iter()
        .map(|r| {
            let x = rows.row(r);
            ROW.with_borrow_mut(|scratch| {
                let (max, sum) = max_and_sum(x, scratch);
                let log_sum = sum.ln() as f32;
                ((x[idx[r]] - max) - log_sum, max + log_sum)
            })
        })
        .unzip()
}

#[derive(Debug)]
struct LogprobsBackward;

impl Backward<Flex, 1> for LogprobsBackward {
    /// The logits, the labels and each row's log-sum-exp.
    type State = (Rows, Vec<usize>, Vec<f32>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (rows, idx, lse) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let g = contiguous(&g);
            let gs = crate::kernels::data(&g);
            let v = rows.dims[2];
            let mut d = vec![0.0f32; rows.count() * v];
            // d x = g (onehot(label) - exp(x - lse))
            d.par_chunks_mut(v).enumerate().for_each(|(r, out)| {
                for (o, &x) in out.iter_mut().zip(rows.row(r)) {
                    *o = x - lse[r];
                }
                exp_in_place(out);
                let gr = gs[r];
                for o in out.iter_mut() {
                    *o *= -gr;
                }
                out[idx[r]] += gr;
            });
            new_flex(d, &rows.dims)
        });
    }
}

/// trl's `entropy_from_logits`, `logsumexp(x) - sum(softmax(x) * x)` per row, `[b, t]`, for
/// `[b, t, v]` burn-flex f32 logits or `Autodiff<Flex>` ones that need no gradient (the PPO
/// loss reports it of detached logits), last dimension contiguous; else the logits back.
pub fn entropy<B: Backend>(logits: Tensor<B, 3>) -> Result<Tensor<B, 2>, Tensor<B, 3>> {
    let [b, t, v] = logits.dims();
    if b * t * v == 0 {
        return Err(logits);
    }
    let logits = Logits::of(logits)?;
    if let Logits::Ad(x, _) = &logits {
        if x.is_tracked() {
            return Err(logits.back());
        }
    }
    let rows = logits.rows();
    let out: Vec<f32> = (0..rows.count())
        .into_par_iter()
        .map(|r| {
            let x = rows.row(r);
            ROW.with_borrow_mut(|scratch| {
                let (max, sum) = max_and_sum(x, scratch);
                let weighted: f64 = scratch
                    .iter()
                    .zip(x)
                    .map(|(&e, &x)| e as f64 * x as f64)
                    .sum();
                ((max as f64 + sum.ln()) - weighted / sum) as f32
            })
        })
        .collect();
    let out = new_flex(out, &[b, t]);
    Ok(match logits {
        Logits::Flex(_) => tensor_of(out),
        Logits::Ad(..) => tensor_of(<Ad as AutodiffBackend>::from_inner(out)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::{log_softmax, softmax};
    use burn::tensor::Tolerance;

    use burn::backend::Autodiff;

    type N = Autodiff<burn::backend::NdArray<f32>>;

    use crate::test_normal as normal;

    /// `[b, n, v]` logits sliced to `[b, n - 1, v]` as trl does, labels, and the upstream
    /// gradient; returns the log-probabilities, their logits' gradient and the entropies.
    fn run<B: AutodiffBackend>(fused: bool, [b, n, v]: [usize; 3], seed: u64) -> Vec<TensorData> {
        let dev = Default::default();
        let full = Tensor::<B, 3>::from_data(
            TensorData::new(normal(b * n * v, 3.0, seed), [b, n, v]),
            &dev,
        )
        .require_grad();
        let logits = full.clone().slice([0..b, 0..n - 1, 0..v]);
        let labels: Vec<i64> = (0..b * (n - 1)).map(|i| ((i * 7919) % v) as i64).collect();
        let labels = Tensor::<B, 2, Int>::from_data(TensorData::new(labels, [b, n - 1]), &dev);
        let u = Tensor::<B, 2>::from_data(
            TensorData::new(normal(b * (n - 1), 1.0, seed + 1), [b, n - 1]),
            &dev,
        );
        let (lp, ent) = if fused {
            let lp = logprobs_gather(logits.clone(), labels)
                .unwrap_or_else(|_| panic!("takes the kernel"));
            let ent = entropy(logits.detach()).unwrap_or_else(|_| panic!("takes the kernel"));
            (lp, ent)
        } else {
            let lp = log_softmax(logits.clone(), 2)
                .gather(2, labels.unsqueeze_dim::<3>(2))
                .squeeze_dim::<2>(2);
            let x = logits.detach();
            let m = x.clone().max_dim(2);
            let lse = ((x.clone() - m.clone()).exp().sum_dim(2).log() + m).squeeze_dim::<2>(2);
            let ent = lse - (softmax(x.clone(), 2) * x).sum_dim(2).squeeze_dim::<2>(2);
            (lp, ent)
        };
        let grads = (lp.clone() * u).sum().backward();
        vec![
            lp.into_data(),
            full.grad(&grads).unwrap().into_data(),
            ent.into_data(),
        ]
    }

    #[test]
    fn match_burns_composition_forward_and_backward() {
        for dims in [[2, 5, 7], [3, 9, 1000], [1, 2, 32128]] {
            let fused = run::<Ad>(true, dims, 21);
            let generic = run::<N>(false, dims, 21);
            for (f, g) in fused.iter().zip(&generic).take(2) {
                f.assert_approx_eq::<f32>(g, Tolerance::absolute(2e-5).set_relative(1e-5));
            }
            // the entropy against f64 arithmetic (burn's f32 composition drifts by ~1e-4
            // relative over 32128 logits: it sums in f32)
            let [b, n, v] = dims;
            let x = normal(b * n * v, 3.0, 21);
            let want: Vec<f32> = (0..b)
                .flat_map(|i| (0..n - 1).map(move |p| (i, p)))
                .map(|(i, p)| {
                    let row: Vec<f64> = x[(i * n + p) * v..][..v]
                        .iter()
                        .map(|&x| x as f64)
                        .collect();
                    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = row.iter().map(|x| (x - m).exp()).sum();
                    let px: f64 = row.iter().map(|x| (x - m).exp() * x).sum::<f64>() / z;
                    (m + z.ln() - px) as f32
                })
                .collect();
            fused[2].assert_approx_eq::<f32>(
                &TensorData::new(want, [b, n - 1]),
                Tolerance::absolute(1e-5).set_relative(1e-6),
            );
            fused[2].assert_approx_eq::<f32>(&generic[2], Tolerance::relative(3e-4));
        }
    }

    #[test]
    fn inference_tensors_take_the_kernel_too_and_other_backends_do_not() {
        let dev = Default::default();
        let x = Tensor::<Flex, 3>::from_data(
            TensorData::new(vec![0.0f32, 1.0, 2.0, 3.0], [1, 2, 2]),
            &dev,
        );
        let l = Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![1i64, 0], [1, 2]), &dev);
        let lp = logprobs_gather(x.clone(), l)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let want = [1.0 - (1f32.exp() + 1.0).ln(), -(1f32.exp() + 1.0).ln()];
        for (a, b) in lp.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert!(entropy(x).is_ok());
        let n = Tensor::<N, 3>::zeros([1, 2, 2], &Default::default());
        let nl = Tensor::<N, 2, Int>::zeros([1, 2], &Default::default());
        assert!(logprobs_gather(n.clone(), nl).is_err());
        assert!(entropy(n).is_err());
        // a label outside the vocabulary: the generic path decides what happens
        let l = Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![2i64, 0], [1, 2]), &dev);
        let x = Tensor::<Flex, 3>::zeros([1, 2, 2], &dev);
        assert!(logprobs_gather(x, l).is_err());
        // tracked logits: the entropy is for statistics only, the generic path keeps its graph
        let t = Tensor::<Ad, 3>::zeros([1, 2, 2], &Default::default()).require_grad();
        assert!(entropy(t).is_err());
    }
}
