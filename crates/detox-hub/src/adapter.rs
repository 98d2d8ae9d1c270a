//! peft LoRA adapter directories (`adapter_config.json` + `adapter_model.safetensors`) in and out.
//!
//! peft's keys are `base_model.model.<HF module>.lora_A.weight` (`[r, in]`) and `…lora_B.weight`
//! (`[out, r]`); ours are the same module paths (after the architecture's name map) with burn's
//! transposed layout, so loading is the model's name map plus a prefix strip.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::prelude::*;
use burn_store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use detox_models::{LoraConfig, LoraTarget};

use crate::atomic::write_dir_atomic;
use crate::weights::{read_safetensors_header, NameMap, WidenToF32};
use crate::HubError;

const PREFIX: &str = "base_model.model.";

/// Parses and validates `dir/adapter_config.json`.
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig, HubError> {
    let path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| HubError::io(&path, e))?;
    let config: LoraConfig = serde_json::from_str(&text).map_err(|e| HubError::Config {
        path: path.clone(),
        msg: format!("not a valid peft LoRA config: {e}"),
    })?;
    config
        .validate()
        .map_err(|msg| HubError::Config { path, msg })?;
    Ok(config)
}

/// Adds the adapter in `dir` to `model` (its layers named by `adapter_config.json`'s
/// `target_modules`) and loads its weights. Every tensor must belong to an adapted layer with the
/// configured rank, and every adapted layer must get both matrices.
pub fn load_adapter<B: Backend, M: LoraTarget<B> + ModuleSnapshot<B>>(
    model: &mut M,
    dir: &Path,
    names: &NameMap,
    device: &B::Device,
) -> Result<LoraConfig, HubError> {
    let config = read_adapter_config(dir)?;
    let file = dir.join("adapter_model.safetensors");
    let bad = |msg: String| HubError::Weights {
        path: file.clone(),
        msg,
    };
    let adapted = model
        .add_lora(&config, device)
        .map_err(|msg| HubError::Config {
            path: dir.join("adapter_config.json"),
            msg,
        })?;
    let shapes: BTreeMap<String, (usize, usize)> = model
        .lora_linears()
        .into_iter()
        .map(|(n, l)| (n, (l.d_in(), l.d_out())))
        .collect();

    check_adapter_tensors(&file, &config, &adapted, &shapes)?;

    let mut remap = vec![(format!("^{}", regex::escape(PREFIX)), String::new())];
    remap.extend(names.remap.iter().cloned());
    let mut store = SafetensorsStore::from_file(&file)
        .with_from_adapter(WidenToF32.chain(PyTorchToBurnAdapter))
        .remap(KeyRemapper::from_patterns(remap).expect("name-map regex"))
        .allow_partial(true)
        .validate(false);
    let result = model
        .load_from(&mut store)
        .map_err(|e| bad(format!("cannot read tensors: {e}")))?;
    if !result.errors.is_empty() || result.applied.len() != 2 * adapted.len() {
        return Err(bad(format!(
            "loaded {} of {} LoRA tensors{}",
            result.applied.len(),
            2 * adapted.len(),
            result
                .errors
                .iter()
                .map(|e| format!("; {e}"))
                .collect::<String>()
        )));
    }
    Ok(config)
}

/// Checks the header of an adapter file before loading: every tensor is a `lora_A` / `lora_B`
/// weight of an `adapted` module with the configured rank (`shapes`: each adapted module's
/// `(d_in, d_out)`), and every adapted module gets both.
fn check_adapter_tensors(
    file: &Path,
    config: &LoraConfig,
    adapted: &[String],
    shapes: &BTreeMap<String, (usize, usize)>,
) -> Result<(), HubError> {
    let bad = |msg: String| HubError::Weights {
        path: file.to_path_buf(),
        msg,
    };
    let mut seen = BTreeSet::new();
    for t in read_safetensors_header(file)? {
        let name = t.name.strip_prefix(PREFIX).unwrap_or(&t.name);
        let (module, which) = name
            .strip_suffix(".lora_A.weight")
            .map(|m| (m, 'A'))
            .or_else(|| name.strip_suffix(".lora_B.weight").map(|m| (m, 'B')))
            .ok_or_else(|| {
                bad(format!(
                    "tensor `{}` is not a LoRA weight (…lora_A.weight / …lora_B.weight)",
                    t.name
                ))
            })?;
        if !adapted.iter().any(|a| a == module) {
            return Err(bad(format!(
                "tensor `{}` is for module `{module}`, which target_modules {:?} does not adapt (or the model lacks)",
                t.name, config.target_modules
            )));
        }
        let (d_in, d_out) = shapes[module];
        let want = if which == 'A' {
            vec![config.r, d_in]
        } else {
            vec![d_out, config.r]
        };
        if t.shape != want {
            return Err(bad(format!(
                "tensor `{}` has shape {:?}, expected {want:?} (r = {} in adapter_config.json)",
                t.name, t.shape, config.r
            )));
        }
        seen.insert(format!("{module}.{which}"));
    }
    let missing: Vec<String> = adapted
        .iter()
        .flat_map(|m| [format!("{m}.A"), format!("{m}.B")])
        .filter(|k| !seen.contains(k))
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!(
            "missing LoRA weights for: {}",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Writes `model`'s adapters as a peft adapter directory, atomically: files go to a temporary
/// sibling directory that replaces `dir` only once complete. `to_hf` maps our paths to HF names.
pub fn save_adapter<B: Backend, M: ModuleSnapshot<B>>(
    model: &M,
    config: &LoraConfig,
    dir: &Path,
    to_hf: &NameMap,
) -> Result<(), HubError> {
    write_dir_atomic(dir, |tmp| write_adapter_files(model, config, tmp, to_hf))
}

/// [`save_adapter`] without the atomic directory swap: writes `adapter_config.json` and
/// `adapter_model.safetensors` into the existing directory `dir` (a checkpoint being assembled).
pub fn write_adapter_files<B: Backend, M: ModuleSnapshot<B>>(
    model: &M,
    config: &LoraConfig,
    dir: &Path,
    to_hf: &NameMap,
) -> Result<(), HubError> {
    let mut remap = to_hf.remap.clone();
    remap.push(("^".into(), PREFIX.into()));
    let file = dir.join("adapter_model.safetensors");
    let mut store = SafetensorsStore::from_file(&file)
        .with_regex(r"\.lora_[AB]\.weight$")
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(KeyRemapper::from_patterns(remap).expect("name-map regex"))
        .clear_metadata()
        .metadata("format", "pt");
    model.save_into(&mut store).map_err(|e| HubError::Weights {
        path: file.clone(),
        msg: format!("cannot write adapter: {e}"),
    })?;
    let mut cfg = serde_json::to_value(config).expect("serializable config");
    cfg["inference_mode"] = serde_json::Value::Bool(true);
    let cfg_path = dir.join("adapter_config.json");
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).expect("json"))
        .map_err(|e| HubError::io(&cfg_path, e))
}
