//! Reward-model parity with trl 0.11.4's `RewardTrainer` (torch 2.5.1, transformers 4.46.3;
//! `tools/make_reward_fixtures.py`): on a tiny one-output RoBERTa, the texts' token ids, the
//! initial rewards, the loss (plain, with center_rewards_coefficient, with margins), every
//! gradient, the gradient norm, and every parameter after one AdamW step with global clipping.

mod common;

use std::collections::HashMap;
use std::path::Path;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use common::{fixtures, Reference};
use detox_hub::TextTokenizer;
use detox_train::finetune::apply_update;
use detox_train::reward::{batch_loss, evaluate_pairs, with_reward_head, EncodedPair, Roberta};

type Cpu = burn::backend::NdArray<f32>;
type Flex = burn_flex::Flex;

fn model_dir() -> std::path::PathBuf {
    fixtures().join("roberta-tiny-reward")
}

/// Every f32 tensor of a safetensors file: name → values.
fn read_st(path: &Path) -> HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let vals = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k.to_string(), vals)
        })
        .collect()
}

/// The module with each parameter replaced by its gradient (zeros where it has none).
struct GradsAsParams<'a> {
    grads: &'a GradientsParams,
}

impl<B: Backend> ModuleMapper<B> for GradsAsParams<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let g = self
            .grads
            .get::<B, D>(id)
            .unwrap_or_else(|| tensor.zeros_like());
        Param::from_mapped_value(id, g, mapper)
    }
}

/// A module's tensors by transformers' name, as `save` writes them (PyTorch layouts).
fn hf_tensors<B: Backend>(model: &Roberta<B>, tag: &str) -> HashMap<String, Vec<f32>> {
    // a directory of its own per call: the ndarray and flex tests run at once in one process
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = common::scratch_dir("detox-parity-reward", &format!("{tag}-{n}"));
    detox_hub::save::write_roberta_files(model, &dir).unwrap();
    let t = read_st(&dir.join("model.safetensors"));
    let _ = std::fs::remove_dir_all(&dir);
    t
}

fn pairs(r: &Reference) -> Vec<EncodedPair> {
    let meta = &r.meta;
    let prompt = meta["prompt"].as_str().unwrap();
    let model = detox_hub::load_roberta::<Cpu>(&model_dir(), &Default::default()).unwrap();
    let c = &model.config;
    let tok = TextTokenizer::from_dir(&model_dir(), c.pad_token_id, 64, c.vocab_size).unwrap();
    meta["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let text = |k: &str| {
                prompt.replace("{d}", p["dialogue"].as_str().unwrap()) + p[k].as_str().unwrap()
            };
            let chosen = tok.encode(&text("chosen")).unwrap();
            let rejected = tok.encode(&text("rejected")).unwrap();
            let want = |k: &str| -> Vec<u32> {
                r.tensors[&format!("{k}.{i}")]
                    .i64
                    .iter()
                    .map(|&x| x as u32)
                    .collect()
            };
            assert_eq!(chosen, want("ids_chosen"), "pair {i} chosen ids");
            assert_eq!(rejected, want("ids_rejected"), "pair {i} rejected ids");
            EncodedPair {
                chosen,
                rejected,
                margin: p["margin"].as_f64().unwrap() as f32,
            }
        })
        .collect()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

/// `got` against `want`, elementwise within `tol` of the tensor's largest magnitude, or of
/// `floor` where that is larger: the attention key biases' gradients are zero by construction
/// (softmax ignores a shift shared by all keys), so both sides hold float noise there.
fn assert_tensor(name: &str, got: &[f32], want: &[f32], tol: f32, floor: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = max_abs(want).max(floor).max(1e-12);
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{name}: max |diff| {worst:e} > {tol} x {scale:e}"
    );
}

fn scalar(r: &Reference, key: &str) -> f64 {
    r.tensors[key].f32[0] as f64
}

/// One case: loss, initial rewards, gradients and norm; returns the model, its gradients and
/// the gradient norm.
fn check_case<B: Backend>(
    r: &Reference,
    case: &str,
    center: Option<f64>,
    rows: &[EncodedPair],
    device: &B::Device,
) -> (Roberta<Autodiff<B>>, GradientsParams) {
    let device = device.clone();
    let model = detox_hub::load_roberta::<Autodiff<B>>(&model_dir(), &device).unwrap();
    let (model, replaced) = with_reward_head(model, "preferred", 0);
    assert!(!replaced, "the fixture already has one output");
    let pad = model.config.pad_token_id;
    let e = evaluate_pairs(&model.valid(), rows, 4, pad, center, &device);
    let mean = |k: &str| {
        let v = &r.tensors[&format!("{case}.{k}")].f32;
        v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64
    };
    assert!(
        (e.reward_chosen_mean - mean("rewards_chosen")).abs() < 1e-5,
        "{case}: chosen rewards"
    );
    assert!(
        (e.reward_rejected_mean - mean("rewards_rejected")).abs() < 1e-5,
        "{case}: rejected rewards"
    );
    assert!(
        (e.loss - scalar(r, &format!("{case}.loss"))).abs() < 1e-5,
        "{case}: host loss {}",
        e.loss
    );
    let refs: Vec<&EncodedPair> = rows.iter().collect();
    let loss = batch_loss(&model, &refs, pad, center, &device);
    let value: f64 = loss.clone().into_scalar().elem();
    let want = scalar(r, &format!("{case}.loss"));
    assert!(
        (value - want).abs() < 1e-5,
        "{case}: loss {value} vs trl {want}"
    );
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let norm = detox_train::grad_norm(&model, &grads);
    let want = scalar(r, &format!("{case}.grad_norm"));
    assert!(
        (norm - want).abs() < 1e-4 * want,
        "{case}: grad norm {norm} vs trl {want}"
    );
    let as_params = model.valid().map(&mut GradsAsParams { grads: &grads });
    let got = hf_tensors(&as_params, case);
    let prefix = format!("{case}.grad.");
    let floor = r
        .tensors
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, t)| max_abs(&t.f32))
        .fold(0f32, f32::max)
        * 1e-3;
    let mut n = 0;
    for (k, t) in &r.tensors {
        let Some(hf) = k.strip_prefix(&prefix) else {
            continue;
        };
        let g = got
            .get(hf)
            .unwrap_or_else(|| panic!("{case}: we have no gradient {hf}"));
        assert_tensor(&format!("{case} grad {hf}"), g, &t.f32, 1e-4, floor);
        n += 1;
    }
    assert!(n >= 30, "{case}: only {n} gradients compared");
    (model, grads)
}

#[test]
fn a_reward_trainer_step_matches_trl() {
    reward_step::<Cpu>(&Default::default());
}

#[test]
fn a_reward_trainer_step_matches_trl_on_flex() {
    reward_step::<Flex>(&Default::default());
}

fn reward_step<B: Backend>(device: &B::Device) {
    let r = Reference::load("reward_step");
    let rows = pairs(&r);
    // with the margins zeroed for the cases trained without a margin column
    let no_margin: Vec<EncodedPair> = rows
        .iter()
        .map(|p| EncodedPair {
            margin: 0.0,
            ..p.clone()
        })
        .collect();
    check_case::<B>(&r, "center", Some(0.1), &no_margin, device);
    check_case::<B>(&r, "margin", None, &rows, device);
    let (model, grads) = check_case::<B>(&r, "plain", None, &no_margin, device);

    // one AdamW step (lr 1e-3, eps 1e-8, wd 0) after clipping to norm 1
    let before = hf_tensors(&model.valid(), "before");
    let g_hf = hf_tensors(
        &model.valid().map(&mut GradsAsParams { grads: &grads }),
        "g",
    );
    let mut optim = detox_train::optim::adamw(0.0).init::<Autodiff<B>, Roberta<Autodiff<B>>>();
    let (model, _) = apply_update(model, &mut optim, grads, Some(1.0), 1e-3);
    let after = hf_tensors(&model.valid(), "after");
    let (mut compared, mut ambiguous) = (0usize, 0usize);
    let gmax = g_hf.values().map(|g| max_abs(g)).fold(0f32, f32::max);
    for (k, t) in &r.tensors {
        let Some(hf) = k.strip_prefix("plain.after.") else {
            continue;
        };
        let got = &after[hf];
        let g = &g_hf[hf];
        for (i, (&a, &w)) in got.iter().zip(&t.f32).enumerate() {
            compared += 1;
            if (a - w).abs() <= 1e-4 * (1.0 + w.abs()) {
                continue;
            }
            // Adam's first step moves an element by ±lr whatever |g| is: where g is at the
            // float-noise level of two implementations (the key biases', zero by construction),
            // its sign may differ.
            assert!(
                g[i].abs() <= 1e-5 * gmax,
                "{hf}[{i}]: after {a} vs trl {w} (before {}, grad {})",
                before[hf][i],
                g[i]
            );
            ambiguous += 1;
        }
    }
    assert!(compared > 50_000, "compared {compared} elements");
    assert!(
        ambiguous * 1000 <= compared,
        "{ambiguous} of {compared} elements differ"
    );
}

#[test]
fn a_two_label_classifier_gets_a_fresh_one_output_head() {
    let device = Default::default();
    let model = detox_hub::load_roberta::<Cpu>(&fixtures().join("roberta-tiny"), &device).unwrap();
    assert_eq!(model.labels.len(), 2);
    let dense = model.classifier.dense.weight.val().into_data();
    let (model, replaced) = with_reward_head(model, "helpful", 7);
    assert!(replaced);
    assert_eq!(model.labels, ["helpful"]);
    assert_eq!(model.classifier.out_proj.weight.dims(), [64, 1]);
    assert_eq!(
        model.classifier.dense.weight.val().into_data(),
        dense,
        "the dense layer stays"
    );
    let w: Vec<f32> = model
        .classifier
        .out_proj
        .weight
        .val()
        .into_data()
        .into_vec()
        .unwrap();
    let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
    assert!((0.01..0.04).contains(&std), "N(0, 0.02) head, std {std}");
    let b: Vec<f32> = model
        .classifier
        .out_proj
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .into_vec()
        .unwrap();
    assert_eq!(b, [0.0]);
    // saved and loaded back, it is a one-label classifier by that name
    let dir = common::scratch_dir("detox-parity-reward", "head");
    detox_hub::save::write_roberta_files(&model, &dir).unwrap();
    std::fs::copy(
        fixtures().join("roberta-tiny/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let c = detox_hub::Classifier::<Cpu>::load(&dir, 4, &device).unwrap();
    assert_eq!(c.labels(), ["helpful"]);
    assert_eq!(c.label("helpful").unwrap(), 0);
    let logits = c.logits(&["a text"]).unwrap();
    assert_eq!(logits[0].len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
