//! Data parallelism on burn-collective (`burn::collective`): N peers each hold a replica of the
//! model, take their share of every batch ([`shard`]), and sum their token-weighted gradients
//! with an all-reduce ([`Peer::all_reduce_grads`]) so that every replica applies the update one
//! device would compute on the whole batch. Several nodes (processes, machines) are joined over
//! TCP ([`nodes`]): burn-collective sums the peers of a node, the link sums the nodes.
//!
//! - [`topology`]: how many peers, on how many nodes, node 0's address; the `CollectiveConfig`
//!   of a node's peers.
//! - [`nodes`]: the TCP link between nodes (why not burn-collective's global layer: see there).
//! - [`shard`]: which rows of a batch a peer takes, and its weight in a token-averaged loss.
//! - [`peer`]: one peer's collective operations (gradients, scalars).
//! - [`launch`]: runs one job per local peer on its own thread, registers the peers, and makes
//!   the others fail (instead of waiting forever) when one of them stops with an error.
//!
//! Peers are identified by their global rank (`PeerId(rank)`); rank 0 is the main peer, the one
//! that writes checkpoints, metrics and progress. Gradients are matched across replicas by the
//! order in which the module visits its parameters (the same in every replica of one
//! architecture), not by burn's `ParamId`, so replicas loaded separately (other processes, other
//! machines) line up.

pub mod launch;
pub mod nodes;
pub mod peer;
pub mod shard;
pub mod topology;

pub use launch::{run_local_peers, PeerJob};
pub use peer::Peer;
pub use shard::{share, token_weight};
pub use topology::Topology;

/// burn's CPU backends keep one random generator per process, shared by every local peer. A
/// peer holds this while it seeds the generator and draws its initial parameters, so that its
/// draws are the seeded sequence (what one device draws) whatever the other peers do meanwhile.
pub fn seeded_draws() -> std::sync::MutexGuard<'static, ()> {
    static DRAWS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    DRAWS.lock().unwrap_or_else(|e| e.into_inner())
}

/// What stops a data-parallel run.
#[derive(Debug, thiserror::Error)]
pub enum ParallelError {
    #[error("{0}")]
    Config(String),
    /// A collective operation failed (burn-collective's error, with what was being done).
    #[error("peer {rank}: {what} failed: {detail}")]
    Collective {
        rank: usize,
        what: &'static str,
        detail: String,
    },
    /// Replicas disagree on what they reduce (another model, another mode).
    #[error("peer {rank}: the replicas disagree: {detail}")]
    Mismatch { rank: usize, detail: String },
}
