//! What every long run writes as it goes: a progress bar and a JSONL file of metrics with one
//! object per logged step (a `step` field in each), which a resumed run trims back to its
//! checkpoint so the file reads as one run. Used by `detox finetune` and `detox ppo`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use detox_hub::atomic::write_file_atomic;
use indicatif::{ProgressBar, ProgressStyle};

/// The progress bar of a run of `total` steps, already at `position`; hidden when `show` is
/// false (stderr is not a terminal).
pub fn progress_bar(total: usize, position: usize, show: bool) -> ProgressBar {
    let pb = if show {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}<{eta_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .expect("valid template"),
    );
    pb.set_position(position as u64);
    pb
}

/// Appends `row` as one line to the JSONL file `path` (created if missing).
pub fn append_jsonl<T: serde::Serialize>(path: &Path, row: &T) -> std::io::Result<()> {
    let line = serde_json::to_string(row).map_err(std::io::Error::other)?;
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(f, "{line}")
}

/// Keeps the rows of the JSONL file `path` whose `step` is at most `step` (rows past a resumed
/// checkpoint, and a line cut short by a kill, go), rewriting it atomically. A missing file is
/// left missing.
pub fn trim_jsonl_to_step(path: &Path, step: usize) -> std::io::Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_file_atomic(path, kept.as_bytes())
}

/// Where a run directory records what ran it ([`record_start`]).
pub const RUN_INFO_FILE: &str = "run_info.json";

/// The CPU's model name (`/proc/cpuinfo`), when it can be read.
fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Appends this start (or resume) of a run to `out/run_info.json` — `{"starts": [...]}`, one
/// object per start: detox's version, the command line, the device, the CPU model and threads,
/// the Unix time — so that a report can say what produced the run. Call with the run's lock
/// held; the file is rewritten atomically.
pub fn record_start(out: &Path, device: &str) -> std::io::Result<()> {
    let path = out.join(RUN_INFO_FILE);
    let mut info: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|v: &serde_json::Value| v["starts"].is_array())
        .unwrap_or_else(|| serde_json::json!({"starts": []}));
    let start = serde_json::json!({
        "detox_version": env!("CARGO_PKG_VERSION"),
        "args": std::env::args().collect::<Vec<_>>(),
        "device": device,
        "cpu": cpu_model(),
        "threads": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    });
    info["starts"].as_array_mut().expect("array").push(start);
    let text = serde_json::to_string_pretty(&info).map_err(std::io::Error::other)? + "\n";
    write_file_atomic(&path, text.as_bytes())
}

/// The steps since the last logged row: their mean loss and throughput.
pub struct Window {
    loss: f64,
    steps: usize,
    examples: usize,
    start: std::time::Instant,
}

impl Default for Window {
    fn default() -> Self {
        Self::new()
    }
}

impl Window {
    pub fn new() -> Self {
        Self {
            loss: 0.0,
            steps: 0,
            examples: 0,
            start: std::time::Instant::now(),
        }
    }

    /// One step's loss and the examples it took.
    pub fn add(&mut self, loss: f64, examples: usize) {
        self.loss += loss;
        self.steps += 1;
        self.examples += examples;
    }

    /// The metrics row of the window at `step`: epoch (4 decimals), grad norm, mean loss, lr
    /// and examples per second under the key `rate_key`.
    pub fn row(
        &self,
        step: usize,
        epoch: f64,
        lr: f64,
        grad_norm: f64,
        rate_key: &str,
    ) -> serde_json::Value {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let mut row = serde_json::json!({
            "epoch": (epoch * 1e4).round() / 1e4,
            "grad_norm": grad_norm,
            "loss": self.loss / self.steps.max(1) as f64,
            "lr": lr,
            "step": step,
        });
        row[rate_key] = (self.examples as f64 / secs).into();
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_rows_up_to_the_step_and_drops_broken_lines() {
        let dir = std::env::temp_dir().join(format!("detox-runlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("m.jsonl");
        for s in 1..=4 {
            append_jsonl(&f, &serde_json::json!({"step": s, "loss": 1.0})).unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .unwrap()
            .write_all(b"{\"step\": 5, \"lo")
            .unwrap();
        trim_jsonl_to_step(&f, 2).unwrap();
        let steps: Vec<u64> = std::fs::read_to_string(&f)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, vec![1, 2]);
        trim_jsonl_to_step(&dir.join("missing.jsonl"), 1).unwrap();
        assert!(!dir.join("missing.jsonl").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn each_start_of_a_run_is_recorded() {
        let dir = std::env::temp_dir().join(format!("detox-runinfo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        record_start(&dir, "cpu").unwrap();
        record_start(&dir, "ndarray").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(RUN_INFO_FILE)).unwrap())
                .unwrap();
        let starts = v["starts"].as_array().unwrap();
        assert_eq!(starts.len(), 2);
        assert_eq!(starts[0]["device"], "cpu");
        assert_eq!(starts[1]["device"], "ndarray");
        assert_eq!(starts[0]["detox_version"], env!("CARGO_PKG_VERSION"));
        assert!(starts[0]["args"].as_array().is_some_and(|a| !a.is_empty()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
