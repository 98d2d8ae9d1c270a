//! Writing files and directories so that a reader never sees half of one: everything goes to a
//! temporary sibling (`.NAME.tmp-PID`, same filesystem) that is renamed onto `NAME` once whole.
//! A failed write removes its temporary; one that ran out of disk says so, with the sizes; a
//! write abandoned by an interrupt is removed by [`abandon_in_progress`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::HubError;

/// Below this many free bytes after a failed write, the failure is taken as a full disk (some
/// writers, burn's MessagePack recorder among them, turn ENOSPC into a message without the code).
const FULL_BELOW: u64 = 1 << 20;

/// The temporary directories being filled right now (for [`abandon_in_progress`]).
static IN_PROGRESS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// `dir` with a suffix, next to it (same filesystem, so renames are atomic).
pub fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// The parts of a name [`sibling`] made: `(original name, tag, pid)` of `.{name}.{tag}-{pid}`;
/// `None` for any other name.
pub fn parse_sibling(file_name: &str) -> Option<(&str, &str, u32)> {
    let rest = file_name.strip_prefix('.')?;
    let (head, pid) = rest.rsplit_once('-')?;
    let (name, tag) = head.rsplit_once('.')?;
    let pid = pid.parse().ok()?;
    (!name.is_empty() && !tag.is_empty()).then_some((name, tag, pid))
}

/// Builds `dir` atomically: `fill` writes into a fresh temporary sibling, which then replaces
/// `dir`. On any error the temporary directory is removed, so a failed save leaves neither a
/// half-written `dir` nor a stray temporary one; when the disk filled up, the error says so
/// (free space, bytes written, the size of an earlier sibling as the likely need).
pub fn write_dir_atomic<E: From<HubError> + std::fmt::Display>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let tmp = fresh_sibling_dir(dir)?;
    set_in_progress(&tmp, true);
    let result = fill(&tmp).and_then(|()| replace_dir(&tmp, dir).map_err(E::from));
    let result = result.map_err(|e| match disk_full(dir, &tmp, &e.to_string()) {
        Some(full) => E::from(full),
        None => e,
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    set_in_progress(&tmp, false);
    result
}

/// Writes `bytes` to a temporary sibling of `path`, then renames it over `path`; a failed write
/// removes the temporary file.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = sibling(path, "tmp");
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An empty temporary sibling directory of `dir` (a leftover of an earlier, killed write is
/// removed first): fill it, then [`replace_dir`] it onto `dir`.
pub fn fresh_sibling_dir(dir: &Path) -> Result<PathBuf, HubError> {
    let tmp = sibling(dir, "tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| HubError::io(&tmp, e))?;
    Ok(tmp)
}

/// Moves the complete directory `tmp` to `dir`, replacing an older `dir` only after `tmp` is whole.
pub fn replace_dir(tmp: &Path, dir: &Path) -> Result<(), HubError> {
    if dir.exists() {
        let old = sibling(dir, "old");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old).map_err(|e| HubError::io(dir, e))?;
        std::fs::rename(tmp, dir).map_err(|e| HubError::io(dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
        }
        std::fs::rename(tmp, dir).map_err(|e| HubError::io(dir, e))?;
    }
    Ok(())
}

/// Removes the temporary directories of the writes in progress (an interrupted process that
/// gives up on its current save calls this right before exiting). Returns what it removed.
pub fn abandon_in_progress() -> Vec<PathBuf> {
    let tmps = std::mem::take(&mut *IN_PROGRESS.lock().unwrap_or_else(|e| e.into_inner()));
    for tmp in &tmps {
        let _ = std::fs::remove_dir_all(tmp);
    }
    tmps
}

fn set_in_progress(tmp: &Path, on: bool) {
    let mut list = IN_PROGRESS.lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|p| p != tmp);
    if on {
        list.push(tmp.to_path_buf());
    }
}

/// `Some(HubError::DiskFull)` when the write of `dir` (into `tmp`) failed for lack of space:
/// the error names ENOSPC, or (for writers that hide the code) the disk is all but full.
fn disk_full(dir: &Path, tmp: &Path, cause: &str) -> Option<HubError> {
    let parent = dir
        .parent()
        .filter(|p| p.exists())
        .unwrap_or(Path::new("."));
    let free = fs4::available_space(parent).ok();
    let says_enospc = cause.contains("os error 28") || cause.contains("No space left");
    if !says_enospc && free.is_none_or(|f| f >= FULL_BELOW) {
        return None;
    }
    let cause = cause.replace(&tmp.display().to_string(), &dir.display().to_string());
    Some(HubError::DiskFull {
        dir: dir.to_path_buf(),
        cause,
        free: free.map(human_bytes).unwrap_or_else(|| "unknown".into()),
        written: human_bytes(dir_size(tmp)),
        needed: earlier_sibling_size(dir)
            .map(|(name, n)| format!("; the last complete one, {name}, takes {}", human_bytes(n)))
            .unwrap_or_default(),
    })
}

/// The largest complete sibling of `dir` of the same kind (`checkpoint-3` for `checkpoint-7`,
/// or `dir` itself when it is being replaced), with its size: what this save will likely need.
fn earlier_sibling_size(dir: &Path) -> Option<(String, u64)> {
    let name = dir.file_name()?.to_str()?;
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    std::fs::read_dir(dir.parent()?)
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        // a name without a trailing number (`final`) has no siblings of its kind, only itself
        .filter(|n| {
            if stem == name {
                n == name
            } else {
                n.starts_with(stem)
            }
        })
        .map(|n| {
            let size = dir_size(&dir.with_file_name(&n));
            (n, size)
        })
        .max_by_key(|(_, size)| *size)
}

/// Bytes under `path` (files of all depths; 0 if it cannot be read).
fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-progress list is process-wide: tests that write directories take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("detox-atomic-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn sibling_names_parse_back() {
        let s = sibling(Path::new("/run/checkpoint-5"), "tmp");
        let name = s.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(
            parse_sibling(&name),
            Some(("checkpoint-5", "tmp", std::process::id()))
        );
        // a temporary sibling of a temporary directory
        assert_eq!(
            parse_sibling("..final.tmp-12.tmp-12"),
            Some((".final.tmp-12", "tmp", 12))
        );
        for other in [
            ".detox.lock",
            "checkpoint-5",
            ".x.tmp-abc",
            ".tmp-3",
            "metrics.jsonl",
        ] {
            assert_eq!(parse_sibling(other), None, "{other}");
        }
    }

    #[test]
    fn a_failed_fill_leaves_neither_the_directory_nor_its_temporary() {
        let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let d = scratch("fail");
        let dir = d.join("checkpoint-2");
        let r: Result<(), HubError> = write_dir_atomic(&dir, |tmp| {
            std::fs::write(tmp.join("a"), b"x").unwrap();
            Err(HubError::Config {
                path: tmp.join("a"),
                msg: "broken".into(),
            })
        });
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains("broken") && !err.contains("disk is full"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        assert!(IN_PROGRESS.lock().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_enospc_failure_names_the_final_file_and_the_sizes() {
        let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let d = scratch("full");
        std::fs::create_dir_all(d.join("checkpoint-1")).unwrap();
        std::fs::write(d.join("checkpoint-1/optimizer.mpk"), vec![0u8; 3000]).unwrap();
        let dir = d.join("checkpoint-2");
        let r: Result<(), HubError> = write_dir_atomic(&dir, |tmp| {
            std::fs::write(tmp.join("model.safetensors"), vec![0u8; 1000]).unwrap();
            let file = tmp.join("optimizer.mpk");
            Err(HubError::io(&file, std::io::Error::from_raw_os_error(28)))
        });
        let err = r.unwrap_err().to_string();
        let want_file = dir.join("optimizer.mpk").display().to_string();
        assert!(
            err.contains("disk is full") && err.contains(&want_file),
            "{err}"
        );
        assert!(err.contains("1000 B written"), "{err}");
        assert!(err.contains("checkpoint-1, takes 2.9 KiB"), "{err}");
        assert!(!err.contains(".tmp-"), "{err}");
        assert!(!dir.exists() && d.join("checkpoint-1/optimizer.mpk").is_file());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn abandoning_removes_the_temporaries_in_progress() {
        let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let d = scratch("abandon");
        let dir = d.join("final");
        let r: Result<(), HubError> = write_dir_atomic(&dir, |tmp| {
            std::fs::write(tmp.join("a"), b"x").unwrap();
            assert_eq!(abandon_in_progress(), vec![tmp.to_path_buf()]);
            assert!(!tmp.exists());
            Ok(())
        });
        assert!(r.is_err(), "the swap of a removed temporary fails");
        assert!(!dir.exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn sizes_read_like_du() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
