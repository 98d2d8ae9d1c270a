//! The data-parallel flags of `finetune` and `ppo` (`--data-parallel N`, `--peer-timeout`) and
//! the topology they make (`detox-parallel`).
//!
//! One process only: burn-collective 0.21's multi-node layer is not usable yet (upstream
//! tracel-ai/burn#4549: sequential global all-reduces reuse transfer ids; the tensor data
//! service can miss the wake-up of a tensor exposed while a download request waits, and hangs;
//! global broadcast is unimplemented). `detox-parallel`'s topology already carries nodes and
//! addresses; the flags come when burn's global layer works.

use std::time::Duration;

use anyhow::Result;
use detox_parallel::Topology;

#[derive(clap::Args, Debug, Clone)]
pub struct ParallelArgs {
    /// Train on N devices of --device at once (data parallelism on burn-collective): every batch
    /// is split among N replicas, their token-weighted gradients are summed, and each applies
    /// the same update, so a step equals one device's on the whole batch. `cuda`: GPUs 0..N-1;
    /// `cpu`: N peers sharing the CPU's cores (no speed-up; a correctness check).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub data_parallel: usize,
    /// Seconds a peer waits for the others at one collective step before it stops with an error
    /// (default: no limit; a peer that fails stops the others at once anyway). Must exceed the
    /// main peer's evaluation and checkpoint time.
    #[arg(long, value_name = "SECS")]
    pub peer_timeout: Option<u64>,
}

impl ParallelArgs {
    /// The run's layout, checked.
    pub fn topology(&self) -> Result<Topology> {
        let t = Topology::local(self.data_parallel);
        t.validate()?;
        Ok(t)
    }

    pub fn timeout(&self) -> Duration {
        self.peer_timeout
            .map_or(Duration::MAX, |s| Duration::from_secs(s.max(1)))
    }
}
