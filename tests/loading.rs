//! Checkpoint loading: real architectures' configs and parameter counts, and every kind of bad
//! input giving one clear error.

mod common;

use std::path::{Path, PathBuf};

use common::fixtures;
use detox_hub::HubError;
use detox_models::{RobertaConfig, T5Config};

type Cpu = burn::backend::NdArray<f32>;

fn param_counts() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("reference/param_counts.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn config_dir(name: &str) -> PathBuf {
    // `inspect` reads a directory; give each real config one with a stub weight file so only the
    // parameter counting (from shapes) is exercised.
    let dir = std::env::temp_dir().join(format!("detox-config-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixtures().join(format!("configs/{name}.json")),
        dir.join("config.json"),
    )
    .unwrap();
    dir
}

#[test]
fn real_configs_parse_and_count_parameters_like_transformers() {
    let counts = param_counts();
    let device = Default::default();
    for name in ["flan-t5-base", "flan-t5-small"] {
        let c: T5Config = detox_hub::read_config(&config_dir(name)).unwrap();
        c.validate().unwrap();
        let model = detox_models::T5ForConditionalGeneration::<Cpu>::new(&c, &device);
        use burn::module::Module;
        assert_eq!(
            model.num_params() as u64,
            counts[name]["total"].as_u64().unwrap(),
            "{name}"
        );
    }
    let c: RobertaConfig = detox_hub::read_config(&config_dir("roberta-hate-speech")).unwrap();
    c.validate().unwrap();
    assert_eq!(c.labels().unwrap(), vec!["nothate", "hate"]);
    let model = detox_models::RobertaForSequenceClassification::<Cpu>::new(&c, &device);
    use burn::module::Module;
    assert_eq!(
        model.num_params() as u64,
        counts["roberta-hate-speech"]["total"].as_u64().unwrap()
    );
}

/// A copy of a fixture model directory that a test may damage.
fn scratch_copy(name: &str, tag: &str) -> PathBuf {
    let dst = std::env::temp_dir().join(format!("detox-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

fn t5_error(dir: &Path) -> String {
    match detox_hub::load_t5::<Cpu>(dir, &Default::default()) {
        Ok(_) => panic!("expected an error for {}", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_config_is_an_error_naming_the_file() {
    let dir = scratch_copy("t5-tiny", "noconfig");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let e = t5_error(&dir);
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn unknown_feed_forward_proj_is_refused() {
    let dir = scratch_copy("t5-tiny", "ffproj");
    let p = dir.join("config.json");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("gated-gelu", "gated-mystery");
    std::fs::write(&p, text).unwrap();
    let e = t5_error(&dir);
    assert!(
        e.contains("feed_forward_proj") && e.contains("gated-mystery"),
        "{e}"
    );
}

#[test]
fn wrong_model_type_is_refused() {
    let dir = scratch_copy("roberta-tiny", "mtype");
    match detox_hub::load_t5::<Cpu>(&dir, &Default::default()) {
        Err(HubError::Config { .. }) => {}
        Err(e) => panic!("wrong error kind: {e}"),
        Ok(_) => panic!("a RoBERTa directory must not load as T5"),
    }
}

#[test]
fn truncated_safetensors_is_an_error_naming_the_file() {
    let dir = scratch_copy("t5-tiny", "trunc");
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let e = t5_error(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
    std::fs::write(&p, b"garbage").unwrap();
    let e = t5_error(&dir);
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn checkpoint_that_does_not_fit_the_config_lists_names_and_shapes() {
    let dir = scratch_copy("t5-tiny", "shape");
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["d_ff"] = serde_json::json!(96);
    v["num_decoder_layers"] = serde_json::json!(4);
    std::fs::write(&p, v.to_string()).unwrap();
    let e = t5_error(&dir);
    assert!(
        e.contains("missing tensors") && e.contains("decoder.block.3."),
        "{e}"
    );
    assert!(
        e.contains("mis-shaped tensors") && e.contains("DenseReluDense.wi_0.weight"),
        "{e}"
    );
}

#[test]
fn extra_tensor_is_reported_as_unexpected() {
    let dir = scratch_copy("t5-tiny-relu", "unexpected");
    // The relu fixture is tied; claim it is untied with fewer layers so block 1 tensors are extra.
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["num_layers"] = serde_json::json!(1);
    v["num_decoder_layers"] = serde_json::json!(3);
    std::fs::write(&p, v.to_string()).unwrap();
    let e = t5_error(&dir);
    assert!(
        e.contains("unexpected tensors") && e.contains("encoder.block.1."),
        "{e}"
    );
}

#[test]
fn tokenizer_whose_vocab_does_not_fit_the_model_is_refused() {
    let dir = fixtures().join("t5-tiny");
    let e = detox_hub::TextTokenizer::from_dir(&dir, 0, 512, 100)
        .err()
        .expect("must refuse");
    assert!(e.to_string().contains("vocab_size is 100"), "{e}");
}

#[test]
fn long_input_is_truncated_keeping_the_final_eos() {
    let dir = fixtures().join("t5-tiny");
    let tok = detox_hub::TextTokenizer::from_dir(&dir, 0, 16, 312).unwrap();
    let ids = tok.encode(&"hello there how are you ".repeat(20)).unwrap();
    assert_eq!(ids.len(), 16);
    assert_eq!(*ids.last().unwrap(), 1, "T5's </s> survives truncation");
}
