//! Shared helpers of the parity tests: fixture paths, reference tensors written by
//! `tools/make_fixtures.py` (transformers' numbers), and comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use burn::prelude::*;

/// A path of its own under the temp dir for one test (`{prefix}-{tag}-{pid}`), with whatever an
/// earlier run left there removed; not created.
pub fn scratch_path(prefix: &str, tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{prefix}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// [`scratch_path`], created (empty).
pub fn scratch_dir(prefix: &str, tag: &str) -> PathBuf {
    let d = scratch_path(prefix, tag);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A path as a command-line argument.
pub fn arg(p: &std::path::Path) -> String {
    p.display().to_string()
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A reference tensor: shape and values (floats as f32, integers as i64).
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
}

pub struct Reference {
    pub tensors: HashMap<String, RefTensor>,
    pub meta: serde_json::Value,
}

impl Reference {
    pub fn load(name: &str) -> Self {
        let dir = fixtures().join("reference");
        let bytes =
            std::fs::read(dir.join(format!("{name}.safetensors"))).expect("reference tensors");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
        let mut tensors = HashMap::new();
        for (k, v) in st.tensors() {
            let data = v.data();
            let (f32s, i64s) = match v.dtype() {
                safetensors::Dtype::F32 => (
                    data.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                    vec![],
                ),
                safetensors::Dtype::I64 => (
                    vec![],
                    data.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                other => panic!("unexpected dtype {other:?} for {k}"),
            };
            tensors.insert(
                k.to_string(),
                RefTensor {
                    shape: v.shape().to_vec(),
                    f32: f32s,
                    i64: i64s,
                },
            );
        }
        let meta = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("reference json"),
        )
        .expect("valid json");
        Self { tensors, meta }
    }

    pub fn get(&self, name: &str) -> &RefTensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("reference has no tensor {name}"))
    }

    pub fn int<B: Backend, const D: usize>(
        &self,
        name: &str,
        device: &B::Device,
    ) -> Tensor<B, D, Int> {
        let t = self.get(name);
        Tensor::from_data(TensorData::new(t.i64.clone(), t.shape.clone()), device)
    }

    /// Rows of an int64 `[rows, n]` tensor.
    pub fn int_rows(&self, name: &str) -> Vec<Vec<i64>> {
        let t = self.get(name);
        t.i64.chunks(t.shape[1]).map(|r| r.to_vec()).collect()
    }
}

/// Asserts `ours` equals the reference `name` in shape and to `tol` relative error
/// (max |a - b| over max |b|).
pub fn assert_close<B: Backend, const D: usize>(
    r: &Reference,
    name: &str,
    ours: Tensor<B, D>,
    tol: f32,
) {
    let want = r.get(name);
    assert_eq!(ours.dims().to_vec(), want.shape, "{name}: shape");
    let got: Vec<f32> = ours.into_data().convert::<f32>().into_vec().unwrap();
    assert_slices_close(name, &got, &want.f32, tol);
}

pub fn assert_slices_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let (mut worst, mut at) = (0f32, 0);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let d = (a - b).abs();
        assert!(
            d.is_finite(),
            "{name}: non-finite value at {i}: got {a}, want {b}"
        );
        if d > worst {
            worst = d;
            at = i;
        }
    }
    let rel = worst / scale;
    assert!(
        rel <= tol,
        "{name}: relative error {rel:e} > {tol:e} (at flat index {at}: got {}, want {}; scale {scale})",
        got[at],
        want[at]
    );
}

/// Generated ids as transformers returns them for a batch: finished rows padded with `pad`.
pub fn pad_rows(rows: &[Vec<u32>], width: usize, pad: i64) -> Vec<Vec<i64>> {
    rows.iter()
        .map(|r| {
            let mut v: Vec<i64> = r.iter().map(|&t| t as i64).collect();
            v.resize(width, pad);
            v
        })
        .collect()
}

/// Whether the wgpu parity subset should run (needs a Vulkan/Metal/DX12 adapter; CI uses lavapipe).
pub fn wgpu_enabled() -> bool {
    std::env::var("DETOX_TEST_WGPU").is_ok_and(|v| v == "1")
}

/// `../shared` (or `$DETOX_SHARED`) when it holds `probe`; `None` with a printed skip notice when
/// it does not, unless `DETOX_REQUIRE_SHARED` is set (CI), which makes absence a failure.
pub fn shared(probe: &str) -> Option<PathBuf> {
    let dir = std::env::var("DETOX_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.join(probe).exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("DETOX_REQUIRE_SHARED").is_err(),
        "DETOX_REQUIRE_SHARED is set but {} has no {probe}",
        dir.display()
    );
    eprintln!("skipped: ../shared not found (set DETOX_SHARED or DETOX_REQUIRE_SHARED=1)");
    None
}

/// Runs the `detox` binary with `args`.
pub fn detox(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(args)
        .output()
        .expect("runs")
}

/// The stdout of a successful run (the stderr in the failure message otherwise).
pub fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The dialogue of row `i` of [`synthetic_data`].
pub fn synthetic_dialogue(i: usize) -> String {
    format!("#Person1#: Hello number {i}, how are you today? ").repeat(6)
}

/// `dir/synthetic.jsonl`: `n` DialogSum-style rows whose dialogues have 201-1000 characters
/// (they pass the PPO lab's filter), for tests that need no ../shared.
pub fn synthetic_data(dir: &std::path::Path, n: usize) -> PathBuf {
    use std::io::Write;
    let file = dir.join("synthetic.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..n {
        let dialogue = synthetic_dialogue(i);
        let row = serde_json::json!({"id": format!("s{i}"), "dialogue": dialogue, "summary": "They greet.", "topic": "greeting"});
        writeln!(f, "{row}").unwrap();
    }
    file
}

/// Field `key` of every line of the JSONL file `path` (a metrics or stats file), as `T`.
pub fn jsonl_column<T: serde::de::DeserializeOwned>(path: &std::path::Path, key: &str) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::from_value(row[key].clone()).unwrap()
        })
        .collect()
}

/// Starts `detox annotate --items ITEMS --db DB` on a free port of 127.0.0.1; returns the child
/// and its base URL.
pub fn serve_annotate(
    items: &std::path::Path,
    db: &std::path::Path,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_detox"))
        .args([
            "annotate",
            "--items",
            &arg(items),
            "--db",
            &arg(db),
            "--bind",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("serving on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim_end_matches('/')
        .to_string();
    (child, url)
}

/// The tensors of a peft directory's `adapter_model.safetensors` (f32), sorted by name.
pub fn adapter_values(dir: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(k, t)| {
            let vals = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k, vals)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// `detox ppo` on the tiny fixtures (t5-tiny policy, roberta-tiny reward, configs/lab.toml) with
/// a lab small enough for a test: batches of 4, minibatches of 2, responses of 4-11 tokens,
/// `steps` steps, a checkpoint every step.
pub fn tiny_ppo_args(data: &std::path::Path, out: &std::path::Path, steps: usize) -> Vec<String> {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/lab.toml");
    let mut a = vec!["ppo".to_string()];
    for (flag, p) in [
        ("--model", fixtures().join("t5-tiny")),
        ("--reward-model", fixtures().join("roberta-tiny")),
        ("--dataset", data.to_path_buf()),
        ("--out", out.to_path_buf()),
        ("--config", config),
    ] {
        a.extend([flag.to_string(), arg(&p)]);
    }
    let steps = steps.to_string();
    for s in [
        "--max-steps",
        &steps,
        "--batch-size",
        "4",
        "--mini-batch-size",
        "2",
        "--learning-rate",
        "1e-3",
        "--response-length",
        "4..12",
        "--toxicity-samples",
        "3",
        "--compare-samples",
        "4",
        "--save-every",
        "1",
    ] {
        a.push(s.to_string());
    }
    a
}

/// `detox finetune --mode lora` of t5-tiny on `data` (also its eval set) for 3 steps of 4 rows,
/// dropout off, a checkpoint at step 2, the summary as JSON.
pub fn tiny_lora_args(data: &std::path::Path, out: &std::path::Path) -> Vec<String> {
    let mut a = vec!["finetune".to_string()];
    for (flag, p) in [
        ("--model", fixtures().join("t5-tiny")),
        ("--train", data.to_path_buf()),
        ("--eval", data.to_path_buf()),
        ("--out", out.to_path_buf()),
    ] {
        a.extend([flag.to_string(), arg(&p)]);
    }
    for s in [
        "--mode",
        "lora",
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--dropout-rate",
        "0",
        "--lora-dropout",
        "0",
        "--lr",
        "1e-3",
        "--log-every",
        "1",
        "--save-every",
        "2",
        "--seed",
        "5",
        "--json",
    ] {
        a.push(s.to_string());
    }
    a
}

/// [`detox`] with owned arguments.
pub fn detox_owned(args: &[String]) -> std::process::Output {
    detox(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The largest absolute difference between two peft directories' adapters (same tensor names).
pub fn adapter_diff(a: &std::path::Path, b: &std::path::Path) -> f32 {
    let (a, b) = (adapter_values(a), adapter_values(b));
    let names = |v: &[(String, Vec<f32>)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    a.iter()
        .zip(&b)
        .flat_map(|((_, x), (_, y))| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// A trl PPO fixture's (`tests/fixtures/ppo/CASE`) trainer, as
/// `PPOTrainer(config, model, ref_model=None)`: t5-tiny with the fixture's LoRA adapter and
/// value head, the adapter-disabled reference and trl's config (less `backward_batch_size`,
/// which trl derives, and `seed`); with the fixture (`step.json`) and the adapter's config.
pub fn ppo_fixture_trainer<B: burn::tensor::backend::AutodiffBackend>(
    case: &str,
) -> (
    detox_ppo::PpoTrainer<B>,
    serde_json::Value,
    Option<detox_models::LoraConfig>,
) {
    use burn::module::AutodiffModule;
    let dir = fixtures().join("ppo").join(case);
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("step.json")).unwrap()).unwrap();
    let mut c = fx["config"].clone();
    let m = c.as_object_mut().unwrap();
    m.remove("backward_batch_size");
    m.remove("seed");
    let config: detox_rl::PpoConfig = serde_json::from_value(c).unwrap();
    let device = Default::default();
    let (policy, lora) = detox_ppo::load_policy::<B>(
        &fixtures().join("t5-tiny"),
        Some(&dir.join("adapter")),
        None,
        Some(&dir.join("v_head.safetensors")),
        &device,
    )
    .unwrap();
    let reference = detox_ppo::reference_model(
        &policy.valid().pretrained_model,
        detox_ppo::ReferenceKind::Base,
    );
    let trainer = detox_ppo::PpoTrainer::new(policy, reference, config, 0, &device).unwrap();
    (trainer, fx, lora)
}
