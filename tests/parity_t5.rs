//! T5 parity with transformers 4.46.3: every layer, the position-bias buckets, logits, greedy
//! generation, for an f32 gated-gelu model, a sharded bf16 one and a tied relu (original T5) one.
//! Reference numbers come from `tools/make_fixtures.py`.

mod common;

use burn::prelude::*;
use common::{assert_close, assert_slices_close, fixtures, pad_rows, Reference};
use detox_generate::{generate, GenerationConfig};
use detox_models::mask::{additive_mask, causal_mask_bias};
use detox_models::t5::relative_position_buckets;
use detox_models::T5ForConditionalGeneration;
use rand::SeedableRng;

type Cpu = burn::backend::NdArray<f32>;
const TOL: f32 = 1e-4;

fn load<B: Backend>(name: &str, device: &B::Device) -> T5ForConditionalGeneration<B> {
    detox_hub::load_t5::<B>(&fixtures().join(name), device).expect("fixture loads")
}

/// Every layer of the encoder and decoder, and the logits, against transformers.
fn layers<B: Backend>(name: &str, device: &B::Device) {
    let r = Reference::load(name);
    let model = load::<B>(name, device);
    let ids = r.int::<B, 2>("input_ids", device);
    let mask = r.int::<B, 2>("attention_mask", device);
    let dec_ids = r.int::<B, 2>("decoder_input_ids", device);
    let [_, s] = ids.dims();
    let [_, t] = dec_ids.dims();

    // Encoder, piece by piece.
    let emb = model.embed(ids.clone());
    assert_close(&r, "enc_embeddings", emb.clone(), TOL);
    let b0 = &model.encoder.block[0];
    let pb = b0.layer_0.SelfAttention.compute_bias(0, s, s, device);
    assert_close(&r, "enc_position_bias", pb.clone(), TOL);
    assert_close(
        &r,
        "enc_block0_ln0_out",
        b0.layer_0.layer_norm.forward(emb.clone()),
        TOL,
    );
    let mask_bias = additive_mask(mask.clone());
    let l0 = b0
        .layer_0
        .forward(emb.clone(), pb + mask_bias.clone(), None);
    assert_close(&r, "enc_block0_layer0_out", l0.clone(), TOL);
    assert_close(&r, "enc_block0_layer1_out", b0.layer_1.forward(l0), TOL);
    let (outs, _) = model.encoder.forward_all(emb, mask_bias);
    for (i, o) in outs.into_iter().enumerate() {
        assert_close(&r, &format!("enc_block{i}_out"), o, TOL);
    }
    let enc = model.encode(ids.clone(), mask.clone());
    assert_close(&r, "enc_last_hidden", enc.hidden.clone(), TOL);

    // Decoder, piece by piece.
    let demb = model.embed(dec_ids.clone());
    assert_close(&r, "dec_embeddings", demb.clone(), TOL);
    let d0 = &model.decoder.block[0];
    let dpb = d0.layer_0.SelfAttention.compute_bias(0, t, t, device);
    assert_close(&r, "dec_position_bias", dpb.clone(), TOL);
    let x = d0.layer_0.forward(
        demb.clone(),
        dpb + causal_mask_bias::<B>(0, t, t, device),
        None,
    );
    assert_close(&r, "dec_block0_layer0_out", x.clone(), TOL);
    let kv = d0.layer_1.EncDecAttention.key_values(enc.hidden.clone());
    let x = d0.layer_1.forward(x, kv, enc.mask_bias.clone());
    assert_close(&r, "dec_block0_layer1_out", x.clone(), TOL);
    assert_close(&r, "dec_block0_layer2_out", d0.layer_2.forward(x), TOL);
    let (outs, last) = model.decoder.forward_all(demb, &enc, None, None);
    assert_eq!(outs.len(), model.config.decoder_layers());
    for (i, o) in outs.into_iter().enumerate() {
        assert_close(&r, &format!("dec_block{i}_out"), o, TOL);
    }
    assert_close(&r, "dec_last_hidden", last.clone(), TOL);
    assert_close(&r, "logits", model.lm_logits(last), TOL);
    assert_close(&r, "logits", model.forward(ids, mask, dec_ids), TOL);
}

/// Decoding one position at a time with the KV cache gives the full forward's logits.
fn cached_decoding<B: Backend>(name: &str, device: &B::Device) {
    let r = Reference::load(name);
    let model = load::<B>(name, device);
    let enc = model.encode(
        r.int::<B, 2>("input_ids", device),
        r.int::<B, 2>("attention_mask", device),
    );
    let dec = r.get("decoder_input_ids");
    let (b, t) = (dec.shape[0], dec.shape[1]);
    let v = model.config.vocab_size;
    // A small initial capacity forces the cache to grow mid-sequence.
    let mut cache = model.new_cache(7);
    let mut got = vec![0f32; b * t * v];
    for step in 0..t {
        let col: Vec<i64> = (0..b).map(|row| dec.i64[row * t + step]).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(col, [b, 1]), device);
        let logits = model.lm_logits(model.decode(ids, &enc, None, Some(&mut cache)));
        let logits: Vec<f32> = logits.into_data().convert::<f32>().into_vec().unwrap();
        for row in 0..b {
            got[(row * t + step) * v..(row * t + step + 1) * v]
                .copy_from_slice(&logits[row * v..(row + 1) * v]);
        }
    }
    assert_slices_close("cached logits", &got, &r.get("logits").f32, TOL);
}

/// Greedy decoding (with and without min_new_tokens) is token-identical to `generate`.
fn greedy<B: Backend>(name: &str, device: &B::Device) {
    let r = Reference::load(name);
    let model = load::<B>(name, device);
    let pad = model.config.pad_token_id as i64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for (key, min_new) in [
        ("greedy_ids", 0),
        (
            "greedy_min_ids",
            r.meta["min_new_tokens"].as_u64().unwrap() as usize,
        ),
    ] {
        let cfg = GenerationConfig {
            max_new_tokens: 20,
            min_new_tokens: min_new,
            ..Default::default()
        };
        let out = generate(
            &model,
            r.int::<B, 2>("input_ids", device),
            r.int::<B, 2>("attention_mask", device),
            &cfg,
            &mut rng,
        );
        let want = r.int_rows(key);
        assert_eq!(pad_rows(&out, want[0].len(), pad), want, "{name}: {key}");
    }
}

const MODELS: [&str; 3] = ["t5-tiny", "t5-tiny-bf16", "t5-tiny-relu"];

#[test]
fn t5_layers_match_transformers() {
    for name in MODELS {
        layers::<Cpu>(name, &Default::default());
    }
}

#[test]
fn t5_cached_decoding_matches_full_forward_logits() {
    for name in MODELS {
        cached_decoding::<Cpu>(name, &Default::default());
    }
}

#[test]
fn t5_greedy_generation_is_token_identical() {
    for name in MODELS {
        greedy::<Cpu>(name, &Default::default());
    }
}

#[test]
fn relative_position_buckets_match_transformers() {
    for name in MODELS {
        let r = Reference::load(name);
        let c: detox_models::T5Config = detox_hub::read_config(&fixtures().join(name)).unwrap();
        for (key, bidirectional) in [("enc_buckets", true), ("dec_buckets", false)] {
            let want = r.get(key);
            let n = want.shape[0];
            let got = relative_position_buckets(
                0,
                n,
                n,
                bidirectional,
                c.relative_attention_num_buckets,
                c.relative_attention_max_distance,
            );
            assert_eq!(got, want.i64, "{name}: {key}");
        }
    }
}

#[test]
fn cli_prompt_tokenizes_like_transformers() {
    let r = Reference::load("t5-tiny");
    let dir = fixtures().join("t5-tiny");
    let tok = detox_hub::TextTokenizer::from_dir(&dir, 0, 512, 312).unwrap();
    let ids = tok.encode(r.meta["cli_prompt"].as_str().unwrap()).unwrap();
    let want: Vec<u32> = serde_json::from_value(r.meta["cli_prompt_ids"].clone()).unwrap();
    assert_eq!(ids, want);
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_t5_layers_and_greedy_match_transformers() {
    if !common::wgpu_enabled() {
        eprintln!(
            "skipped: set DETOX_TEST_WGPU=1 to run the wgpu parity subset (needs a Vulkan adapter)"
        );
        return;
    }
    let device = burn::backend::wgpu::WgpuDevice::default();
    layers::<burn::backend::Wgpu>("t5-tiny", &device);
    greedy::<burn::backend::Wgpu>("t5-tiny", &device);
}

#[test]
fn flex_t5_layers_cache_and_greedy_match_transformers() {
    type Flex = burn::backend::Flex;
    for name in MODELS {
        layers::<Flex>(name, &Default::default());
        cached_decoding::<Flex>(name, &Default::default());
        greedy::<Flex>(name, &Default::default());
    }
}
