//! Rewriting a safetensors file in another float type: f32 weights stored as bf16 or f16 halve a
//! model directory (what `detox convert --dtype bf16` does for the shipped models); loading widens
//! them back to f32 ([`crate::weights`]). Non-float tensors are copied unchanged.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::HubError;

/// The float types a file can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatType {
    F32,
    F16,
    Bf16,
}

impl FloatType {
    fn dtype(self) -> Dtype {
        match self {
            FloatType::F32 => Dtype::F32,
            FloatType::F16 => Dtype::F16,
            FloatType::Bf16 => Dtype::BF16,
        }
    }
}

/// The values of a float tensor's little-endian bytes as f32.
fn widen(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let pairs = || {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    };
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => pairs().map(|b| half::f16::from_bits(b).to_f32()).collect(),
        Dtype::BF16 => pairs().map(|b| half::bf16::from_bits(b).to_f32()).collect(),
        _ => return None,
    })
}

/// `values` as little-endian bytes of `to` (round to nearest even).
fn narrow(to: FloatType, values: &[f32]) -> Vec<u8> {
    match to {
        FloatType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        FloatType::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        FloatType::Bf16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
    }
}

/// Writes `src` to `dst` with every float tensor in `to`, keeping names, shapes and metadata.
/// Returns the number of tensors converted.
pub fn convert_safetensors(src: &Path, dst: &Path, to: FloatType) -> Result<usize, HubError> {
    let bytes = std::fs::read(src).map_err(|e| HubError::io(src, e))?;
    let bad = |msg: String| HubError::Weights {
        path: src.to_path_buf(),
        msg,
    };
    let (_, meta) =
        SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
    let file =
        SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
    let mut converted = 0;
    let mut out: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in file.tensors() {
        let shape = view.shape().to_vec();
        match widen(view.dtype(), view.data()) {
            Some(values) if view.dtype() != to.dtype() => {
                converted += 1;
                out.push((name, to.dtype(), shape, narrow(to, &values)));
            }
            _ => out.push((name, view.dtype(), shape, view.data().to_vec())),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let views: Vec<(String, TensorView)> = out
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| bad(format!("tensor {n}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let metadata: Option<HashMap<String, String>> = meta.metadata().clone();
    let data = safetensors::serialize(views, metadata)
        .map_err(|e| bad(format!("cannot serialize: {e}")))?;
    crate::atomic::write_file_atomic(dst, &data).map_err(|e| HubError::io(dst, e))?;
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_round_trips_within_its_precision_and_keeps_ints() {
        let dir = std::env::temp_dir().join(format!("detox-dtype-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vals: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) * 0.377).collect();
        let fbytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let ibytes: Vec<u8> = (0..4i64).flat_map(|v| v.to_le_bytes()).collect();
        let views = vec![
            (
                "w".to_string(),
                TensorView::new(Dtype::F32, vec![8, 8], &fbytes).unwrap(),
            ),
            (
                "ids".to_string(),
                TensorView::new(Dtype::I64, vec![4], &ibytes).unwrap(),
            ),
        ];
        let meta = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
        let src = dir.join("a.safetensors");
        std::fs::write(&src, safetensors::serialize(views, meta).unwrap()).unwrap();
        let dst = dir.join("b.safetensors");
        assert_eq!(convert_safetensors(&src, &dst, FloatType::Bf16).unwrap(), 1);
        let bytes = std::fs::read(&dst).unwrap();
        let (_, m) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(m.metadata().as_ref().unwrap()["format"], "pt");
        let f = SafeTensors::deserialize(&bytes).unwrap();
        let w = f.tensor("w").unwrap();
        assert_eq!((w.dtype(), w.shape()), (Dtype::BF16, &[8usize, 8][..]));
        let back = widen(Dtype::BF16, w.data()).unwrap();
        for (a, b) in vals.iter().zip(&back) {
            assert!((a - b).abs() <= a.abs() / 128.0, "{a} {b}");
        }
        let ids = f.tensor("ids").unwrap();
        assert_eq!((ids.dtype(), ids.data()), (Dtype::I64, &ibytes[..]));
        std::fs::remove_dir_all(&dir).ok();
    }
}
