//! The link between the nodes (processes, machines) of a multi-node run: plain TCP, a star
//! around node 0.
//!
//! Why not burn-collective's global layer: in burn 0.21 it does not survive a training loop
//! (tracel-ai/burn#4549: sequential global all-reduces reuse transfer ids, the ring strategy
//! panics and the others hang; its tensor data service can miss a wake-up; global broadcast is
//! `unimplemented!`). So burn-collective sums the peers inside a process, and this module sums
//! the processes: node 0 listens on the run's address, every other node's local peer `l`
//! connects to it and pairs with node 0's local peer `l`. A sum is each node's vector sent to
//! node 0, added there in node order, and sent back, so every peer gets the same bits.
//!
//! Every message carries the operation's sequence number and length, so nodes that drift apart
//! (another model, another batch) stop with an error instead of adding unrelated numbers. A
//! node that stops closes its connections, and the nodes waiting for it fail at once.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{ParallelError, Topology};

/// What a joining node sends first.
const HELLO: &[u8; 8] = b"DETOXN01";

/// One local peer's connections to the same local peer of the other nodes: on node 0 one per
/// other node (in node order), elsewhere the one to node 0.
pub struct NodeLink {
    node_rank: usize,
    /// (next operation's sequence number, streams)
    state: Mutex<(u64, Vec<TcpStream>)>,
}

impl std::fmt::Debug for NodeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeLink(node {})", self.node_rank)
    }
}

impl NodeLink {
    /// Replaces `values` by their element-wise sum over the nodes (every node passes as many,
    /// in the same order of operations). `what` names the operation in errors.
    pub fn sum(&self, values: &mut [f32], what: &str) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let seq = state.0;
        state.0 += 1;
        let streams = &mut state.1;
        if self.node_rank == 0 {
            let mut buf = vec![0f32; values.len()];
            for (i, s) in streams.iter_mut().enumerate() {
                let node = i + 1;
                read_message(s, seq, &mut buf, node, what)?;
                for (v, b) in values.iter_mut().zip(&buf) {
                    *v += b;
                }
            }
            for (i, s) in streams.iter_mut().enumerate() {
                write_message(s, seq, values).map_err(|e| lost(i + 1, what, &e))?;
            }
        } else {
            let s = &mut streams[0];
            write_message(s, seq, values).map_err(|e| lost(0, what, &e))?;
            let mut buf = vec![0f32; values.len()];
            read_message(s, seq, &mut buf, 0, what)?;
            values.copy_from_slice(&buf);
        }
        Ok(())
    }

    /// Closes the connections now, so that the other nodes waiting on them fail at once.
    pub fn disconnect(&self) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for s in &state.1 {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn lost(node: usize, what: &str, e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("{what}: no answer from node {node} within the peer timeout (did it stop?)")
        }
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => {
            format!("{what}: node {node} closed its connection (it stopped: see its output)")
        }
        _ => format!("{what}: the connection to node {node} failed: {e}"),
    }
}

fn write_message(s: &mut TcpStream, seq: u64, values: &[f32]) -> std::io::Result<()> {
    let mut msg = Vec::with_capacity(16 + 4 * values.len());
    msg.extend_from_slice(&seq.to_le_bytes());
    msg.extend_from_slice(&(values.len() as u64).to_le_bytes());
    for v in values {
        msg.extend_from_slice(&v.to_le_bytes());
    }
    s.write_all(&msg)?;
    s.flush()
}

fn read_message(
    s: &mut TcpStream,
    seq: u64,
    out: &mut [f32],
    node: usize,
    what: &str,
) -> Result<(), String> {
    let mut head = [0u8; 16];
    s.read_exact(&mut head).map_err(|e| lost(node, what, &e))?;
    let their_seq = u64::from_le_bytes(head[..8].try_into().unwrap());
    let their_len = u64::from_le_bytes(head[8..].try_into().unwrap());
    if their_seq != seq || their_len != out.len() as u64 {
        return Err(format!(
            "{what}: node {node} is at operation {their_seq} with {their_len} values, this node at {seq} with {} (do the nodes run the same model, data and flags?)",
            out.len()
        ));
    }
    let mut bytes = vec![0u8; 4 * out.len()];
    s.read_exact(&mut bytes).map_err(|e| lost(node, what, &e))?;
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes(b.try_into().unwrap());
    }
    Ok(())
}

/// The links of this node's local peers (index = local peer), joined with the other nodes of
/// `topology` at its address: node 0 listens and waits for every other node's peers, the others
/// connect (retrying while node 0 is not up yet). Waits at most `timeout` for the whole run to
/// gather; `timeout` also bounds every later wait for another node.
pub fn join(topology: &Topology, timeout: Duration) -> Result<Vec<NodeLink>, ParallelError> {
    topology.validate()?;
    let address = &topology
        .address
        .as_ref()
        .ok_or_else(|| ParallelError::Config("a multi-node run needs --global-address".into()))?;
    let deadline = (timeout != Duration::MAX).then(|| Instant::now() + timeout);
    let links = if topology.node_rank == 0 {
        let listener = TcpListener::bind(address.as_str()).map_err(|e| {
            ParallelError::Config(format!(
                "--global-address {address}: cannot listen there for the other nodes: {e}"
            ))
        })?;
        accept_nodes(&listener, topology, deadline)?
    } else {
        (0..topology.devices)
            .map(|local| connect(address, topology, local, deadline).map(|s| vec![s]))
            .collect::<Result<Vec<_>, _>>()?
    };
    let read_timeout = (timeout != Duration::MAX).then_some(timeout);
    for streams in &links {
        for s in streams {
            let _ = s.set_nodelay(true);
            s.set_read_timeout(read_timeout)
                .and_then(|()| s.set_write_timeout(read_timeout))
                .map_err(|e| ParallelError::Config(format!("a node connection: {e}")))?;
        }
    }
    Ok(links
        .into_iter()
        .map(|streams| NodeLink {
            node_rank: topology.node_rank,
            state: Mutex::new((0, streams)),
        })
        .collect())
}

fn join_error(detail: String) -> ParallelError {
    ParallelError::Collective {
        rank: 0,
        what: "joining the nodes",
        detail,
    }
}

fn hello(topology: &Topology, local: usize) -> Vec<u8> {
    let mut msg = HELLO.to_vec();
    for v in [topology.nodes, topology.devices, topology.node_rank, local] {
        msg.extend_from_slice(&(v as u32).to_le_bytes());
    }
    msg
}

/// Node 0: accepts `(nodes - 1) · devices` connections, checks that each joins the same layout,
/// and sorts them by local peer and node.
fn accept_nodes(
    listener: &TcpListener,
    topology: &Topology,
    deadline: Option<Instant>,
) -> Result<Vec<Vec<TcpStream>>, ParallelError> {
    let expected = (topology.nodes - 1) * topology.devices;
    let mut slots: Vec<Vec<Option<TcpStream>>> = (0..topology.devices)
        .map(|_| (0..topology.nodes - 1).map(|_| None).collect())
        .collect();
    listener
        .set_nonblocking(true)
        .map_err(|e| join_error(e.to_string()))?;
    let mut joined = 0;
    while joined < expected {
        let mut s = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if deadline.is_some_and(|d| Instant::now() > d) {
                    return Err(join_error(format!(
                        "{joined} of the {expected} peers of the other nodes joined in time (is every node started with --global-address pointing here?)"
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(join_error(e.to_string())),
        };
        s.set_nonblocking(false)
            .and_then(|()| s.set_read_timeout(Some(Duration::from_secs(30))))
            .map_err(|e| join_error(e.to_string()))?;
        let mut got = [0u8; 24];
        if s.read_exact(&mut got).is_err() || &got[..8] != HELLO {
            // not one of ours (a port scanner, another program): ignore it
            continue;
        }
        let field = |i: usize| u32::from_le_bytes(got[8 + 4 * i..12 + 4 * i].try_into().unwrap());
        let (nodes, devices, node, local) = (
            field(0) as usize,
            field(1) as usize,
            field(2) as usize,
            field(3) as usize,
        );
        let problem = if nodes != topology.nodes || devices != topology.devices {
            Some(format!(
                "node {node} runs --nodes {nodes} --data-parallel {devices}, node 0 --nodes {} --data-parallel {}",
                topology.nodes, topology.devices
            ))
        } else if node == 0 || node >= nodes || local >= devices {
            Some(format!(
                "a peer joined as node {node}, local peer {local}: out of range"
            ))
        } else if slots[local][node - 1].is_some() {
            Some(format!(
                "node {node} joined twice (two processes with --node-rank {node}?)"
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            let _ = reply(&mut s, Some(&p));
            return Err(join_error(p));
        }
        reply(&mut s, None).map_err(|e| join_error(e.to_string()))?;
        slots[local][node - 1] = Some(s);
        joined += 1;
    }
    Ok(slots
        .into_iter()
        .map(|row| row.into_iter().map(|s| s.expect("joined")).collect())
        .collect())
}

/// Node 0's answer to a joining peer: empty when it is welcome, else why not.
fn reply(s: &mut TcpStream, problem: Option<&str>) -> std::io::Result<()> {
    let text = problem.unwrap_or("").as_bytes();
    s.write_all(&(text.len() as u32).to_le_bytes())?;
    s.write_all(text)?;
    s.flush()
}

/// A node other than 0: local peer `local` connects to node 0 and introduces itself.
fn connect(
    address: &str,
    topology: &Topology,
    local: usize,
    deadline: Option<Instant>,
) -> Result<TcpStream, ParallelError> {
    let mut s = loop {
        match TcpStream::connect(address) {
            Ok(s) => break s,
            Err(e) => {
                if deadline.is_some_and(|d| Instant::now() > d) {
                    return Err(join_error(format!(
                        "node 0 did not answer at --global-address {address} in time: {e}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let answer = (|| -> std::io::Result<String> {
        s.set_read_timeout(Some(Duration::from_secs(600)))?;
        s.write_all(&hello(topology, local))?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let mut text = vec![0u8; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut text)?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    })()
    .map_err(|e| {
        join_error(format!(
            "node 0 at {address} did not welcome local peer {local}: {e}"
        ))
    })?;
    if !answer.is_empty() {
        return Err(join_error(format!("node 0 refused this node: {answer}")));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_address() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    fn topo(nodes: usize, devices: usize, node_rank: usize, address: &str) -> Topology {
        Topology {
            devices,
            nodes,
            node_rank,
            address: Some(address.to_string()),
        }
    }

    /// Runs node `r`'s `f` on its own thread for every node and returns their results.
    fn on_nodes<T: Send>(
        nodes: usize,
        devices: usize,
        f: impl Fn(usize, Result<Vec<NodeLink>, ParallelError>) -> T + Sync,
    ) -> Vec<T> {
        let address = free_address();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..nodes)
                .map(|r| {
                    let t = topo(nodes, devices, r, &address);
                    let f = &f;
                    s.spawn(move || f(r, join(&t, Duration::from_secs(20))))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn three_nodes_of_two_peers_sum_and_agree_to_the_bit() {
        let got = on_nodes(3, 2, |r, links| {
            let links = links.unwrap();
            assert_eq!(links.len(), 2);
            links
                .iter()
                .enumerate()
                .map(|(l, link)| {
                    let mut v = vec![r as f32 + 0.1, (10 * l) as f32];
                    link.sum(&mut v, "test").unwrap();
                    link.sum(&mut v, "test again").unwrap();
                    v
                })
                .collect::<Vec<_>>()
        });
        let want0 = 3.0 * ((0.1f32 + 1.1) + 2.1);
        for node in &got {
            assert_eq!(node[0], vec![want0, 0.0]);
            assert_eq!(node[1], vec![want0, 90.0]);
            assert_eq!(node[0][0].to_bits(), got[0][0][0].to_bits());
        }
    }

    #[test]
    fn nodes_that_drift_apart_stop_with_an_error() {
        let errs = on_nodes(2, 1, |r, links| {
            let link = &links.unwrap()[0];
            let mut v = vec![1.0; 2 + r];
            link.sum(&mut v, "summing gradients").unwrap_err()
        });
        assert!(errs[0].contains("same model"), "{}", errs[0]);
    }

    #[test]
    fn a_node_that_stops_makes_the_others_fail_not_hang() {
        let start = Instant::now();
        let out = on_nodes(2, 1, |r, links| {
            let link = &links.unwrap()[0];
            let mut v = vec![1.0];
            if r == 1 {
                link.disconnect();
                return None;
            }
            Some(link.sum(&mut v, "summing gradients").unwrap_err())
        });
        let err = out[0].as_ref().unwrap();
        assert!(err.contains("node 1 closed its connection"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(15));
    }

    #[test]
    fn a_node_with_another_layout_is_refused_by_name() {
        let address = free_address();
        let errs = std::thread::scope(|s| {
            let a = s.spawn(|| join(&topo(2, 1, 0, &address), Duration::from_secs(20)));
            let b = s.spawn(|| join(&topo(2, 2, 1, &address), Duration::from_secs(20)));
            [
                a.join().unwrap().unwrap_err(),
                b.join().unwrap().unwrap_err(),
            ]
        });
        for e in errs {
            assert!(e.to_string().contains("--data-parallel 2"), "{e}");
        }
    }

    #[test]
    fn a_missing_node_0_times_out_with_its_address() {
        let address = free_address();
        let err = join(&topo(2, 1, 1, &address), Duration::from_millis(500)).unwrap_err();
        assert!(err.to_string().contains(&address), "{err}");
    }
}
