//! LoRA parity with peft 0.13.2 (`tools/make_train_fixtures.py`): adapters written by peft load
//! and give its logits and greedy tokens, merged or not; the parameter report matches peft's
//! counts at flan-t5-base size; adapters we write use peft's names and shapes.

mod common;

use burn::module::Module;
use common::{assert_close, fixtures, pad_rows, Reference};
use detox_generate::{generate, GenerationConfig};
use detox_models::lora::parameter_report;
use detox_models::{LoraConfig, LoraTarget, T5Config, T5ForConditionalGeneration};
use rand::SeedableRng;

type Cpu = burn::backend::NdArray<f32>;

fn with_adapter(adapter: &str) -> T5ForConditionalGeneration<Cpu> {
    let device = Default::default();
    let base = fixtures().join("t5-tiny");
    let mut model = detox_hub::load_t5::<Cpu>(&base, &device).unwrap();
    let config = detox_hub::read_config(&base).unwrap();
    detox_hub::load_adapter(
        &mut model,
        &fixtures().join("lora").join(adapter),
        &detox_hub::t5_name_map(&config),
        &device,
    )
    .expect("peft adapter loads");
    model
}

/// The fixtures' adapters are deliberately strong (delta std = half the weight's), which makes
/// activations large: torch itself differs by 1.1e-4 between merged and unmerged logits, and our
/// multi-threaded matmuls sum in a different order, so logits are compared at 2e-4 here.
const TOL: f32 = 2e-4;

fn check(adapter: &str, reference: &str) {
    let r = Reference::load(reference);
    let device = Default::default();
    let mut model = with_adapter(adapter);
    let ids = r.int::<Cpu, 2>("input_ids", &device);
    let mask = r.int::<Cpu, 2>("attention_mask", &device);
    let dec = r.int::<Cpu, 2>("decoder_input_ids", &device);
    assert_close(
        &r,
        "logits",
        model.forward(ids.clone(), mask.clone(), dec.clone()),
        TOL,
    );

    let cfg = GenerationConfig {
        max_new_tokens: 20,
        ..Default::default()
    };
    let out = generate(
        &model,
        ids.clone(),
        mask.clone(),
        &cfg,
        &mut rand::rngs::StdRng::seed_from_u64(0),
    );
    let want = r.int_rows("greedy_ids");
    assert_eq!(
        pad_rows(&out, want[0].len(), 0),
        want,
        "{adapter}: greedy ids"
    );

    model.merge_lora();
    assert_close(
        &r,
        "merged_logits",
        model.forward(ids.clone(), mask.clone(), dec.clone()),
        TOL,
    );
    model.unmerge_lora();
    assert_close(&r, "logits", model.forward(ids, mask, dec), TOL);
}

#[test]
fn peft_adapter_on_q_v_gives_peft_logits_and_tokens() {
    check("t5-tiny-lora-qv", "lora-qv");
}

#[test]
fn peft_adapter_on_q_v_wo_adapts_ffn_output_not_attention_output() {
    check("t5-tiny-lora-qvwo", "lora-qvwo");
    let mut model = with_adapter("t5-tiny-lora-qvwo");
    let adapted: Vec<String> = model
        .lora_linears()
        .into_iter()
        .filter(|(_, l)| l.is_adapted())
        .map(|(n, _)| n)
        .collect();
    assert!(adapted.contains(&"encoder.block.0.layer.1.DenseReluDense.wo".to_string()));
    assert!(!adapted
        .iter()
        .any(|n| n.ends_with("SelfAttention.o") || n.ends_with("EncDecAttention.o")));
    let r = Reference::load("lora-qvwo");
    let want: Vec<String> = serde_json::from_value(r.meta["adapted_modules"].clone()).unwrap();
    let mut want = want;
    want.sort();
    let mut got = adapted;
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn parameter_report_matches_peft_at_flan_t5_base_size() {
    let counts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("reference/peft_param_counts.json")).unwrap(),
    )
    .unwrap();
    let config: T5Config = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("configs/flan-t5-base.json")).unwrap(),
    )
    .unwrap();
    for (key, r) in [("r32", 32), ("r8", 8)] {
        let mut model = T5ForConditionalGeneration::<Cpu>::new(&config, &Default::default());
        model
            .add_lora(
                &LoraConfig::new(r, 32.0, &["q", "v"], 0.05),
                &Default::default(),
            )
            .unwrap();
        let trainable = model.lora_param_count();
        let all = model.num_params();
        assert_eq!(
            trainable as u64,
            counts[key]["trainable"].as_u64().unwrap(),
            "{key} trainable"
        );
        assert_eq!(
            all as u64,
            counts[key]["all"].as_u64().unwrap(),
            "{key} all"
        );
    }
    assert_eq!(
        parameter_report(3538944, 251116800),
        "trainable model parameters: 3538944\nall model parameters: 251116800\npercentage of trainable model parameters: 1.41%"
    );
}

#[test]
fn adapters_we_write_use_peft_names_and_reload_identically() {
    let model = with_adapter("t5-tiny-lora-qv");
    let dir = std::env::temp_dir().join(format!("detox-adapter-{}", std::process::id()));
    let config = detox_hub::read_adapter_config(&fixtures().join("lora/t5-tiny-lora-qv")).unwrap();
    detox_hub::save_adapter(
        &model,
        &config,
        &dir,
        &detox_hub::models::t5_name_map_to_hf(),
    )
    .unwrap();
    let ours = detox_hub::read_safetensors_header(&dir.join("adapter_model.safetensors")).unwrap();
    let peft = detox_hub::read_safetensors_header(
        &fixtures().join("lora/t5-tiny-lora-qv/adapter_model.safetensors"),
    )
    .unwrap();
    let key = |v: Vec<detox_hub::TensorInfo>| {
        let mut v: Vec<(String, Vec<usize>)> = v.into_iter().map(|t| (t.name, t.shape)).collect();
        v.sort();
        v
    };
    assert_eq!(key(ours), key(peft));
    // Same values as peft's file, byte for byte after the round trip.
    let a =
        std::fs::read(fixtures().join("lora/t5-tiny-lora-qv/adapter_model.safetensors")).unwrap();
    let b = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    for (name, t) in a.tensors() {
        assert_eq!(t.data(), b.tensor(&name).unwrap().data(), "{name}");
    }
}

#[test]
fn bad_adapters_are_refused_with_a_clear_error() {
    let device = Default::default();
    let base = fixtures().join("t5-tiny");
    let config = detox_hub::read_config(&base).unwrap();
    let scratch = |tag: &str| {
        let dir =
            std::env::temp_dir().join(format!("detox-badadapter-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(fixtures().join("lora/t5-tiny-lora-qv").join(f), dir.join(f)).unwrap();
        }
        dir
    };
    let edit = |dir: &std::path::Path, f: &dyn Fn(&mut serde_json::Value)| {
        let p = dir.join("adapter_config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, v.to_string()).unwrap();
    };
    let err = |dir: &std::path::Path| {
        let mut model = detox_hub::load_t5::<Cpu>(&base, &device).unwrap();
        detox_hub::load_adapter(&mut model, dir, &detox_hub::t5_name_map(&config), &device)
            .unwrap_err()
            .to_string()
    };
    let d = scratch("targets");
    edit(&d, &|v| {
        v["target_modules"] = serde_json::json!(["query_proj"])
    });
    assert!(err(&d).contains("match no linear layer"), "{}", err(&d));
    let d = scratch("rank");
    edit(&d, &|v| v["r"] = serde_json::json!(8));
    assert!(err(&d).contains("r = 8"), "{}", err(&d));
    let d = scratch("fewer");
    edit(&d, &|v| v["target_modules"] = serde_json::json!(["q"]));
    assert!(err(&d).contains("does not adapt"), "{}", err(&d));
    let d = scratch("more");
    edit(&d, &|v| {
        v["target_modules"] = serde_json::json!(["q", "v", "k"])
    });
    assert!(err(&d).contains("missing LoRA weights"), "{}", err(&d));
}

/// The reverse direction: an adapter `detox finetune` wrote, loaded by peft
/// (`tools/check_rust_adapter.py`), gives the logits detox computes with it.
#[test]
fn peft_loads_our_adapter_and_computes_our_logits() {
    let r = Reference::load("rust-adapter");
    let base = Reference::load("t5-tiny");
    let device = Default::default();
    let model = with_adapter("rust-written-qvwo");
    let logits = model.forward(
        base.int::<Cpu, 2>("input_ids", &device),
        base.int::<Cpu, 2>("attention_mask", &device),
        base.int::<Cpu, 2>("decoder_input_ids", &device),
    );
    assert_close(&r, "logits", logits, TOL);
}
