//! trl value-head files: `v_head.summary.weight` (`[1, d_model]`) and `v_head.summary.bias` (`[1]`)
//! in a safetensors file, as `AutoModelForSeq2SeqLMWithValueHead` names them.

use std::path::Path;

use burn::prelude::*;
use burn_store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use detox_models::ValueHead;

use crate::weights::{read_safetensors_header, WidenToF32};
use crate::HubError;

/// Loads a value head from `file` (only its `v_head.*` tensors are read; others are ignored, so a
/// whole trl checkpoint works too). Missing or mis-shaped tensors are an error naming the file.
pub fn load_value_head<B: Backend>(
    file: &Path,
    d_model: usize,
    summary_dropout_prob: f64,
    device: &B::Device,
) -> Result<ValueHead<B>, HubError> {
    let bad = |msg: String| HubError::Weights {
        path: file.to_path_buf(),
        msg,
    };
    let infos = read_safetensors_header(file)?;
    for (name, want) in [
        ("v_head.summary.weight", vec![1, d_model]),
        ("v_head.summary.bias", vec![1]),
    ] {
        match infos.iter().find(|t| t.name == name) {
            None => return Err(bad(format!("missing tensor `{name}` (a trl value head)"))),
            Some(t) if t.shape != want => {
                return Err(bad(format!(
                    "tensor `{name}` has shape {:?}, expected {want:?}",
                    t.shape
                )))
            }
            Some(_) => {}
        }
    }
    let mut head = ValueHead::new(d_model, summary_dropout_prob, device);
    let mut store = SafetensorsStore::from_file(file)
        .with_from_adapter(WidenToF32.chain(PyTorchToBurnAdapter))
        .remap(KeyRemapper::from_patterns(vec![(r"^v_head\.", "")]).expect("regex"))
        .allow_partial(true)
        .validate(false);
    let result = head
        .load_from(&mut store)
        .map_err(|e| bad(format!("cannot read tensors: {e}")))?;
    if result.applied.len() != 2 || !result.errors.is_empty() {
        return Err(bad(format!(
            "loaded {} of 2 value-head tensors",
            result.applied.len()
        )));
    }
    Ok(head)
}

/// Writes `head` to `file` with trl's names, atomically (temporary file, then rename).
pub fn save_value_head<B: Backend>(head: &ValueHead<B>, file: &Path) -> Result<(), HubError> {
    let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
    let mut store = SafetensorsStore::from_file(&tmp)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(KeyRemapper::from_patterns(vec![("^", "v_head.")]).expect("regex"))
        .clear_metadata()
        .metadata("format", "pt");
    head.save_into(&mut store).map_err(|e| HubError::Weights {
        path: tmp.clone(),
        msg: format!("cannot write value head: {e}"),
    })?;
    std::fs::rename(&tmp, file).map_err(|e| HubError::io(file, e))
}
