//! How a data-parallel run is laid out: `devices` peers on each of `nodes` machines (or
//! processes), this process being node `node_rank`; with several nodes, the address of node 0,
//! where the others join ([`crate::nodes`]).
//!
//! Global ranks: node `r`'s local peer `l` is rank `r · devices + l`; rank 0 (node 0's first
//! peer) is the main peer.

use burn::collective::CollectiveConfig;

use crate::ParallelError;

/// The peers of a run and where this process stands among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Peers (devices) on each node.
    pub devices: usize,
    /// Machines (processes) in the run.
    pub nodes: usize,
    /// This process's node, `0..nodes`.
    pub node_rank: usize,
    /// Node 0's `HOST:PORT`, where it listens for the other nodes; required when `nodes > 1`.
    pub address: Option<String>,
}

impl Topology {
    /// `devices` peers in this one process.
    pub fn local(devices: usize) -> Self {
        Self {
            devices,
            nodes: 1,
            node_rank: 0,
            address: None,
        }
    }

    /// Peers in the whole run.
    pub fn world(&self) -> usize {
        self.devices * self.nodes
    }

    /// The global rank of this node's local peer `local`.
    pub fn global_rank(&self, local: usize) -> usize {
        self.node_rank * self.devices + local
    }

    /// Whether this process holds the main peer (rank 0).
    pub fn holds_main(&self) -> bool {
        self.node_rank == 0
    }

    /// Refuses impossible layouts, naming the flag at fault.
    pub fn validate(&self) -> Result<(), ParallelError> {
        let bad = |m: String| Err(ParallelError::Config(m));
        if self.devices == 0 {
            return bad("--data-parallel must be at least 1".into());
        }
        if self.nodes == 0 {
            return bad("--nodes must be at least 1".into());
        }
        if self.node_rank >= self.nodes {
            return bad(format!(
                "--node-rank {} is out of range for --nodes {} (0..{})",
                self.node_rank, self.nodes, self.nodes
            ));
        }
        match (&self.address, self.nodes > 1) {
            (None, true) => bad(format!(
                "--nodes {} needs --global-address HOST:PORT (where node 0 listens for the other nodes)",
                self.nodes
            )),
            (Some(_), false) => bad(
                "--global-address is for runs over several nodes: give --nodes too".into(),
            ),
            (Some(a), true) => host_port(a, "--global-address").map(|_| ()),
            (None, false) => Ok(()),
        }
    }

    /// burn-collective's configuration for this node's peers (the same on every peer of a
    /// node). burn-collective joins the peers of one process only; [`crate::nodes`] joins the
    /// processes.
    pub fn collective_config(&self) -> Result<CollectiveConfig, ParallelError> {
        self.validate()?;
        Ok(CollectiveConfig::default().with_num_devices(self.devices))
    }
}

/// `HOST:PORT` split into its parts; an error names `flag` and what was expected.
pub fn host_port<'a>(s: &'a str, flag: &str) -> Result<(&'a str, u16), ParallelError> {
    let bad = || {
        ParallelError::Config(format!(
            "{flag}: expected HOST:PORT (e.g. 10.0.0.1:3000), got {s:?}"
        ))
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains("://") {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_nodes(rank: usize) -> Topology {
        Topology {
            devices: 2,
            nodes: 2,
            node_rank: rank,
            address: Some("10.0.0.1:3000".into()),
        }
    }

    #[test]
    fn ranks_are_node_major_and_rank_zero_is_main() {
        let t = two_nodes(1);
        assert_eq!(t.world(), 4);
        assert_eq!(t.global_rank(0), 2);
        assert_eq!(t.global_rank(1), 3);
        assert!(!t.holds_main());
        assert!(two_nodes(0).holds_main());
        assert_eq!(Topology::local(3).world(), 3);
    }

    #[test]
    fn layouts_are_checked_with_the_flag_named() {
        assert!(Topology::local(2).validate().is_ok());
        assert!(two_nodes(1).validate().is_ok());
        let err = |t: Topology| t.validate().unwrap_err().to_string();
        assert!(err(Topology::local(0)).contains("--data-parallel"));
        let mut t = two_nodes(0);
        t.node_rank = 2;
        assert!(err(t).contains("--node-rank 2"));
        let mut t = two_nodes(0);
        t.address = None;
        assert!(err(t).contains("--global-address"));
        let mut t = Topology::local(1);
        t.address = two_nodes(0).address;
        assert!(err(t).contains("--nodes"));
        let mut t = two_nodes(0);
        t.address = Some("ws://10.0.0.1:3000".into());
        assert!(err(t).contains("--global-address"));
        let mut t = two_nodes(0);
        t.address = Some("10.0.0.1".into());
        assert!(err(t).contains("--global-address"));
    }

    #[test]
    fn the_collective_config_counts_this_node_s_peers() {
        let c = two_nodes(1).collective_config().unwrap();
        assert!(c.is_valid());
        let shown = c.to_string();
        assert!(shown.contains("num_devices: 2"), "{shown}");
        assert!(shown.contains("num_nodes: None"), "{shown}");
    }
}
