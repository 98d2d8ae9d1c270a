//! One writer per run directory, used by `detox finetune` and `detox ppo`.
//!
//! [`open_run_dir`] takes an exclusive OS lock (`flock` / `LockFileEx`, through `fs4`) on
//! `RUN/.detox.lock` and writes the holder's pid into it; the lock lasts as long as the returned
//! [`RunLock`] and is released by the OS when the process dies, however it dies. Under the lock
//! it then
//! - removes what writers killed mid-save left behind: the temporary siblings
//!   (`.NAME.tmp-PID`) of [`detox_hub::atomic::write_dir_atomic`] and
//!   [`detox_hub::atomic::write_file_atomic`], in the run directory and its subdirectories. Every writer
//!   holds the lock, so any other process's temporary files are a dead writer's. A `.NAME.old-PID`
//!   (a directory being replaced when the writer died) is moved back to `NAME` when `NAME` is
//!   missing, and removed otherwise;
//! - refuses a directory that already holds a run unless it is resumed, or deletes that run's
//!   outputs (and only those) for `--overwrite`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use detox_hub::atomic::parse_sibling;

/// The lock file inside a run directory.
pub const LOCK_FILE: &str = ".detox.lock";

/// What to do with a run directory that already holds a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStart {
    /// Refuse it.
    New,
    /// Continue it.
    Resume,
    /// Delete its outputs and start again.
    Overwrite,
}

/// Why a run directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{dir} is in use by another detox run (pid {pid}): wait for it to end, or choose another --out", dir = .dir.display())]
    Busy { dir: PathBuf, pid: String },
    #[error("{dir} already holds a run ({found}): pass --resume to continue it, --overwrite to delete it and start again, or choose another --out", dir = .dir.display())]
    Occupied { dir: PathBuf, found: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |err| RunDirError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// The held lock of a run directory; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    dir: PathBuf,
}

impl RunLock {
    /// Creates `dir` if needed and locks it, or names the pid that holds it.
    pub fn acquire(dir: &Path) -> Result<Self, RunDirError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = match pid.trim() {
                    "" => "unknown".to_string(),
                    p => p.to_string(),
                };
                return Err(RunDirError::Busy {
                    dir: dir.to_path_buf(),
                    pid,
                });
            }
            Err(fs4::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io_err(&path))?;
        Ok(Self {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Locks `dir`, clears what killed writers left in it, and applies `start` to a previous run:
/// the run's `outputs` are names in `dir`, a trailing `*` matching any name with that prefix.
pub fn open_run_dir(dir: &Path, start: RunStart, outputs: &[&str]) -> Result<RunLock, RunDirError> {
    let lock = RunLock::acquire(dir)?;
    remove_stale_temporaries(dir)?;
    let found = existing_outputs(dir, outputs)?;
    match start {
        RunStart::New if !found.is_empty() => {
            let names: Vec<String> = found
                .iter()
                .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
                .collect();
            return Err(RunDirError::Occupied {
                dir: dir.to_path_buf(),
                found: names.join(", "),
            });
        }
        RunStart::Overwrite => found.iter().try_for_each(|p| remove_path(p))?,
        _ => {}
    }
    Ok(lock)
}

/// The entries of `dir` that `outputs` names, sorted.
fn existing_outputs(dir: &Path, outputs: &[&str]) -> Result<Vec<PathBuf>, RunDirError> {
    let matches = |name: &str| {
        outputs.iter().any(|o| match o.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *o,
        })
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok())
        .filter(|e| matches(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

fn remove_path(path: &Path) -> Result<(), RunDirError> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    result.map_err(io_err(path))
}

/// Removes other processes' temporary siblings in `dir` and its subdirectories (see the module
/// docs); the caller holds the lock.
pub fn remove_stale_temporaries(dir: &Path) -> Result<(), RunDirError> {
    let me = std::process::id();
    let mut dirs = vec![dir.to_path_buf()];
    let subdirs = std::fs::read_dir(dir).map_err(io_err(dir))?;
    dirs.extend(
        subdirs
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| parse_sibling(n).is_none())
            }),
    );
    for d in dirs {
        for entry in std::fs::read_dir(&d).map_err(io_err(&d))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((original, tag, pid)) = parse_sibling(&name) else {
                continue;
            };
            let original = d.join(original);
            match tag {
                _ if pid == me => {}
                "old" if !original.exists() => {
                    std::fs::rename(entry.path(), &original).map_err(io_err(&original))?
                }
                "old" | "tmp" => remove_path(&entry.path())?,
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("detox-runlock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_second_lock_on_the_same_directory_names_the_holder() {
        let dir = scratch("busy");
        let held = RunLock::acquire(&dir).unwrap();
        let pid = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        let e = RunLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&dir.display().to_string())
                && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(held);
        RunLock::acquire(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dead_writers_temporaries_go_and_a_replaced_directory_comes_back() {
        let dir = scratch("stale");
        let sub = dir.join("checkpoints");
        for d in [
            sub.join(".checkpoint-3.tmp-999999999"),
            dir.join(".final.old-999999999"),
            dir.join("checkpoint-2"),
        ] {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("f"), b"x").unwrap();
        }
        std::fs::write(dir.join(".metrics.jsonl.tmp-999999999"), b"x").unwrap();
        let mine = dir.join(format!(".x.tmp-{}", std::process::id()));
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::write(dir.join("metrics.jsonl"), b"{}\n").unwrap();

        let e = open_run_dir(&dir, RunStart::New, &["metrics.jsonl", "checkpoint-*"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("checkpoint-2, metrics.jsonl") && e.contains("--overwrite"),
            "{e}"
        );
        assert!(!sub.join(".checkpoint-3.tmp-999999999").exists());
        assert!(!dir.join(".metrics.jsonl.tmp-999999999").exists());
        assert!(dir.join("final/f").is_file(), "moved back");
        assert!(mine.exists(), "this process's own temporaries stay");

        let _lock = open_run_dir(
            &dir,
            RunStart::Overwrite,
            &["metrics.jsonl", "checkpoint-*"],
        )
        .unwrap();
        assert!(!dir.join("metrics.jsonl").exists() && !dir.join("checkpoint-2").exists());
        assert!(
            dir.join("final").exists(),
            "not an output of this kind of run"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
