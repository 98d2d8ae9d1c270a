//! Supervised fine-tuning parity with transformers 4.46.3 / peft 0.13.2 / torch 2.5.1
//! (`tools/make_train_fixtures.py`): the SFT batch and its loss, one and two AdamW steps with
//! global gradient clipping (full and LoRA), the linear schedule; and model directories written by
//! `save_t5` that transformers' names, layouts and `load_t5` accept.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::store::ModuleSnapshot;
use common::{assert_close, assert_slices_close, fixtures, Reference};
use detox_hub::models::{load_t5_with_dropout, set_lora_dropout};
use detox_models::{LoraTarget, T5ForConditionalGeneration};
use detox_train::checkpoint::param_paths;
use detox_train::data::{Batch, Encoder, PromptTemplate};
use detox_train::finetune::{apply_update, micro_step};
use detox_train::{clip_grad_norm, seq2seq_cross_entropy, shift_right, token_nll, LinearSchedule};

type Cpu = burn::backend::NdArray<f32>;

fn scratch(tag: &str) -> PathBuf {
    common::scratch_path("detox-parity-train", tag)
}

/// Every f32 tensor of a safetensors file: name → (shape, values).
fn read_st(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            assert_eq!(v.dtype(), safetensors::Dtype::F32, "{k}");
            let vals = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k.to_string(), (v.shape().to_vec(), vals))
        })
        .collect()
}

/// The SFT batch of the fixture as a collated batch.
fn sft_batch(r: &Reference) -> Batch {
    let ids = r.get("input_ids");
    let labels = r.get("labels");
    Batch {
        input_ids: ids.i64.clone(),
        attention_mask: r.get("attention_mask").i64.clone(),
        labels: labels.i64.clone(),
        batch: ids.shape[0],
        src_len: ids.shape[1],
        tgt_len: labels.shape[1],
    }
}

#[test]
fn sft_loss_and_token_nll_match_transformers() {
    let r = Reference::load("sft");
    let device = Default::default();
    let model = detox_hub::load_t5::<Cpu>(&fixtures().join("t5-tiny"), &device).unwrap();
    let labels = r.int::<Cpu, 2>("labels", &device);
    let dec = shift_right(labels.clone(), 0, 0);
    assert_eq!(
        dec.clone()
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .unwrap(),
        r.get("decoder_input_ids").i64,
        "decoder_input_ids = _shift_right(labels)"
    );
    let logits = model.forward(
        r.int::<Cpu, 2>("input_ids", &device),
        r.int::<Cpu, 2>("attention_mask", &device),
        dec,
    );
    assert_close(&r, "logits", logits.clone(), 1e-4);
    assert_close(
        &r,
        "token_nll",
        token_nll(logits.clone(), labels.clone()),
        1e-4,
    );
    assert_close(&r, "loss", seq2seq_cross_entropy(logits, labels), 1e-4);
    // The loop's own helper computes the same loss.
    let loss = detox_train::finetune::batch_loss(&model, &sft_batch(&r), &device);
    assert_close(&r, "loss", loss, 1e-4);
}

#[test]
fn sft_tokenization_matches_the_lab_preprocessing() {
    let r = Reference::load("sft");
    let dir = fixtures().join("t5-tiny");
    let enc = Encoder::from_dir(&dir, 0, 312, PromptTemplate::default(), 512, 128).unwrap();
    let dialogues: Vec<String> = serde_json::from_value(r.meta["dialogues"].clone()).unwrap();
    let summaries: Vec<String> = serde_json::from_value(r.meta["summaries"].clone()).unwrap();
    assert_eq!(
        r.meta["prompt_template"].as_str().unwrap(),
        detox_train::DEFAULT_TEMPLATE
    );
    let rows: Vec<_> = dialogues
        .iter()
        .zip(&summaries)
        .map(|(d, s)| {
            enc.encode(&detox_train::Example {
                id: None,
                dialogue: d.clone(),
                summary: s.clone(),
                topic: None,
            })
            .unwrap()
        })
        .collect();
    let batch = Batch::collate(&rows.iter().collect::<Vec<_>>(), 0);
    assert_eq!(batch, sft_batch(&r));
    assert_eq!(
        batch.num_label_tokens() as u64,
        r.meta["num_label_tokens"].as_u64().unwrap()
    );
}

/// `(HF name → our param path)` for T5: `layer.N` ↔ `layer_N`.
fn our_path(hf: &str) -> String {
    let parts: Vec<&str> = hf.split('.').collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        if parts[i] == "layer" && i + 1 < parts.len() && parts[i + 1].parse::<usize>().is_ok() {
            out.push(format!("layer_{}", parts[i + 1]));
            i += 2;
        } else {
            out.push(parts[i].to_string());
            i += 1;
        }
    }
    out.join(".")
}

/// A gradient of `model` by HF name (or peft adapter key), in HF layout (`[out, in]` for
/// linear weights, `[r, in]` / `[out, r]` for lora_A / lora_B).
fn hf_grad<B: Backend>(
    model: &T5ForConditionalGeneration<Autodiff<B>>,
    grads: &GradientsParams,
    hf: &str,
) -> Vec<f32> {
    let path = our_path(hf.strip_prefix("base_model.model.").unwrap_or(hf));
    let id = param_paths(model)
        .into_iter()
        .find(|(p, _)| *p == path)
        .unwrap_or_else(|| panic!("no parameter {path}"))
        .1;
    let t = if hf.contains("layer_norm") {
        grads.get::<B, 1>(id).expect("grad present").into_data()
    } else {
        let g = grads.get::<B, 2>(id).expect("grad present");
        // Linear weights are stored [in, out]; embeddings (shared, relative bias) are not.
        if hf.starts_with("shared.") || hf.contains("relative_attention_bias") {
            g.into_data()
        } else {
            g.transpose().into_data()
        }
    };
    t.convert::<f32>().into_vec().unwrap()
}

/// Model after the step, loss, gradient norm before clipping, clipped gradients by HF name.
type StepOut<B> = (
    T5ForConditionalGeneration<Autodiff<B>>,
    f64,
    f64,
    HashMap<String, Vec<f32>>,
);

/// One training step as the loop does it, keeping the clipped gradients (HF names) of `names`.
fn step_with_grads<B: Backend>(
    model: T5ForConditionalGeneration<Autodiff<B>>,
    optim: &mut detox_train::finetune::T5Optimizer<Autodiff<B>>,
    batch: &Batch,
    names: &[String],
) -> StepOut<B> {
    let device = model.devices()[0].clone();
    let (loss, mut grads) = micro_step(&model, batch, 1, &device);
    let norm = clip_grad_norm(&model, &mut grads, 0.5);
    let kept = names
        .iter()
        .map(|n| (n.clone(), hf_grad(&model, &grads, n)))
        .collect();
    // Clipping already done: the update alone (`apply_update` with clipping calls the same
    // `clip_grad_norm` first).
    let (model, _) = apply_update(model, optim, grads, None, 1e-3);
    (model, loss, norm, kept)
}

type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// torch's AdamW direction after `g.len()` steps with gradients `g` (β = 0.9, 0.999, eps 1e-8).
fn adam_direction(g: &[f64]) -> f64 {
    let (mut m, mut v) = (0.0, 0.0);
    for &x in g {
        m = 0.9 * m + 0.1 * x;
        v = 0.999 * v + 0.001 * x * x;
    }
    let t = g.len() as i32;
    (m / (1.0 - 0.9f64.powi(t))) / ((v / (1.0 - 0.999f64.powi(t))).sqrt() + 1e-8)
}

/// Compares the parameters we wrote after step `grads.len()` with torch's (`prefix` = `after.` /
/// `after2.`): every element to 1e-4 of the tensor's largest value, and the update itself
/// (after − before) to `update_tol` in relative L2 over the well-conditioned elements.
///
/// Exception, by construction of Adam: its update lr·m̂/(sqrt(v̂)+eps) is ±lr in step 1 whatever
/// |g| is, so where g is at the float-noise level of two implementations (our gradients agree
/// with torch's to ~2e-4 of the tensor's max |g|) the element can move either way; in step 2,
/// where the two gradients nearly cancel in m, small gradient differences are amplified as much.
/// An element is ill-conditioned when moving each step's gradient by δ = `noise`·max|g| changes
/// its update by more than half the tolerance. Differing elements are allowed only among these,
/// are collected into `ambiguous` (exempt in later steps, which carry the difference), and the
/// callers require them to be rare.
#[allow(clippy::too_many_arguments)]
fn check_params(
    name: &str,
    got: &Tensors,
    r: &Reference,
    prefix: &str,
    before: &Tensors,
    grads: &[&HashMap<String, Vec<f32>>],
    noise: f32,
    update_tol: f64,
    ambiguous: &mut HashMap<String, Vec<usize>>,
) -> (usize, usize) {
    let lr = 1e-3;
    let (mut n, mut elems) = (0, 0);
    for (k, want) in &r.tensors {
        let Some(hf) = k.strip_prefix(prefix) else {
            continue;
        };
        let (shape, vals) = got
            .get(hf)
            .unwrap_or_else(|| panic!("{name}: we wrote no {hf}"));
        assert_eq!(shape, &want.shape, "{name}: {hf} shape");
        let (_, b) = &before[hf];
        let gs: Vec<&Vec<f32>> = grads.iter().map(|g| &g[hf]).collect();
        let delta: Vec<f64> = gs
            .iter()
            .map(|g| noise as f64 * g.iter().fold(0f32, |m, v| m.max(v.abs())) as f64)
            .collect();
        let scale = want.f32.iter().fold(0f32, |m, v| m.max(v.abs()));
        let ill = |i: usize| {
            let g: Vec<f64> = gs.iter().map(|g| g[i] as f64).collect();
            let u = adam_direction(&g);
            (0..1usize << g.len()).any(|signs| {
                let moved: Vec<f64> = (0..g.len())
                    .map(|s| {
                        g[s] + if signs >> s & 1 == 1 {
                            delta[s]
                        } else {
                            -delta[s]
                        }
                    })
                    .collect();
                lr * (adam_direction(&moved) - u).abs() > 0.5e-4 * scale as f64
            })
        };
        let scale = want.f32.iter().fold(0f32, |m, v| m.max(v.abs()));
        let amb = ambiguous.entry(hf.to_string()).or_default();
        for i in 0..vals.len() {
            if (vals[i] - want.f32[i]).abs() > 1e-4 * scale && !amb.contains(&i) {
                assert!(
                    ill(i),
                    "{name} {k}[{i}]: got {}, want {} (before {}); gradients {:?}, noise {delta:?}",
                    vals[i],
                    want.f32[i],
                    b[i],
                    gs.iter().map(|g| g[i]).collect::<Vec<_>>()
                );
                amb.push(i);
            }
        }
        let (mut num, mut den) = (0f64, 0f64);
        for i in (0..vals.len()).filter(|&i| !amb.contains(&i) && !ill(i)) {
            let (ours, theirs) = ((vals[i] - b[i]) as f64, (want.f32[i] - b[i]) as f64);
            num += (ours - theirs).powi(2);
            den += theirs.powi(2);
        }
        let rel = (num / den.max(1e-30)).sqrt();
        assert!(
            rel <= update_tol,
            "{name} {k}: the update differs from torch's by {rel:e} (relative L2)"
        );
        n += 1;
        elems += vals.len();
    }
    (n, elems)
}

/// torch's parameters `prefix<name>` of `r` as a tensor map (HF names or peft keys).
fn reference_params(r: &Reference, prefix: &str) -> Tensors {
    r.tensors
        .iter()
        .filter_map(|(k, t)| {
            Some((
                k.strip_prefix(prefix)?.to_string(),
                (t.shape.clone(), t.f32.clone()),
            ))
        })
        .collect()
}

/// Overwrites `model`'s parameters with `tensors` (HF names / peft keys, PyTorch layouts), keeping
/// the parameter ids (and so the optimizer state that belongs to them).
fn set_params<B: Backend>(
    model: &mut T5ForConditionalGeneration<Autodiff<B>>,
    tensors: &Tensors,
    tag: &str,
) {
    use burn::store::{KeyRemapper, ModuleAdapter, PyTorchToBurnAdapter, SafetensorsStore};
    let dir = scratch(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("params.safetensors");
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, (shape, v))| {
            (
                k.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, b, shape)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &file).unwrap();
    let mut remap = vec![("^base_model\\.model\\.".to_string(), String::new())];
    remap.extend(detox_hub::t5_name_map(&model.config).remap);
    let mut store = SafetensorsStore::from_file(&file)
        .with_from_adapter(PyTorchToBurnAdapter.chain(detox_hub::weights::LoraLinearLayout))
        .remap(KeyRemapper::from_patterns(remap).unwrap())
        .allow_partial(true)
        .validate(false);
    let res = model.load_from(&mut store).unwrap();
    assert!(res.errors.is_empty(), "{:?}", res.errors);
    assert_eq!(res.applied.len(), tensors.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn adamw_full_steps_match_torch() {
    adamw_full::<Cpu>(&Default::default(), "cpu");
}

#[test]
fn adamw_full_steps_match_torch_on_flex() {
    adamw_full::<burn::backend::Flex>(&Default::default(), "flex");
}

fn adamw_full<B: Backend>(device: &B::Device, tag: &str) {
    type Ad<B> = Autodiff<B>;
    let r = Reference::load("adamw_full");
    let sft = Reference::load("sft");
    let device = device.clone();
    let base = fixtures().join("t5-tiny");
    let before = read_st(&base.join("model.safetensors"));
    let names: Vec<String> = serde_json::from_value(r.meta["param_names"].clone()).unwrap();
    let model = load_t5_with_dropout::<Ad<B>>(&base, Some(0.0), &device).unwrap();
    let batch = sft_batch(&sft);
    let mut optim =
        detox_train::optim::adamw(0.01).init::<Ad<B>, T5ForConditionalGeneration<Ad<B>>>();

    // Step 1: loss, global norm, clipped gradients, then every parameter.
    let (mut model, loss, norm, grads) = step_with_grads(model, &mut optim, &batch, &names);
    assert_step_scalars(&r, "", loss, norm);
    let mut n = 0;
    for (k, want) in &r.tensors {
        if let Some(hf) = k.strip_prefix("clipped_grad.") {
            // Gradients through a model with logits of std ~10 agree to ~2e-4 of their max.
            assert_slices_close(k, &grads[hf], &want.f32, 5e-4);
            n += 1;
        }
    }
    assert_eq!(n, 5);
    let dir = scratch(&format!("full-{tag}"));
    detox_hub::save_t5(&model.valid(), &dir).unwrap();
    let after = read_st(&dir.join("model.safetensors"));
    assert_eq!(after.len(), names.len());
    let mut ambiguous = HashMap::new();
    let (n, elems) = check_params(
        "step 1",
        &after,
        &r,
        "after.",
        &before,
        &[&grads],
        5e-4,
        1e-3,
        &mut ambiguous,
    );
    assert_eq!(n, 66);
    let flipped: usize = ambiguous.values().map(Vec::len).sum();
    assert_rarely_flipped(flipped, elems);

    // Step 2 (bias correction t = 2, moments carried over), from torch's step-1 parameters so
    // that its gradients are not those of a slightly different model.
    let torch_after = reference_params(&r, "after.");
    set_params(&mut model, &torch_after, &format!("full-set-{tag}"));
    let (model, loss2, norm2, grads2) = step_with_grads(model, &mut optim, &batch, &names);
    assert_step_scalars(&r, "2", loss2, norm2);
    detox_hub::save_t5(&model.valid(), &dir).unwrap();
    let after2 = read_st(&dir.join("model.safetensors"));
    let g = [&grads, &grads2];
    let (n, elems2) = check_params(
        "step 2",
        &after2,
        &r,
        "after2.",
        &torch_after,
        &g,
        5e-4,
        1e-3,
        &mut ambiguous,
    );
    assert_eq!(n, 5);
    let flipped2 = ambiguous.values().map(Vec::len).sum::<usize>() - flipped;
    assert_rarely_flipped(flipped2, elems2);
    let _ = std::fs::remove_dir_all(&dir);
}

fn base_values<B: Backend>(
    model: &T5ForConditionalGeneration<Autodiff<B>>,
) -> Vec<(String, Vec<f32>)> {
    model
        .collect(None, None, false)
        .into_iter()
        .filter(|s| !s.full_path().contains(".lora_"))
        .map(|s| {
            (
                s.full_path(),
                s.to_data().unwrap().convert::<f32>().into_vec().unwrap(),
            )
        })
        .collect()
}

#[test]
fn adamw_lora_steps_match_peft_and_leave_the_base_alone() {
    adamw_lora::<Cpu>(&Default::default(), "cpu");
}

#[test]
fn adamw_lora_steps_match_peft_on_flex() {
    adamw_lora::<burn::backend::Flex>(&Default::default(), "flex");
}

fn adamw_lora<B: Backend>(device: &B::Device, tag: &str) {
    use burn::optim::Optimizer;
    type Ad<B> = Autodiff<B>;
    let r = Reference::load("adamw_lora");
    let sft = Reference::load("sft");
    let device = device.clone();
    let base = fixtures().join("t5-tiny");
    let adapter = fixtures().join("lora/t5-tiny-lora-qv");
    let mut model = load_t5_with_dropout::<Ad<B>>(&base, Some(0.0), &device)
        .unwrap()
        .no_grad();
    let names = detox_hub::t5_name_map(&model.config);
    let lc = detox_hub::load_adapter(&mut model, &adapter, &names, &device).unwrap();
    set_lora_dropout(&mut model, 0.0);
    let keys: Vec<String> = serde_json::from_value(r.meta["adapter_keys"].clone()).unwrap();
    let base_before = base_values(&model);
    assert_eq!(base_before.len(), 66);
    let batch = sft_batch(&sft);

    // Only the 32 adapter tensors get gradients.
    let (_, grads) = micro_step(&model, &batch, 1, &device);
    assert_eq!(grads.len(), keys.len());
    drop(grads);

    let mut optim =
        detox_train::optim::adamw(0.01).init::<Ad<B>, T5ForConditionalGeneration<Ad<B>>>();
    let to_hf = detox_hub::models::t5_name_map_to_hf();
    let dir = scratch(&format!("lora-{tag}"));
    let save = |m: &T5ForConditionalGeneration<Ad<B>>| {
        detox_hub::save_adapter(&m.valid(), &lc, &dir, &to_hf).unwrap();
        read_st(&dir.join("adapter_model.safetensors"))
    };
    let mut ambiguous = HashMap::new();

    let (mut model, loss, norm, grads) = step_with_grads(model, &mut optim, &batch, &keys);
    assert_step_scalars(&r, "", loss, norm);
    let before = read_st(&adapter.join("adapter_model.safetensors"));
    let got = save(&model);
    let (n, elems) = check_params(
        "step 1",
        &got,
        &r,
        "after.",
        &before,
        &[&grads],
        5e-4,
        1e-3,
        &mut ambiguous,
    );
    assert_eq!(n, 32);
    let flipped: usize = ambiguous.values().map(Vec::len).sum();
    assert_rarely_flipped(flipped, elems);

    let torch_after = reference_params(&r, "after.");
    set_params(&mut model, &torch_after, &format!("lora-set-{tag}"));
    let (model, loss2, norm2, grads2) = step_with_grads(model, &mut optim, &batch, &keys);
    assert_step_scalars(&r, "2", loss2, norm2);
    let got = save(&model);
    let g = [&grads, &grads2];
    let (n, _) = check_params(
        "step 2",
        &got,
        &r,
        "after2.",
        &torch_after,
        &g,
        5e-4,
        1e-3,
        &mut ambiguous,
    );
    assert_eq!(n, 32);
    let flipped2 = ambiguous.values().map(Vec::len).sum::<usize>() - flipped;
    assert_rarely_flipped(flipped2, elems);

    // Optimizer state exists for the adapters only; the frozen base is bit-for-bit unchanged.
    assert_eq!(optim.to_record().len(), 32);
    assert!(
        base_before == base_values(&model),
        "the frozen base model changed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn linear_schedule_matches_transformers() {
    let r = Reference::load("adamw_full");
    let want: Vec<f64> = serde_json::from_value(r.meta["linear_schedule"]["lr"].clone()).unwrap();
    let s = LinearSchedule::new(1e-3, 3, 10);
    for (k, w) in want.iter().enumerate() {
        assert!((s.lr(k) - w).abs() < 1e-12, "step {k}: {} vs {w}", s.lr(k));
    }
}

fn logits_of(model: &T5ForConditionalGeneration<Cpu>, r: &Reference) -> Tensor<Cpu, 3> {
    let device = Default::default();
    model.forward(
        r.int::<Cpu, 2>("input_ids", &device),
        r.int::<Cpu, 2>("attention_mask", &device),
        r.int::<Cpu, 2>("decoder_input_ids", &device),
    )
}

fn header(path: &Path) -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<_> = detox_hub::read_safetensors_header(path)
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.shape))
        .collect();
    v.sort();
    v
}

#[test]
fn saved_t5_directories_have_hf_names_and_reload_identically() {
    let device = Default::default();
    for name in ["t5-tiny", "t5-tiny-relu"] {
        let src = fixtures().join(name);
        let model = detox_hub::load_t5::<Cpu>(&src, &device).unwrap();
        let dir = scratch(&format!("save-{name}"));
        detox_hub::save_t5(&model, &dir).unwrap();
        // Same names and shapes as transformers' save_pretrained (tied: no lm_head.weight).
        assert_eq!(
            header(&dir.join("model.safetensors")),
            header(&src.join("model.safetensors")),
            "{name}"
        );
        let reloaded = detox_hub::load_t5::<Cpu>(&dir, &device).unwrap();
        assert_eq!(
            reloaded.config.tie_word_embeddings,
            model.config.tie_word_embeddings
        );
        let r = Reference::load(name);
        // Same values as the fixture's weights (f32 in, f32 out, PyTorch layout).
        let (x, y) = (
            read_st(&dir.join("model.safetensors")),
            read_st(&src.join("model.safetensors")),
        );
        for (k, v) in &y {
            assert!(
                x[k] == *v,
                "{name}: tensor {k} differs after the round trip"
            );
        }
        let a: Vec<f32> = logits_of(&model, &r).into_data().into_vec().unwrap();
        let b: Vec<f32> = logits_of(&reloaded, &r).into_data().into_vec().unwrap();
        // (Not bit-identical: the multi-threaded CPU matmul does not sum in a fixed order.)
        assert_slices_close(&format!("{name}: reloaded logits"), &b, &a, 1e-4);
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["architectures"][0], "T5ForConditionalGeneration");
        assert_eq!(cfg["model_type"], "t5");
        assert!(cfg["decoder_start_token_id"].is_number());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn saving_a_lora_model_merges_the_adapter() {
    let device = Default::default();
    let base = fixtures().join("t5-tiny");
    let mut model = detox_hub::load_t5::<Cpu>(&base, &device).unwrap();
    let names = detox_hub::t5_name_map(&model.config);
    detox_hub::load_adapter(
        &mut model,
        &fixtures().join("lora/t5-tiny-lora-qv"),
        &names,
        &device,
    )
    .unwrap();
    let dir = scratch("merged");
    detox_hub::save_t5(&model, &dir).unwrap();
    assert_eq!(
        header(&dir.join("model.safetensors")),
        header(&base.join("model.safetensors")),
        "no LoRA tensors in a merged save"
    );
    // The module itself stays unmerged.
    assert!(model.lora_linears().iter().all(|(_, l)| !l.is_merged()));
    let reloaded = detox_hub::load_t5::<Cpu>(&dir, &device).unwrap();
    let r = Reference::load("lora-qv");
    assert_close(&r, "merged_logits", logits_of(&reloaded, &r), 1e-4);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Adam's first steps are ~lr·sign(g): elements whose gradient is float noise may move either way.
/// At most 0.1% of them may differ from torch.
fn assert_rarely_flipped(flipped: usize, elems: usize) {
    assert!(
        flipped * 1000 < elems,
        "{flipped} of {elems} elements differ"
    );
}

/// The loss and pre-clip gradient norm of a step against torch's (`loss{suffix}`, `grad_norm{suffix}`).
fn assert_step_scalars(r: &Reference, suffix: &str, loss: f64, norm: f64) {
    assert_slices_close(
        &format!("loss{suffix}"),
        &[loss as f32],
        &r.get(&format!("loss{suffix}")).f32,
        1e-4,
    );
    assert_slices_close(
        &format!("grad_norm{suffix}"),
        &[norm as f32],
        &r.get(&format!("grad_norm{suffix}")).f32,
        1e-4,
    );
}
