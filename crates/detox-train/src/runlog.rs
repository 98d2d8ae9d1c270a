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
}
