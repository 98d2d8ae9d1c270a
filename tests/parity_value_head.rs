//! trl 0.11.4 value head (`tools/make_value_head_fixture.py`): the values trl's
//! `AutoModelForSeq2SeqLMWithValueHead` computes, and its file names, round trip.

mod common;

use common::{assert_close, fixtures, Reference};

type Cpu = burn::backend::NdArray<f32>;

#[test]
fn value_head_gives_trl_values_per_decoder_position() {
    let r = Reference::load("value-head");
    let base = Reference::load("t5-tiny");
    let device = Default::default();
    let model = detox_hub::load_t5::<Cpu>(&fixtures().join("t5-tiny"), &device).unwrap();
    let file = fixtures().join("rl/value-head/v_head.safetensors");
    let head =
        detox_hub::load_value_head::<Cpu>(&file, model.config.d_model, 0.1, &device).unwrap();
    let enc = model.encode(
        base.int::<Cpu, 2>("input_ids", &device),
        base.int::<Cpu, 2>("attention_mask", &device),
    );
    let hidden = model.decode(
        base.int::<Cpu, 2>("decoder_input_ids", &device),
        &enc,
        None,
        None,
    );
    assert_close(&r, "logits", model.lm_logits(hidden.clone()), 1e-4);
    // The head alone, on transformers' own decoder output: tight.
    let t = base.get("dec_last_hidden");
    let theirs = burn::tensor::Tensor::<Cpu, 3>::from_data(
        burn::tensor::TensorData::new(t.f32.clone(), t.shape.clone()),
        &device,
    );
    assert_close(&r, "values", head.forward(theirs), 1e-5);
    // End to end: our hidden states match at 1e-4 of their largest entry, and the head sums 64 of
    // them with weights of std 0.5, so the values are compared at 2e-4.
    assert_close(&r, "values", head.forward(hidden), 2e-4);

    // Saved with trl's names and shapes, same bytes.
    let out = std::env::temp_dir().join(format!("detox-vhead-{}.safetensors", std::process::id()));
    detox_hub::save_value_head(&head, &out).unwrap();
    let (a, b) = (std::fs::read(&file).unwrap(), std::fs::read(&out).unwrap());
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    let mut names: Vec<String> = b.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    assert_eq!(names, vec!["v_head.summary.bias", "v_head.summary.weight"]);
    for (name, t) in a.tensors() {
        let mine = b.tensor(&name).unwrap();
        assert_eq!(mine.shape(), t.shape(), "{name}");
        assert_eq!(mine.data(), t.data(), "{name}");
    }
}

#[test]
fn value_head_file_without_the_head_is_refused() {
    let file = fixtures().join("lora/t5-tiny-lora-qv/adapter_model.safetensors");
    let e = detox_hub::load_value_head::<Cpu>(&file, 64, 0.1, &Default::default()).unwrap_err();
    assert!(e.to_string().contains("v_head.summary.weight"), "{e}");
}
