//! The data-parallel flags of `finetune` and `ppo` (`--data-parallel N`, `--nodes K`,
//! `--node-rank R`, `--global-address HOST:PORT`, `--peer-timeout`) and the topology they make
//! (`detox-parallel`). `ppo` also reads them from its config's `[parallel]` section; flags win.
//!
//! Inside a process burn-collective sums the peers; between processes (machines)
//! `detox_parallel::nodes` does, over TCP around node 0 (burn-collective 0.21's own multi-node
//! layer is not usable yet: upstream tracel-ai/burn#4549).

use std::time::Duration;

use anyhow::Result;
use detox_parallel::Topology;
use detox_ppo::lab::ParallelSettings;

#[derive(clap::Args, Debug, Clone)]
pub struct ParallelArgs {
    /// Train on N devices of --device at once (data parallelism on burn-collective): every batch
    /// is split among the peers, their token-weighted gradients are summed, and each applies
    /// the same update, so a step equals one device's on the whole batch. `cuda`: GPUs 0..N-1;
    /// `cpu`: N peers sharing the CPU's cores (no speed-up; a correctness check). Default 1.
    #[arg(long, value_name = "N")]
    pub data_parallel: Option<usize>,
    /// Spread the run over K processes (machines), each with --data-parallel peers: start the
    /// same command on each with its own --node-rank and the same --global-address. Default 1.
    #[arg(long, value_name = "K")]
    pub nodes: Option<usize>,
    /// This process's node, 0..K. Node 0 holds the main peer: it listens on --global-address
    /// and alone writes the run directory (checkpoints, metrics, final model).
    #[arg(long, value_name = "R", default_value_t = 0)]
    pub node_rank: usize,
    /// Node 0's HOST:PORT, where it listens for the other nodes (e.g. 10.0.0.1:29500).
    #[arg(long, value_name = "HOST:PORT")]
    pub global_address: Option<String>,
    /// Seconds a peer waits for the others (and a node for the other nodes to join) before it
    /// stops with an error (default: no limit; a peer or node that fails stops the others at
    /// once anyway). Must exceed the main peer's evaluation and checkpoint time.
    #[arg(long, value_name = "SECS")]
    pub peer_timeout: Option<u64>,
}

impl ParallelArgs {
    /// The run's layout with no config file, checked.
    pub fn topology(&self) -> Result<Topology> {
        self.topology_with(&ParallelSettings::default())
    }

    /// The run's layout, flags over the config's `[parallel]` section, checked.
    pub fn topology_with(&self, config: &ParallelSettings) -> Result<Topology> {
        let nodes = self.nodes.unwrap_or(config.nodes);
        let t = Topology {
            devices: self.data_parallel.unwrap_or(config.data_parallel),
            nodes,
            node_rank: self.node_rank,
            // the config's address serves a multi-node run only (`--nodes 1` overrides it)
            address: self
                .global_address
                .clone()
                .or_else(|| config.global_address.clone().filter(|_| nodes > 1)),
        };
        t.validate()?;
        Ok(t)
    }

    /// How long a peer waits for the others, flags over the config.
    pub fn timeout_with(&self, config: &ParallelSettings) -> Duration {
        self.peer_timeout
            .or(config.peer_timeout)
            .map_or(Duration::MAX, |s| Duration::from_secs(s.max(1)))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout_with(&ParallelSettings::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        p: ParallelArgs,
    }

    fn parse(argv: &[&str]) -> ParallelArgs {
        Cli::try_parse_from(std::iter::once("detox").chain(argv.iter().copied()))
            .unwrap()
            .p
    }

    #[test]
    fn flags_override_the_config_section() {
        let config = ParallelSettings {
            data_parallel: 2,
            nodes: 2,
            global_address: Some("10.0.0.1:29500".into()),
            peer_timeout: Some(60),
        };
        let t = parse(&["--node-rank", "1"]).topology_with(&config).unwrap();
        assert_eq!((t.devices, t.nodes, t.node_rank), (2, 2, 1));
        assert_eq!(t.address.as_deref(), Some("10.0.0.1:29500"));
        let a = parse(&[
            "--data-parallel",
            "3",
            "--nodes",
            "1",
            "--peer-timeout",
            "5",
        ]);
        let t = a.topology_with(&config).unwrap();
        assert_eq!((t.devices, t.nodes, t.address), (3, 1, None));
        assert_eq!(a.timeout_with(&config), Duration::from_secs(5));
        let a = parse(&["--nodes", "1", "--global-address", "127.0.0.1:1"]);
        let err = a.topology_with(&config).unwrap_err().to_string();
        assert!(err.contains("--global-address"), "{err}");
        assert_eq!(parse(&[]).timeout_with(&config), Duration::from_secs(60));
    }

    #[test]
    fn no_flags_and_no_config_is_one_device() {
        let a = parse(&[]);
        let t = a.topology().unwrap();
        assert_eq!((t.devices, t.nodes, t.world()), (1, 1, 1));
        assert_eq!(a.timeout(), Duration::MAX);
        let err = parse(&["--nodes", "2"]).topology().unwrap_err().to_string();
        assert!(err.contains("--global-address"), "{err}");
    }
}
