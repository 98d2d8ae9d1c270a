//! Runs the local peers of a data-parallel run: one thread per peer, each registered with
//! burn-collective (and, on a multi-node run, linked to the other nodes) before its job starts.
//! When a peer's job fails (or panics), the collective is reset and its node links closed, so
//! that the peers waiting for it fail at once instead of waiting forever, and the first failure
//! is what the run reports.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use burn::collective::{finish_collective, register, reset_collective};
use burn::prelude::Backend;

use crate::peer::{with_timeout, Waited};
use crate::{ParallelError, Peer, Topology};

/// One local peer's work: given its [`Peer`], the job runs its share of the run.
pub type PeerJob<'a, T, E> = Box<dyn FnOnce(Peer) -> Result<T, E> + Send + 'a>;

/// burn-collective keeps one session per backend type and process: one run at a time.
static SESSION: Mutex<()> = Mutex::new(());

/// Runs `jobs[l]` as this node's local peer `l` on `devices[l]` (global rank
/// `topology.global_rank(l)`), each on its own thread, and returns their results in that order,
/// or the first failure. `B` is the backend the gradients live on (an autodiff backend's inner
/// backend). Joining the other nodes and registering wait at most `timeout` for the other
/// peers, as does every collective operation after.
pub fn run_local_peers<B, T, E>(
    topology: &Topology,
    devices: Vec<B::Device>,
    jobs: Vec<PeerJob<'_, T, E>>,
    timeout: Duration,
) -> Result<Vec<T>, E>
where
    B: Backend,
    T: Send,
    E: Send + From<ParallelError>,
{
    let config = topology.collective_config()?;
    if devices.len() != topology.devices || jobs.len() != topology.devices {
        return Err(ParallelError::Config(format!(
            "{} local peers need as many devices and jobs (got {} and {})",
            topology.devices,
            devices.len(),
            jobs.len()
        ))
        .into());
    }
    let _session = SESSION.lock().unwrap_or_else(|e| e.into_inner());
    let mut links: Vec<Option<Arc<crate::nodes::NodeLink>>> = if topology.nodes > 1 {
        crate::nodes::join(topology, timeout)?
            .into_iter()
            .map(|l| Some(Arc::new(l)))
            .collect()
    } else {
        vec![None; topology.devices]
    };
    reset::<B>();
    let world = topology.world();
    let (tx, rx) = mpsc::channel::<(usize, Result<T, E>)>();
    let outcome = std::thread::scope(|s| {
        let devices_here = topology.devices;
        for (local, ((job, device), mut link)) in jobs
            .into_iter()
            .zip(devices)
            .zip(links.drain(..))
            .enumerate()
        {
            let tx = tx.clone();
            let config = config.clone();
            let rank = topology.global_rank(local);
            std::thread::Builder::new()
                .name(format!("detox-peer-{rank}"))
                .spawn_scoped(s, move || {
                    let peer = Peer {
                        timeout,
                        local_peers: devices_here,
                        link: link.take(),
                        ..Peer::new(rank, world)
                    };
                    let result = run_peer::<B, T, E>(peer, device, config, job);
                    let _ = tx.send((local, result));
                })
                .expect("spawn a peer thread");
        }
        drop(tx);
        collect::<B, T, E>(rx, topology.devices)
    });
    reset::<B>();
    outcome
}

/// Forgets every peer and pending operation of the collective, so that waiting peers fail.
/// burn-collective panics here when its server already stopped (after its own panic): nothing
/// is left to reset then.
fn reset<B: Backend>() {
    let _ = catch_unwind(reset_collective::<B>);
}

/// Registers `peer` (when this node has several), runs its job, and unregisters it when the
/// job succeeded; closes its node links when it failed.
fn run_peer<B: Backend, T, E: From<ParallelError>>(
    peer: Peer,
    device: B::Device,
    config: burn::collective::CollectiveConfig,
    job: PeerJob<'_, T, E>,
) -> Result<T, E> {
    let link = peer.link.clone();
    let result = run_registered::<B, T, E>(peer, device, config, job);
    if result.is_err() {
        if let Some(link) = link {
            link.disconnect();
        }
    }
    result
}

fn run_registered<B: Backend, T, E: From<ParallelError>>(
    peer: Peer,
    device: B::Device,
    config: burn::collective::CollectiveConfig,
    job: PeerJob<'_, T, E>,
) -> Result<T, E> {
    if peer.local_peers == 1 {
        // nothing to sum inside this process: burn-collective is not needed
        return run_job(peer, job);
    }
    let id = peer.id();
    let registered = with_timeout(peer.timeout, move || register::<B>(id, device, config));
    let fail = |what, detail: String| ParallelError::Collective {
        rank: peer.rank,
        what,
        detail,
    };
    match registered {
        Waited::Done(Ok(())) => {}
        Waited::Done(Err(e)) => return Err(fail("registering", format!("{e:?}")).into()),
        Waited::TimedOut => {
            return Err(fail(
                "registering",
                format!(
                    "the other peers of this process did not register within {} s",
                    peer.timeout.as_secs()
                ),
            )
            .into())
        }
        Waited::Broken => {
            return Err(fail(
                "registering",
                "burn-collective's server stopped (see the error above)".into(),
            )
            .into())
        }
    }
    let timeout = peer.timeout;
    let result = run_job(peer, job);
    if result.is_ok() {
        // Leaves the session.
        let _ = with_timeout(timeout, move || finish_collective::<B>(id));
    }
    result
}

/// Runs `job` as `peer`, a panic being an error.
fn run_job<T, E: From<ParallelError>>(peer: Peer, job: PeerJob<'_, T, E>) -> Result<T, E> {
    let rank = peer.rank;
    match catch_unwind(AssertUnwindSafe(|| job(peer))) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(ParallelError::Collective {
                rank,
                what: "its job",
                detail: format!("panicked: {msg}"),
            }
            .into())
        }
    }
}

/// Waits for `n` peers' results; on the first failure resets the collective so that the others
/// stop waiting for the failed one, and returns that failure once every peer has ended.
fn collect<B: Backend, T, E>(
    rx: mpsc::Receiver<(usize, Result<T, E>)>,
    n: usize,
) -> Result<Vec<T>, E> {
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut first_err = None;
    for (local, r) in rx.iter() {
        match r {
            Ok(t) => results[local] = Some(t),
            Err(e) => {
                if first_err.is_none() {
                    reset::<B>();
                    first_err = Some(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(results
            .into_iter()
            .map(|r| r.expect("every peer answered"))
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use std::time::Instant;

    type B = Flex;

    fn sum_job<'a>(values: Vec<f32>, rounds: usize) -> PeerJob<'a, Vec<f32>, ParallelError> {
        Box::new(move |peer: Peer| {
            let mut out = values;
            for _ in 0..rounds {
                out = peer.all_reduce_sum::<B>(&out, &Default::default())?;
            }
            Ok(out)
        })
    }

    #[test]
    fn local_peers_sum_their_values() {
        let topo = Topology::local(3);
        let jobs = vec![
            sum_job(vec![1.0, 2.0], 2),
            sum_job(vec![10.0, 20.0], 2),
            sum_job(vec![100.0, 200.0], 2),
        ];
        // no limit: every collective call runs on the peer's own thread
        let got = run_local_peers::<B, _, ParallelError>(
            &topo,
            vec![Default::default(); 3],
            jobs,
            Duration::MAX,
        )
        .unwrap();
        // two rounds: (111, 222) summed by three peers again
        for g in got {
            assert_eq!(g, vec![333.0, 666.0]);
        }
    }

    #[test]
    fn peers_gather_their_rows_of_different_lengths() {
        let topo = Topology::local(2);
        let rows: Vec<Vec<f32>> =
            vec![vec![1.0, 2.0, 3.0], vec![], vec![32127.0], vec![-0.5, 7.25]];
        let job = |rows: Vec<Vec<f32>>| -> PeerJob<'_, Vec<Vec<f32>>, ParallelError> {
            Box::new(move |peer: Peer| {
                let range = crate::share(rows.len(), peer.world, peer.rank);
                let mine = rows[range.clone()].to_vec();
                peer.all_gather_rows::<B>(rows.len(), range, &mine, &Default::default())
            })
        };
        let got = run_local_peers::<B, _, ParallelError>(
            &topo,
            vec![Default::default(); 2],
            vec![job(rows.clone()), job(rows.clone())],
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(got, vec![rows.clone(), rows]);
    }

    #[test]
    fn a_failing_peer_stops_the_others_with_its_error() {
        let topo = Topology::local(2);
        let failing: PeerJob<'_, Vec<f32>, ParallelError> = Box::new(|peer: Peer| {
            peer.all_reduce_sum::<B>(&[1.0], &Default::default())?;
            Err(ParallelError::Config("peer 1 ran out of data".into()))
        });
        let start = Instant::now();
        let err = run_local_peers::<B, _, ParallelError>(
            &topo,
            vec![Default::default(); 2],
            vec![sum_job(vec![1.0], 5), failing],
            Duration::from_secs(60),
        )
        .unwrap_err();
        assert!(err.to_string().contains("peer 1 ran out of data"), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_panicking_peer_is_an_error_not_a_hang() {
        let topo = Topology::local(2);
        let panicking: PeerJob<'_, Vec<f32>, ParallelError> =
            Box::new(|_peer: Peer| panic!("boom"));
        let err = run_local_peers::<B, _, ParallelError>(
            &topo,
            vec![Default::default(); 2],
            vec![sum_job(vec![1.0], 3), panicking],
            Duration::from_secs(60),
        )
        .unwrap_err();
        assert!(err.to_string().contains("panicked: boom"), "{err}");
    }

    #[test]
    fn a_peer_that_never_comes_times_out() {
        // The second peer sleeps past the first one's timeout before its first collective call.
        let topo = Topology::local(2);
        let slow: PeerJob<'_, Vec<f32>, ParallelError> = Box::new(|peer: Peer| {
            std::thread::sleep(Duration::from_secs(3));
            peer.all_reduce_sum::<B>(&[1.0], &Default::default())
        });
        let err = run_local_peers::<B, _, ParallelError>(
            &topo,
            vec![Default::default(); 2],
            vec![sum_job(vec![1.0], 1), slow],
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("within 1 s"), "{err}");
    }
}
