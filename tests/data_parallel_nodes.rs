//! Data parallelism over several processes (`--nodes`, `detox_parallel::nodes`): two `detox`
//! processes joined over 127.0.0.1 train as the single-process run with as many peers does, node
//! 0 alone writes, and a node that is missing or runs something else makes the others stop with
//! an error naming it instead of hanging.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts")
}

/// Waits for `child`, killing it after `limit` (a hang is a failure, not a stuck test).
fn wait(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "a node did not finish within {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Runs `args(r)` as node `r` of `n` nodes on one address; their outputs.
fn nodes(n: usize, args: impl Fn(usize) -> Vec<String>) -> Vec<Output> {
    let address = free_address();
    let children: Vec<Child> = (0..n)
        .map(|r| {
            let mut a = args(r);
            a.extend([
                "--nodes".into(),
                n.to_string(),
                "--node-rank".into(),
                r.to_string(),
                "--global-address".into(),
                address.clone(),
            ]);
            spawn(&a)
        })
        .collect();
    children
        .into_iter()
        .map(|c| wait(c, Duration::from_secs(600)))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// [`common::tiny_lora_args`] with `--mode` set to `mode`.
fn finetune_args(data: &Path, out: &Path, mode: &str) -> Vec<String> {
    let mut a = common::tiny_lora_args(data, out);
    let at = a.iter().position(|s| s == "--mode").unwrap();
    a[at + 1] = mode.into();
    a
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(common::ok(o).trim()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * a.abs().max(1e-3)
}

/// `finetune` with `peers` peers in one process against `nodes` processes of `peers / nodes`
/// peers each: same losses and adapter; node 0 alone reports and writes.
fn check_finetune(tag: &str, peers: usize, nodes_n: usize) {
    let dir = common::scratch_dir("detox-nodes", tag);
    let data = common::synthetic_data(&dir, 6);
    let one = dir.join("one");
    let outs: Vec<_> = (0..nodes_n).map(|r| dir.join(format!("node{r}"))).collect();
    let per_node = (peers / nodes_n).to_string();

    let mut single = finetune_args(&data, &one, "lora");
    single.extend(strings(&["--data-parallel", &peers.to_string()]));
    let a = json(&common::detox_owned(&single));

    let out = nodes(nodes_n, |r| {
        let mut a = finetune_args(&data, &outs[r], "lora");
        a.extend(strings(&["--data-parallel", &per_node]));
        a
    });
    let b = json(&out[0]);
    for (r, o) in out.iter().enumerate().skip(1) {
        // the other nodes train but report and write nothing
        assert_eq!(common::ok(o).trim(), "", "node {r}");
        let dir = &outs[r];
        assert!(!dir.exists() || std::fs::read_dir(dir).unwrap().next().is_none());
    }
    assert_eq!(b["steps"], 3);
    for key in ["last_loss", "eval_loss"] {
        let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
        assert!(
            close(x, y),
            "{key}: one process {x}, {nodes_n} processes {y}"
        );
    }
    let steps: Vec<usize> = common::jsonl_column(&outs[0].join("metrics.jsonl"), "step");
    assert_eq!(steps, vec![1, 2, 3]);
    let d = common::adapter_diff(&one.join("final"), &outs[0].join("final"));
    assert!(d < 1e-5, "the {nodes_n}-process adapter differs by {d:e}");
}

#[test]
fn two_processes_fine_tune_as_one_process_with_two_peers_does() {
    check_finetune("finetune", 2, 2);
}

#[test]
fn two_processes_of_two_peers_fine_tune_as_one_process_with_four_peers_does() {
    // burn-collective sums each process's peers, the link sums the processes
    check_finetune("finetune-2x2", 4, 2);
}

#[test]
fn two_processes_run_the_ppo_lab_as_one_process_with_two_peers_does() {
    let dir = common::scratch_dir("detox-nodes", "ppo");
    let data = common::synthetic_data(&dir, 12);
    let (one, node0, node1) = (dir.join("one"), dir.join("node0"), dir.join("node1"));
    let mut single = common::tiny_ppo_args(&data, &one, 2);
    single.extend(strings(&["--data-parallel", "2"]));
    common::ok(&common::detox_owned(&single));
    let out = nodes(2, |r| common::tiny_ppo_args(&data, [&node0, &node1][r], 2));
    common::ok(&out[0]);
    common::ok(&out[1]);
    assert!(!node1.exists() || std::fs::read_dir(&node1).unwrap().next().is_none());
    for key in ["objective/kl", "ppo/loss/total", "ppo/mean_scores"] {
        let a: Vec<f64> = common::jsonl_column(&one.join("stats.jsonl"), key);
        let b: Vec<f64> = common::jsonl_column(&node0.join("stats.jsonl"), key);
        assert_eq!(a.len(), 2, "{key}");
        for (x, y) in a.iter().zip(&b) {
            assert!(
                close(*x, *y),
                "{key}: one process {a:?}, two processes {b:?}"
            );
        }
    }
    assert!(node0.join("checkpoints/final").is_dir());
}

#[test]
fn a_missing_or_different_node_stops_the_run_with_an_error() {
    let dir = common::scratch_dir("detox-nodes", "errors");
    let data = common::synthetic_data(&dir, 6);

    // node 1 never comes: node 0 gives up after --peer-timeout, naming what it waited for
    let mut alone = finetune_args(&data, &dir.join("alone"), "lora");
    alone.extend(strings(&[
        "--nodes",
        "2",
        "--global-address",
        &free_address(),
        "--peer-timeout",
        "2",
    ]));
    let o = wait(spawn(&alone), Duration::from_secs(120));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("joined in time"),
        "{err}"
    );

    // node 1 trains every parameter where node 0 trains an adapter: both stop, saying so
    let out = nodes(2, |r| {
        finetune_args(&data, &dir.join(format!("mixed{r}")), ["lora", "full"][r])
    });
    for (r, o) in out.iter().enumerate() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "node {r} succeeded: {err}");
        assert!(
            err.contains("same model") || err.contains("closed its connection"),
            "node {r}: {err}"
        );
    }
}
