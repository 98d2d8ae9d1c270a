//! Crash safety and bad input (issue 10): every bad setting is one `error:` line and a non-zero
//! exit before anything is written; one writer per run directory; what a killed writer leaves
//! is cleared at the next start; an occupied run directory needs `--resume` or `--overwrite`;
//! absurd config sizes and damaged optimizer state are named. All on the tiny fixtures and
//! synthetic dialogues (no ../shared needed).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{arg, detox, fixtures, ok, synthetic_data};

fn scratch(tag: &str) -> PathBuf {
    common::scratch_dir("detox-cli-safety", tag)
}

/// The stderr of a run that must fail with one `error:` line and no panic.
fn one_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected a failure");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn finetune_args(train: &Path, out: &Path) -> Vec<String> {
    let model = arg(&fixtures().join("t5-tiny"));
    [
        "finetune",
        "--model",
        &model,
        "--mode",
        "lora",
        "--lora-r",
        "4",
        "--train",
        &arg(train),
        "--out",
        &arg(out),
        "--batch-size",
        "2",
        "--max-source-len",
        "64",
        "--max-target-len",
        "16",
        "--log-every",
        "1",
    ]
    .map(String::from)
    .to_vec()
}

fn ppo_args(data: &Path, out: &Path) -> Vec<String> {
    let (model, reward) = (
        arg(&fixtures().join("t5-tiny")),
        arg(&fixtures().join("roberta-tiny")),
    );
    [
        "ppo",
        "--model",
        &model,
        "--reward-model",
        &reward,
        "--dataset",
        &arg(data),
        "--out",
        &arg(out),
        "--batch-size",
        "4",
        "--mini-batch-size",
        "2",
        "--response-length",
        "4..8",
        "--toxicity-samples",
        "1",
        "--compare-samples",
        "2",
    ]
    .map(String::from)
    .to_vec()
}

/// Runs `args` with `extra` flags (each `--flag value` replacing the same flag in `args`).
fn run(args: &[String], extra: &[&str]) -> Output {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    for pair in extra.chunks(2) {
        match all.iter().position(|a| *a == pair[0]) {
            Some(i) if pair.len() == 2 => all[i + 1] = pair[1],
            _ => all.extend(pair),
        }
    }
    detox(&all)
}

#[test]
fn ppo_refuses_bad_numbers_before_writing_anything() {
    let dir = scratch("ppo-numbers");
    let data = synthetic_data(&dir, 12);
    let out = dir.join("run");
    let args = ppo_args(&data, &out);
    for (flag, value, named) in [
        ("--batch-size", "0", "--batch-size"),
        ("--mini-batch-size", "0", "--mini-batch-size"),
        ("--ppo-epochs", "0", "--ppo-epochs"),
        ("--max-steps", "0", "--max-steps"),
        ("--save-every", "0", "--save-every"),
        ("--learning-rate", "nan", "--learning-rate"),
        ("--learning-rate", "inf", "--learning-rate"),
        ("--learning-rate", "0", "--learning-rate"),
        ("--response-length", "0..5", "response_length"),
    ] {
        let err = one_error(&run(&args, &[flag, value]));
        assert!(err.contains(named), "{flag} {value}: {err}");
        assert!(!out.exists(), "{flag} {value}: nothing written");
    }
    for (toml, named) in [
        (
            "[ppo]\ngradient_accumulation_steps = 0\n",
            "gradient_accumulation_steps",
        ),
        ("[ppo]\ngamma = 2.0\n", "ppo.gamma"),
        ("[ppo]\ncliprange = nan\n", "ppo.cliprange"),
        ("[toxicity]\nbatch_size = 0\n", "toxicity.batch_size"),
    ] {
        let cfg = dir.join("cfg.toml");
        std::fs::write(&cfg, toml).unwrap();
        let err = one_error(&run(&args, &["--config", &arg(&cfg)]));
        assert!(err.contains(named), "{toml}: {err}");
        assert!(!out.exists(), "{toml}: nothing written");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn finetune_refuses_bad_numbers_before_writing_anything() {
    let dir = scratch("ft-numbers");
    let data = synthetic_data(&dir, 4);
    let out = dir.join("run");
    let args = finetune_args(&data, &out);
    for (flag, value) in [
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--max-steps", "0"),
        ("--save-every", "0"),
        ("--max-grad-norm", "nan"),
        ("--lora-alpha", "inf"),
        ("--max-source-len", "0"),
    ] {
        let err = one_error(&run(&args, &[flag, value]));
        let named = flag.trim_start_matches('-').replace('-', "_");
        assert!(
            err.contains(flag) || err.contains(&named),
            "{flag} {value}: {err}"
        );
        assert!(!out.exists(), "{flag} {value}: nothing written");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls `what` every few milliseconds until it holds or `limit` passes; whether it held.
fn wait_for(limit: Duration, mut what: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp-") || n.contains(".old-"))
                .collect()
        })
        .unwrap_or_default()
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn one_writer_per_run_directory_and_a_killed_writer_leaves_nothing_half_written() {
    let dir = scratch("lock");
    let data = synthetic_data(&dir, 8);
    let out = dir.join("run");
    let mut args = finetune_args(&data, &out);
    args.extend(["--max-steps", "1000000", "--save-every", "1"].map(String::from));
    let mut writer = spawn(&args);
    let pid = writer.id().to_string();
    let lock = out.join(".detox.lock");
    let locked = wait_for(Duration::from_secs(120), || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == pid)
    });
    assert!(locked, "the writer never took the lock");

    // A second finetune or ppo on the same directory fails at start, naming it and the holder.
    let ppo_dir = dir.join("ppo-data");
    std::fs::create_dir_all(&ppo_dir).unwrap();
    let ppo = ppo_args(&synthetic_data(&ppo_dir, 12), &out);
    for second in [run(&args, &["--resume"]), run(&ppo, &["--resume"])] {
        let err = one_error(&second);
        assert!(
            err.contains(&arg(&out)) && err.contains(&format!("pid {pid}")),
            "{err}"
        );
    }

    // Kill the writer once it has a checkpoint, if possible while it saves (a temporary
    // checkpoint directory exists).
    let first = out.join("checkpoint-1/trainer_state.json");
    assert!(wait_for(Duration::from_secs(120), || first.is_file()));
    wait_for(Duration::from_secs(60), || !temporaries(&out).is_empty());
    writer.kill().unwrap();
    writer.wait().unwrap();
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("checkpoint-") {
            assert!(
                e.path().join("trainer_state.json").is_file(),
                "{name} is whole"
            );
        }
    }
    // What a writer killed mid-save leaves (planted too, in case the kill missed every save).
    std::fs::create_dir_all(out.join(format!(".checkpoint-999.tmp-{pid}"))).unwrap();
    std::fs::write(out.join(format!(".metrics.jsonl.tmp-{pid}")), b"{").unwrap();

    // The lock died with the writer: the run resumes, and the leftovers are gone.
    ok(&run(
        &args[..args.len() - 4],
        &["--max-steps", "1", "--resume"],
    ));
    assert_eq!(temporaries(&out), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_holding_a_run_needs_resume_or_overwrite() {
    let dir = scratch("occupied");
    let data = synthetic_data(&dir, 12);
    // finetune: metrics.jsonl alone marks a run
    let out = dir.join("ft");
    std::fs::create_dir_all(out.join("checkpoint-99")).unwrap();
    std::fs::write(out.join("metrics.jsonl"), "{\"step\": 99}\n").unwrap();
    let args = finetune_args(&data, &out);
    let err = one_error(&run(&args, &["--max-steps", "2"]));
    assert!(
        err.contains("already holds a run")
            && err.contains("metrics.jsonl")
            && err.contains("--resume")
            && err.contains("--overwrite"),
        "{err}"
    );
    ok(&run(&args, &["--max-steps", "2", "--overwrite"]));
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "a clean run: {metrics}");
    assert!(!out.join("checkpoint-99").exists());
    assert!(out.join("checkpoint-2/trainer_state.json").is_file());

    // ppo: the same refusal, and --overwrite starts it clean
    let out = dir.join("ppo");
    std::fs::create_dir_all(out.join("initial")).unwrap();
    std::fs::write(out.join("stats.jsonl"), "{\"step\": 7}\n").unwrap();
    let args = ppo_args(&data, &out);
    let err = one_error(&run(&args, &["--max-steps", "1"]));
    assert!(
        err.contains("already holds a run") && err.contains("--overwrite"),
        "{err}"
    );
    ok(&run(&args, &["--max-steps", "1", "--overwrite"]));
    let stats = std::fs::read_to_string(out.join("stats.jsonl")).unwrap();
    assert_eq!(stats.lines().count(), 1, "{stats}");
    assert!(out
        .join("checkpoints/checkpoint-1/ppo_state.json")
        .is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_truncated_optimizer_state_is_named_on_resume() {
    let dir = scratch("optim");
    let data = synthetic_data(&dir, 4);
    let out = dir.join("run");
    let args = finetune_args(&data, &out);
    ok(&run(&args, &["--max-steps", "2", "--save-every", "1"]));
    let file = out.join("checkpoint-2/optimizer.mpk");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let err = one_error(&run(&args, &["--max-steps", "3", "--resume"]));
    assert!(
        err.contains(&arg(&file))
            && err.contains("truncated or corrupt")
            && err.contains("previous checkpoint"),
        "{err}"
    );
    assert!(!err.contains("record-backward-compat"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A copy of a fixture model whose config.json sets `field` to `value`.
fn with_config(dir: &Path, fixture: &str, field: &str, value: u64) -> PathBuf {
    let to = dir.join(format!("{fixture}-{field}"));
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(fixtures().join(fixture))
        .unwrap()
        .flatten()
    {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let p = to.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v[field] = serde_json::json!(value);
    std::fs::write(&p, v.to_string()).unwrap();
    to
}

#[test]
fn absurd_config_sizes_are_refused_before_allocating() {
    let dir = scratch("sizes");
    for (fixture, field, value, cmd) in [
        ("t5-tiny", "num_layers", 1_000_000_000, "summarize"),
        ("t5-tiny", "d_model", 100_000_000, "summarize"),
        ("t5-tiny", "vocab_size", 1_000_000_000, "inspect"),
        ("roberta-tiny", "num_hidden_layers", 1_000_000_000, "score"),
        ("roberta-tiny", "hidden_size", 100_000_000, "inspect"),
    ] {
        let model = arg(&with_config(&dir, fixture, field, value));
        let mut args = vec![cmd, "--model", &model];
        match cmd {
            "summarize" => args.extend(["--dialogue", "#Person1#: Hi."]),
            "score" => args.extend(["--text", "hello"]),
            _ => {}
        }
        let err = one_error(&detox(&args));
        assert!(
            err.contains("config.json") && err.contains(&format!("`{field}` is {value}")),
            "{fixture} {field}: {err}"
        );
        assert!(!err.contains("memory allocation"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn summarize_refuses_a_zero_max_source_length() {
    let model = arg(&fixtures().join("t5-tiny"));
    let err = one_error(&detox(&[
        "summarize",
        "--model",
        &model,
        "--dialogue",
        "#Person1#: Hi.",
        "--max-source-length",
        "0",
    ]));
    assert!(err.contains("--max-source-length"), "{err}");
}

#[test]
fn summarize_takes_a_long_prompt_whole_unless_told_to_cut_it() {
    // transformers' tokenizer call (no truncation=True) hands T5 the whole prompt, as the lab's
    // few-shot prompts of 1000+ tokens are; --max-source-length N cuts to N with a warning.
    let model = arg(&fixtures().join("t5-tiny"));
    let dialogue = "#Person1#: Shall we meet at noon by the old bridge?\n".repeat(60);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "summarize",
            "--model",
            &model,
            "--dialogue",
            &dialogue,
            "--max-new-tokens",
            "2",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = detox(&args);
        let stdout = ok(&out);
        let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (v["prompt_tokens"].as_u64().expect("prompt_tokens"), stderr)
    };
    let (whole, stderr) = run(&[]);
    assert!(whole > 512, "{whole} prompt tokens");
    assert!(!stderr.contains("truncated"), "{stderr}");
    let (cut, stderr) = run(&["--max-source-length", "64"]);
    assert_eq!(cut, 64);
    assert!(stderr.contains("truncated"), "{stderr}");
}

#[test]
fn a_missing_path_under_a_local_directory_is_not_taken_as_a_hub_id() {
    let dir = scratch("local");
    std::fs::create_dir_all(dir.join("m")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(["inspect", "--model", "m/does-not-exist"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = one_error(&out);
    assert!(
        err.contains("m/does-not-exist") && err.contains("no such model directory"),
        "{err}"
    );
    assert!(!err.contains("download"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A small tmpfs, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts one at `at`, or says why this user or machine cannot.
    fn mount(at: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Self(at.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` until `leave` bytes are free (a file written until ENOSPC,
/// then shortened); returns the filler.
fn fill_disk(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![1u8; 1 << 16];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.flush();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
    filler
}

#[test]
fn a_full_disk_is_named_and_the_previous_checkpoint_stays_resumable() {
    let dir = scratch("enospc");
    let data = synthetic_data(&dir, 8);
    let mnt = dir.join("small-disk");
    let disk = match Tmpfs::mount(&mnt, "4m") {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs for the disk-full test ({why})");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    };
    let out = mnt.join("run");
    let args = finetune_args(&data, &out);
    ok(&run(&args, &["--max-steps", "1", "--save-every", "1"]));
    // Room for the metrics row and part of the next checkpoint, not all of it.
    let filler = fill_disk(&mnt, 60_000);
    let failed = run(
        &args,
        &["--max-steps", "2", "--save-every", "1", "--resume"],
    );
    let stderr = String::from_utf8_lossy(&failed.stderr).into_owned();
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let err = stderr.trim().lines().last().unwrap_or_default();
    let target = arg(&out.join("checkpoint-2"));
    let earlier = "the last complete one, checkpoint-1, takes";
    assert!(
        err.contains("the disk is full") && err.contains(&target) && err.contains(earlier),
        "{err}"
    );
    assert!(err.contains("free") && !err.contains(".tmp-"), "{err}");
    assert!(!out.join("checkpoint-2").exists());
    assert_eq!(temporaries(&out), Vec::<String>::new());
    assert!(out.join("checkpoint-1/trainer_state.json").is_file());
    // With room again, the intact checkpoint resumes.
    std::fs::remove_file(&filler).unwrap();
    ok(&run(
        &args,
        &["--max-steps", "2", "--save-every", "1", "--resume"],
    ));
    assert!(out.join("checkpoint-2/trainer_state.json").is_file());
    drop(disk);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `args` in a child, sends it `signal` once `ready` holds (observed from the
/// filesystem), and returns its output.
fn signal_when(args: &[String], signal: &str, ready: impl FnMut() -> bool) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(300), ready), "never ready");
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    child.wait_with_output().unwrap()
}

fn lines(file: &Path) -> usize {
    std::fs::read_to_string(file).map_or(0, |t| t.lines().count())
}

/// The step an interrupted run reports in its last stderr line (`interrupted after step N`),
/// checked to exit with 130 and to name a whole checkpoint of that step.
fn interrupted_at(out: &Output, checkpoint_of: impl Fn(usize) -> PathBuf) -> usize {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let last = err.trim().lines().last().unwrap_or_default().to_string();
    let step: usize = last
        .strip_prefix("error: interrupted after step ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    let ck = checkpoint_of(step);
    assert!(
        last.contains(&arg(&ck)) && last.contains("--resume"),
        "{err}"
    );
    assert!(ck.is_dir(), "{}", ck.display());
    step
}

#[test]
fn sigterm_stops_finetune_after_a_step_with_a_checkpoint_that_resumes() {
    let dir = scratch("sigterm");
    let data = synthetic_data(&dir, 8);
    let out = dir.join("run");
    let args = finetune_args(&data, &out);
    let mut long = args.clone();
    long.extend(["--max-steps", "1000000", "--save-every", "100000"].map(String::from));
    let metrics = out.join("metrics.jsonl");
    let stopped = signal_when(&long, "TERM", || lines(&metrics) >= 3);
    let step = interrupted_at(&stopped, |s| out.join(format!("checkpoint-{s}")));
    assert!(step >= 3);
    assert!(out
        .join(format!("checkpoint-{step}/trainer_state.json"))
        .is_file());
    assert_eq!(lines(&metrics), step, "one metrics row per finished step");
    assert_eq!(temporaries(&out), Vec::<String>::new());
    let more = (step + 2).to_string();
    ok(&run(&args, &["--max-steps", &more, "--resume"]));
    let steps: Vec<u64> = common::jsonl_column(&metrics, "step");
    assert_eq!(steps, (1..=step as u64 + 2).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigint_stops_ppo_after_a_step_with_a_checkpoint_that_resumes() {
    let dir = scratch("sigint");
    let data = synthetic_data(&dir, 12);
    let out = dir.join("run");
    let args = ppo_args(&data, &out);
    let mut long = args.clone();
    long.extend(["--max-steps", "100000", "--save-every", "100000"].map(String::from));
    let stats = out.join("stats.jsonl");
    let stopped = signal_when(&long, "INT", || lines(&stats) >= 1);
    let checkpoints = out.join("checkpoints");
    let step = interrupted_at(&stopped, |s| checkpoints.join(format!("checkpoint-{s}")));
    assert!(checkpoints
        .join(format!("checkpoint-{step}/ppo_state.json"))
        .is_file());
    assert_eq!(lines(&stats), step);
    assert_eq!(temporaries(&checkpoints), Vec::<String>::new());
    let more = (step + 1).to_string();
    ok(&run(&args, &["--max-steps", &more, "--resume"]));
    assert_eq!(lines(&stats), step + 1);
    let _ = std::fs::remove_dir_all(&dir);
}
