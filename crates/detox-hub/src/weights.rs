//! Safetensors checkpoints → burn modules, through burn-store.
//!
//! A checkpoint is `model.safetensors` or the shards listed in `model.safetensors.index.json`.
//! Every file is checked (header, offsets, sizes) before it is read, f16/bf16 tensors are widened
//! to f32, linear weights are transposed from PyTorch's `[out, in]` (burn-store's
//! `PyTorchToBurnAdapter`), and names are remapped with a few regexes per architecture. Missing,
//! unexpected and mis-shaped tensors are collected over all shards and reported together.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{
    KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
    TensorSnapshot,
};

use crate::HubError;

/// One tensor as a safetensors header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub file: PathBuf,
}

fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// Reads and checks a safetensors header: the header parses, every tensor's byte range matches its
/// dtype and shape, and the data section is exactly as long as the file says.
pub fn read_safetensors_header(path: &Path) -> Result<Vec<TensorInfo>, HubError> {
    let bad = |msg: String| HubError::Weights {
        path: path.to_path_buf(),
        msg,
    };
    let mut file = File::open(path).map_err(|e| HubError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| HubError::io(path, e))?.len();
    let mut n = [0u8; 8];
    file.read_exact(&mut n)
        .map_err(|_| bad("file is shorter than a safetensors header (truncated?)".into()))?;
    let n = u64::from_le_bytes(n);
    if n > 100_000_000 || 8 + n > file_len {
        return Err(bad(format!(
            "header length {n} does not fit in a {file_len}-byte file (truncated or not safetensors)"
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("cannot read header: {e}")))?;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    let data_len = file_len - 8 - n;
    let mut infos = Vec::new();
    let mut max_end = 0u64;
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = v["dtype"]
            .as_str()
            .ok_or_else(|| bad(format!("tensor `{name}` has no dtype")))?
            .to_string();
        let shape: Vec<usize> = v["shape"]
            .as_array()
            .ok_or_else(|| bad(format!("tensor `{name}` has no shape")))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("tensor `{name}` has a malformed shape")))?;
        let offsets: Vec<u64> = v["data_offsets"]
            .as_array()
            .and_then(|a| a.iter().map(|o| o.as_u64()).collect())
            .filter(|o: &Vec<u64>| o.len() == 2)
            .ok_or_else(|| bad(format!("tensor `{name}` has malformed data_offsets")))?;
        let size = dtype_size(&dtype)
            .ok_or_else(|| bad(format!("tensor `{name}` has unsupported dtype {dtype}")))?;
        let numel: usize = shape.iter().product();
        if offsets[1] < offsets[0] || offsets[1] - offsets[0] != (numel * size) as u64 {
            return Err(bad(format!(
                "tensor `{name}` ({dtype} {shape:?}) has {} bytes, expected {}",
                offsets[1].saturating_sub(offsets[0]),
                numel * size
            )));
        }
        max_end = max_end.max(offsets[1]);
        infos.push(TensorInfo {
            name,
            dtype,
            shape,
            file: path.to_path_buf(),
        });
    }
    if max_end != data_len {
        return Err(bad(format!(
            "data section is {data_len} bytes but the header describes {max_end} (truncated or corrupt file)"
        )));
    }
    Ok(infos)
}

/// The checkpoint files of a model directory, in shard order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, HubError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let files: Vec<PathBuf> = index_shards(&index)?
            .into_iter()
            .map(|f| dir.join(f))
            .collect();
        for f in &files {
            if !f.is_file() {
                return Err(HubError::Weights {
                    path: index.clone(),
                    msg: format!("lists shard {} which does not exist", f.display()),
                });
            }
        }
        return Ok(files);
    }
    Err(HubError::Weights {
        path: dir.to_path_buf(),
        msg: "no model.safetensors or model.safetensors.index.json in this directory".into(),
    })
}

/// The shard file names `index` (a `model.safetensors.index.json`) lists, sorted, each once.
pub(crate) fn index_shards(index: &Path) -> Result<Vec<String>, HubError> {
    let text = std::fs::read_to_string(index).map_err(|e| HubError::io(index, e))?;
    let bad = |msg: String| HubError::Weights {
        path: index.to_path_buf(),
        msg,
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| bad("missing the `weight_map` object".into()))?;
    let files: BTreeSet<String> = map
        .values()
        .map(|f| f.as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("`weight_map` values must be file names".into()))?;
    Ok(files.into_iter().collect())
}

/// A snapshot like `snapshot` whose data is `f(original data)`, as f32 of shape `shape`.
fn map_f32_data(
    snapshot: &TensorSnapshot,
    shape: burn::tensor::Shape,
    f: impl Fn(burn::tensor::TensorData) -> burn::tensor::TensorData + 'static,
) -> TensorSnapshot {
    let data = snapshot.clone_data_fn();
    TensorSnapshot::from_closure(
        Rc::new(move || Ok(f(data()?.convert_dtype(DType::F32)))),
        DType::F32,
        shape,
        snapshot.path_stack.clone().unwrap_or_default(),
        snapshot.container_stack.clone().unwrap_or_default(),
        snapshot.tensor_id.unwrap_or_default(),
    )
}

/// Widens f16/bf16 tensors to f32 (models compute in f32).
#[derive(Debug, Clone, Default)]
pub struct WidenToF32;

impl ModuleAdapter for WidenToF32 {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        if !matches!(snapshot.dtype, DType::F16 | DType::BF16) {
            return snapshot.clone();
        }
        map_f32_data(snapshot, snapshot.shape.clone(), |d| d)
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// Transposes the `weight` of [`detox_models::LoraLinear`] layers between PyTorch's `[out, in]`
/// and burn's `[in, out]` (burn-store's `PyTorchToBurnAdapter` only knows burn's own `Linear`).
/// The transpose is its own inverse, so the same adapter serves loading and saving. Expects f32.
#[derive(Debug, Clone, Default)]
pub struct LoraLinearLayout;

impl ModuleAdapter for LoraLinearLayout {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let is_weight = snapshot
            .path_stack
            .as_ref()
            .and_then(|p| p.last())
            .is_some_and(|p| p == "weight");
        let is_lora_linear = snapshot.module_type().as_deref() == Some("Struct:LoraLinear");
        if !(is_weight && is_lora_linear && snapshot.shape.len() == 2) {
            return snapshot.clone();
        }
        let (rows, cols) = (snapshot.shape[0], snapshot.shape[1]);
        map_f32_data(snapshot, [cols, rows].into(), move |d| {
            let v: Vec<f32> = d.to_vec().expect("f32 data");
            let mut t = vec![0f32; v.len()];
            for r in 0..rows {
                for c in 0..cols {
                    t[c * rows + r] = v[r * cols + c];
                }
            }
            burn::tensor::TensorData::new(t, [cols, rows])
        })
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// How an architecture's HF names map onto its module tree.
#[derive(Debug, Clone, Default)]
pub struct NameMap {
    /// `(regex on the HF name, replacement)`, applied in order.
    pub remap: Vec<(String, String)>,
    /// HF tensors that are deliberately not loaded (tied copies, buffers), as regexes.
    pub ignore: Vec<String>,
}

/// What was loaded.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub loaded: usize,
    pub ignored: Vec<String>,
    pub files: Vec<PathBuf>,
}

/// Loads every tensor of `files` into `module`, or explains in one error what does not fit.
pub fn load_into<B: Backend, M: ModuleSnapshot<B>>(
    module: &mut M,
    files: &[PathBuf],
    names: &NameMap,
) -> Result<LoadReport, HubError> {
    // Expected tensors: the module's own paths and shapes.
    let expected: BTreeMap<String, Vec<usize>> = module
        .collect(None, None, false)
        .into_iter()
        .map(|s| (s.full_path(), s.shape.to_vec()))
        .collect();
    let remapper = KeyRemapper::from_patterns(names.remap.clone()).expect("name-map regex");
    let mut fit = Fit::new(names, &remapper);
    let mut applied = BTreeSet::new();
    let mut report = LoadReport {
        files: files.to_vec(),
        ..Default::default()
    };
    for file in files {
        fit.check_names(&read_safetensors_header(file)?, &expected, &mut report);
        if !fit.names_fit() {
            continue;
        }
        let mut store = SafetensorsStore::from_file(file)
            .with_from_adapter(
                WidenToF32
                    .chain(PyTorchToBurnAdapter)
                    .chain(LoraLinearLayout),
            )
            .remap(remapper.clone())
            .allow_partial(true)
            .validate(false);
        let result = module
            .load_from(&mut store)
            .map_err(|e| HubError::Weights {
                path: file.clone(),
                msg: format!("cannot read tensors: {e}"),
            })?;
        fit.shape_errors
            .extend(result.errors.iter().map(|e| e.to_string()));
        applied.extend(result.applied);
    }
    if let Some(msg) = fit.error(&expected, &applied) {
        return Err(HubError::Weights {
            path: files.first().cloned().unwrap_or_default(),
            msg,
        });
    }
    report.loaded = applied.len();
    Ok(report)
}

/// How the checkpoint's tensors fit the module, gathered over all files for one error.
struct Fit<'a> {
    ignore: Vec<regex::Regex>,
    remapper: &'a KeyRemapper,
    /// Module paths some file holds.
    present: BTreeSet<String>,
    unexpected: Vec<String>,
    shape_errors: Vec<String>,
}

impl<'a> Fit<'a> {
    fn new(names: &NameMap, remapper: &'a KeyRemapper) -> Self {
        Self {
            ignore: names
                .ignore
                .iter()
                .map(|p| regex::Regex::new(p).expect("name-map regex"))
                .collect(),
            remapper,
            present: BTreeSet::new(),
            unexpected: Vec::new(),
            shape_errors: Vec::new(),
        }
    }

    fn remap(&self, name: &str) -> String {
        let mut out = name.to_string();
        for (re, to) in self.remapper.to_regex_pairs() {
            out = re.replace_all(&out, to.as_str()).into_owned();
        }
        out
    }

    /// Checks one file's header against the module: ignored, unexpected and mis-shaped names.
    fn check_names(
        &mut self,
        infos: &[TensorInfo],
        expected: &BTreeMap<String, Vec<usize>>,
        report: &mut LoadReport,
    ) {
        for info in infos {
            if self.ignore.iter().any(|re| re.is_match(&info.name)) {
                report.ignored.push(info.name.clone());
                continue;
            }
            let target = self.remap(&info.name);
            let Some(shape) = expected.get(&target) else {
                self.unexpected
                    .push(format!("{} {:?}", info.name, info.shape));
                continue;
            };
            self.present.insert(target.clone());
            // Linear weights are stored transposed; compare element counts and the set of dims.
            let mut a = shape.clone();
            let mut b = info.shape.clone();
            a.sort_unstable();
            b.sort_unstable();
            if a != b {
                self.shape_errors.push(format!(
                    "{}: checkpoint has {:?}, model expects {:?} (as {})",
                    info.name, info.shape, shape, target
                ));
            }
        }
    }

    fn names_fit(&self) -> bool {
        self.unexpected.is_empty() && self.shape_errors.is_empty()
    }

    /// The one error message listing what does not fit, or `None` when everything does.
    /// Missing: absent from every file; or, when all names fit, present but not applied.
    fn error(
        &self,
        expected: &BTreeMap<String, Vec<usize>>,
        applied: &BTreeSet<String>,
    ) -> Option<String> {
        let fits = self.names_fit();
        let missing: Vec<String> = expected
            .iter()
            .filter(|(k, _)| !self.present.contains(*k) || (fits && !applied.contains(*k)))
            .map(|(k, s)| format!("{k} {s:?}"))
            .collect();
        if fits && missing.is_empty() {
            return None;
        }
        let mut msg = String::from("the checkpoint does not fit the model built from config.json");
        for (title, list) in [
            ("missing tensors", &missing),
            ("unexpected tensors", &self.unexpected),
            ("mis-shaped tensors", &self.shape_errors),
        ] {
            if !list.is_empty() {
                msg.push_str(&format!("\n  {title} ({}):", list.len()));
                for item in list.iter().take(20) {
                    msg.push_str(&format!("\n    {item}"));
                }
                if list.len() > 20 {
                    msg.push_str(&format!("\n    ... and {} more", list.len() - 20));
                }
            }
        }
        Some(msg)
    }
}
