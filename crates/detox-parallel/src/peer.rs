//! One peer's collective operations: the sum of every replica's gradients, and the sum of a few
//! scalars (losses, token counts, moments). Each operation waits at most the peer's timeout for
//! the other peers, so a peer that died (another process, another machine) makes this one fail
//! with an error instead of waiting forever. A sum is burn-collective's over this node's peers,
//! then, on a multi-node run, the [`NodeLink`]'s over the nodes.

use std::collections::HashSet;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use burn::collective::{all_reduce, CollectiveError, PeerId, ReduceOperation};
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::TensorPrimitive;

use crate::nodes::NodeLink;
use crate::ParallelError;

/// The default wait for the other peers at one collective operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A peer of a data-parallel run: its global rank among `world` peers.
#[derive(Debug, Clone)]
pub struct Peer {
    pub rank: usize,
    pub world: usize,
    /// How long one collective operation waits for the other peers.
    pub timeout: Duration,
    /// Peers in this process (summed by burn-collective; with one, it is not used).
    pub local_peers: usize,
    /// The same local peer of the other nodes, on a multi-node run.
    pub link: Option<Arc<NodeLink>>,
}

impl Peer {
    /// Peer `rank` of `world`, all in this process.
    pub fn new(rank: usize, world: usize) -> Self {
        Self {
            rank,
            world,
            timeout: DEFAULT_TIMEOUT,
            local_peers: world,
            link: None,
        }
    }

    /// burn-collective's id of this peer.
    pub fn id(&self) -> PeerId {
        PeerId(self.rank as u32)
    }

    /// Whether this is the main peer (rank 0): the one that writes checkpoints, metrics and
    /// progress.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// The element-wise sum of `values` over all peers (every peer passes as many).
    pub fn all_reduce_sum<B: Backend>(
        &self,
        values: &[f32],
        device: &B::Device,
    ) -> Result<Vec<f32>, ParallelError> {
        let t = Tensor::<B, 1>::from_data(TensorData::new(values.to_vec(), [values.len()]), device);
        let mut sum: Vec<f32> = self
            .reduce_local(t, "summing scalars")?
            .into_data()
            .convert::<f32>()
            .into_vec()
            .expect("float data");
        self.reduce_nodes(&mut sum, "summing scalars")?;
        Ok(sum)
    }

    /// Rows `range` of `n` rows (each of its own length), held here as `mine`, gathered with the
    /// other peers' rows into all `n` (every peer holds a disjoint range; together they cover
    /// `0..n`). Values travel as f32 sums with zeros elsewhere, so they arrive exactly (token ids
    /// included, below 2^24).
    pub fn all_gather_rows<B: Backend>(
        &self,
        n: usize,
        range: std::ops::Range<usize>,
        mine: &[Vec<f32>],
        device: &B::Device,
    ) -> Result<Vec<Vec<f32>>, ParallelError> {
        assert_eq!(range.len(), mine.len(), "one row per index of the range");
        let mut lens = vec![0f32; n];
        for (i, row) in range.clone().zip(mine) {
            lens[i] = row.len() as f32;
        }
        let lens: Vec<usize> = self
            .all_reduce_sum::<B>(&lens, device)?
            .into_iter()
            .map(|l| l as usize)
            .collect();
        let width = lens.iter().copied().max().unwrap_or(0);
        if width == 0 {
            return Ok(vec![Vec::new(); n]);
        }
        let mut flat = vec![0f32; n * width];
        for (i, row) in range.zip(mine) {
            flat[i * width..i * width + row.len()].copy_from_slice(row);
        }
        let flat = self.all_reduce_sum::<B>(&flat, device)?;
        Ok(lens
            .iter()
            .enumerate()
            .map(|(i, &l)| flat[i * width..i * width + l].to_vec())
            .collect())
    }

    /// Replaces every gradient of `module`'s parameters in `grads` by its sum over all peers.
    /// Gradients are matched by the order in which `module` visits its parameters (the same in
    /// every replica of one architecture); the peers first check that they hold as many.
    pub fn all_reduce_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: &M,
        mut grads: GradientsParams,
        device: &B::Device,
    ) -> Result<GradientsParams, ParallelError> {
        let count = grads.len();
        let total = self.all_reduce_sum::<B::InnerBackend>(&[count as f32], device)?[0];
        if total != (count * self.world) as f32 {
            return Err(ParallelError::Mismatch {
                rank: self.rank,
                detail: format!(
                    "this peer has {count} gradient tensors, the {} peers {total} in all (another model or --mode on some peer?)",
                    self.world
                ),
            });
        }
        let mut v = ReduceGrads::<B> {
            peer: self,
            grads: &mut grads,
            seen: HashSet::new(),
            bucket: Vec::new(),
            pending: Vec::new(),
            err: None,
            _b: std::marker::PhantomData,
        };
        module.visit(&mut v);
        if let Some(e) = v.err {
            return Err(e);
        }
        // the nodes' sum of every gradient at once: one round trip per step, not per tensor
        let (mut bucket, pending) = (v.bucket, v.pending);
        if !pending.is_empty() {
            self.reduce_nodes(&mut bucket, "summing gradients")?;
            for (range, register) in pending {
                register(&mut grads, bucket[range].to_vec());
            }
        }
        Ok(grads)
    }

    /// `module` with the main peer's parameter values on every peer (what torch's
    /// DistributedDataParallel does at construction): replicas then start equal even where their
    /// random initialization (a fresh LoRA adapter) drew differently. Parameter ids and
    /// `require_grad` are kept.
    pub fn broadcast_module<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: M,
    ) -> Result<M, ParallelError> {
        let mut m = BroadcastParams::<B> {
            peer: self,
            err: None,
            _b: std::marker::PhantomData,
        };
        let module = module.map(&mut m);
        match m.err {
            Some(e) => Err(e),
            None => Ok(module),
        }
    }

    /// The sum of `tensor` over every peer: this node's, then the nodes'.
    fn reduce<B: Backend, const D: usize>(
        &self,
        tensor: Tensor<B, D>,
        what: &'static str,
    ) -> Result<Tensor<B, D>, ParallelError> {
        let tensor = self.reduce_local(tensor, what)?;
        if self.link.is_none() {
            return Ok(tensor);
        }
        let (device, shape) = (tensor.device(), tensor.shape());
        let mut values: Vec<f32> = tensor
            .into_data()
            .convert::<f32>()
            .into_vec()
            .expect("float data");
        self.reduce_nodes(&mut values, what)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), &device))
    }

    /// burn-collective's all-reduce (sum) over this node's peers, waiting at most
    /// [`Peer::timeout`]; `tensor` itself when this node has one peer (burn-collective is not
    /// used then).
    fn reduce_local<B: Backend, const D: usize>(
        &self,
        tensor: Tensor<B, D>,
        what: &'static str,
    ) -> Result<Tensor<B, D>, ParallelError> {
        if self.local_peers == 1 {
            return Ok(tensor);
        }
        let id = self.id();
        let primitive = tensor.into_primitive().tensor();
        let result = with_timeout(self.timeout, move || {
            all_reduce::<B>(id, primitive, ReduceOperation::Sum)
        });
        let sum = self.answer(what, result)?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(sum)))
    }

    /// The sum over the nodes (nothing to do on a run of one node).
    fn reduce_nodes(&self, values: &mut [f32], what: &'static str) -> Result<(), ParallelError> {
        match &self.link {
            None => Ok(()),
            Some(link) => link
                .sum(values, what)
                .map_err(|detail| ParallelError::Collective {
                    rank: self.rank,
                    what,
                    detail,
                }),
        }
    }

    /// A collective operation's result as this crate's error, `None` meaning no answer in time.
    fn answer<T>(
        &self,
        what: &'static str,
        result: Waited<Result<T, CollectiveError>>,
    ) -> Result<T, ParallelError> {
        if let Some(detail) = result.failure(self.timeout) {
            return Err(ParallelError::Collective {
                rank: self.rank,
                what,
                detail,
            });
        }
        match result {
            Waited::Done(Ok(t)) => Ok(t),
            Waited::Done(Err(e)) => Err(self.collective_error(what, e)),
            _ => unreachable!("failure() covers the rest"),
        }
    }

    fn collective_error(&self, what: &'static str, e: CollectiveError) -> ParallelError {
        let detail = match e {
            CollectiveError::LocalServerMissing => {
                "the collective was stopped because another peer failed".to_string()
            }
            other => format!("{other:?}"),
        };
        ParallelError::Collective {
            rank: self.rank,
            what,
            detail,
        }
    }
}

/// Runs `f` and waits at most `timeout` for its result: on its own thread when there is a limit
/// (a late thread is left to finish or to end with the process), on this one when there is none
/// (`Duration::MAX`, the default: no thread per collective call). A panic in `f` (burn-collective's
/// server stopped) is [`Waited::Broken`] either way.
pub(crate) fn with_timeout<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Waited<T> {
    if timeout == Duration::MAX {
        return match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(t) => Waited::Done(t),
            Err(_) => Waited::Broken,
        };
    }
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("detox-collective".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn a thread");
    match rx.recv_timeout(timeout) {
        Ok(t) => Waited::Done(t),
        Err(mpsc::RecvTimeoutError::Timeout) => Waited::TimedOut,
        // `f` panicked (burn-collective's server stopped)
        Err(mpsc::RecvTimeoutError::Disconnected) => Waited::Broken,
    }
}

/// What waiting for a collective operation gave.
pub(crate) enum Waited<T> {
    Done(T),
    TimedOut,
    Broken,
}

impl<T> Waited<T> {
    /// The error text of an operation that did not answer (`None` when it did).
    pub(crate) fn failure(&self, timeout: Duration) -> Option<String> {
        match self {
            Waited::Done(_) => None,
            Waited::TimedOut => Some(format!(
                "no answer from the other peers within {} s (did a peer stop?)",
                timeout.as_secs()
            )),
            Waited::Broken => Some("burn-collective's server stopped (see the error above)".into()),
        }
    }
}

struct BroadcastParams<'a, B: AutodiffBackend> {
    peer: &'a Peer,
    err: Option<ParallelError>,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for BroadcastParams<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if self.err.is_some() {
            return param;
        }
        param.map(|t| {
            let require_grad = t.is_require_grad();
            // burn-collective 0.21 has no broadcast across nodes: a sum in which only the main
            // peer's tensor is not zero gives the same.
            let inner = t.clone().inner();
            let sent = if self.peer.is_main() {
                inner
            } else {
                inner.zeros_like()
            };
            match self.peer.reduce(sent, "copying the main peer's parameters") {
                Ok(p) => {
                    let t = Tensor::<B, D>::from_inner(p);
                    if require_grad {
                        t.require_grad()
                    } else {
                        t
                    }
                }
                Err(e) => {
                    self.err = Some(e);
                    t
                }
            }
        })
    }
}

/// Puts a gradient, summed over the nodes, back in place (its parameter, shape and device kept).
type Register = Box<dyn FnOnce(&mut GradientsParams, Vec<f32>)>;

struct ReduceGrads<'a, B: AutodiffBackend> {
    peer: &'a Peer,
    grads: &'a mut GradientsParams,
    /// A parameter reached twice (a shared module) is reduced once.
    seen: HashSet<ParamId>,
    /// On a multi-node run: every gradient summed over this node, one after the other, to be
    /// summed over the nodes in one operation; where each one lies in it.
    bucket: Vec<f32>,
    pending: Vec<(std::ops::Range<usize>, Register)>,
    err: Option<ParallelError>,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ReduceGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.err.is_some() || !self.seen.insert(param.id) {
            return;
        }
        let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) else {
            return;
        };
        if self.peer.link.is_none() {
            match self.peer.reduce(g, "summing gradients") {
                Ok(sum) => self.grads.register::<B::InnerBackend, D>(param.id, sum),
                Err(e) => self.err = Some(e),
            }
            return;
        }
        let g = match self.peer.reduce_local(g, "summing gradients") {
            Ok(g) => g,
            Err(e) => {
                self.err = Some(e);
                return;
            }
        };
        let (id, device, shape) = (param.id, g.device(), g.shape());
        let values = g
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("float data");
        let start = self.bucket.len();
        self.bucket.extend_from_slice(&values);
        let register: Register = Box::new(move |grads, sum| {
            let t = Tensor::<B::InnerBackend, D>::from_data(TensorData::new(sum, shape), &device);
            grads.register::<B::InnerBackend, D>(id, t);
        });
        self.pending.push((start..self.bucket.len(), register));
    }
}
