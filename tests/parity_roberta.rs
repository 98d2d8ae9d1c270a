//! RoBERTa classifier parity with transformers 4.46.3 (`tools/make_fixtures.py`): position ids,
//! embeddings, attention, every layer, logits; and the `detox score` path text by text.

mod common;

use burn::prelude::*;
use common::{assert_close, assert_slices_close, fixtures, Reference};
use detox_models::mask::additive_mask;
use detox_models::roberta::position_ids;
use detox_models::RobertaForSequenceClassification;

type Cpu = burn::backend::NdArray<f32>;
const TOL: f32 = 1e-4;

fn load<B: Backend>(device: &B::Device) -> RobertaForSequenceClassification<B> {
    detox_hub::load_roberta::<B>(&fixtures().join("roberta-tiny"), device).expect("fixture loads")
}

fn layers<B: Backend>(device: &B::Device) {
    let r = Reference::load("roberta-tiny");
    let model = load::<B>(device);
    let ids_ref = r.get("input_ids");
    let pos = position_ids(&ids_ref.i64, ids_ref.shape[1], 1);
    assert_eq!(pos, r.get("position_ids").i64, "position ids");

    let ids = r.int::<B, 2>("input_ids", device);
    let mask = r.int::<B, 2>("attention_mask", device);
    let hidden = model.hidden_states(ids.clone(), mask.clone());
    assert_close(&r, "embeddings", hidden[0].clone(), TOL);
    let attn = model.roberta.encoder.layer[0]
        .attention
        .forward(hidden[0].clone(), additive_mask(mask.clone()));
    assert_close(&r, "layer0_attention_out", attn, TOL);
    for (i, h) in hidden.into_iter().skip(1).enumerate() {
        assert_close(&r, &format!("layer{i}_out"), h, TOL);
    }
    assert_close(&r, "logits", model.forward(ids, mask), TOL);
}

#[test]
fn roberta_layers_match_transformers() {
    layers::<Cpu>(&Default::default());
}

#[test]
fn roberta_scores_texts_like_transformers() {
    let r = Reference::load("roberta-tiny");
    let device = Default::default();
    let model = load::<Cpu>(&device);
    assert_eq!(
        model.labels,
        vec!["nothate".to_string(), "hate".to_string()]
    );
    let dir = fixtures().join("roberta-tiny");
    let c = &model.config;
    let tok =
        detox_hub::TextTokenizer::from_dir(&dir, c.pad_token_id, c.max_input_len(), c.vocab_size)
            .unwrap();
    let texts: Vec<String> = serde_json::from_value(r.meta["score_texts"].clone()).unwrap();
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(r.meta["score_ids"].clone()).unwrap();
    let want_logits: Vec<Vec<f32>> =
        serde_json::from_value(r.meta["score_logits"].clone()).unwrap();
    // All texts in one padded batch must give each text's own (unpadded) logits.
    let batch = tok.encode_batch(&texts).unwrap();
    assert_eq!(batch.rows, want_ids);
    let ids = Tensor::<Cpu, 2, Int>::from_data(
        TensorData::new(batch.ids, [batch.batch, batch.len]),
        &device,
    );
    let mask = Tensor::<Cpu, 2, Int>::from_data(
        TensorData::new(batch.mask, [batch.batch, batch.len]),
        &device,
    );
    let got: Vec<f32> = model.forward(ids, mask).into_data().into_vec().unwrap();
    let want: Vec<f32> = want_logits.concat();
    assert_slices_close("score logits", &got, &want, TOL);
}

/// `save_roberta` writes what transformers wrote (same tensor names, shapes and labels), and the
/// copy loads back to the reference logits.
#[test]
fn a_saved_classifier_has_transformers_names_and_the_same_logits() {
    let r = Reference::load("roberta-tiny");
    let device = Default::default();
    let model = load::<Cpu>(&device);
    let out = common::scratch_path("roberta-save", "copy");
    detox_hub::save_roberta(&model, &out).unwrap();
    let names = |dir: &std::path::Path| {
        let mut v: Vec<(String, Vec<usize>)> =
            detox_hub::read_safetensors_header(&dir.join("model.safetensors"))
                .unwrap()
                .into_iter()
                .filter(|t| !t.name.ends_with("position_ids"))
                .map(|t| (t.name, t.shape))
                .collect();
        v.sort();
        v
    };
    assert_eq!(names(&out), names(&fixtures().join("roberta-tiny")));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["id2label"]["1"], "hate");
    assert_eq!(config["label2id"]["nothate"], 0);
    assert_eq!(
        config["architectures"][0],
        "RobertaForSequenceClassification"
    );
    let copy = detox_hub::load_roberta::<Cpu>(&out, &device).unwrap();
    let ids = r.int::<Cpu, 2>("input_ids", &device);
    let mask = r.int::<Cpu, 2>("attention_mask", &device);
    assert_close(&r, "logits", copy.forward(ids, mask), TOL);
    std::fs::remove_dir_all(&out).ok();
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_roberta_layers_match_transformers() {
    if !common::wgpu_enabled() {
        eprintln!(
            "skipped: set DETOX_TEST_WGPU=1 to run the wgpu parity subset (needs a Vulkan adapter)"
        );
        return;
    }
    layers::<burn::backend::Wgpu>(&burn::backend::wgpu::WgpuDevice::default());
}

#[test]
fn flex_roberta_layers_match_transformers() {
    layers::<burn::backend::Flex>(&Default::default());
}
