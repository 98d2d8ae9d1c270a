//! Random initialization as transformers' `_init_weights` does it, for models trained from
//! scratch (`detox init`).
//!
//! burn's own initializers (Kaiming-uniform linears, N(0, 1) embeddings) differ from what a
//! transformers user gets from `T5ForConditionalGeneration(config)`. These functions walk a
//! module's parameters by path and redraw each one by transformers' rule for that name:
//!
//! - T5 (`factor` = `initializer_factor`): `shared` and an untied `lm_head` N(0, factor);
//!   attention `q` N(0, factor·(d_model·d_kv)^-½), `k`/`v` N(0, factor·d_model^-½), `o`
//!   N(0, factor·(heads·d_kv)^-½), `relative_attention_bias` N(0, factor·d_model^-½); feed-forward
//!   `wi`/`wi_0`/`wi_1` N(0, factor·d_model^-½), `wo` N(0, factor·d_ff^-½); layer norms 1.
//! - RoBERTa (`std` = `initializer_range`): every linear weight and embedding N(0, std), the
//!   padding row (`pad_token_id`) of the word and position embeddings 0, biases 0, layer norms
//!   weight 1 and bias 0.
//!
//! The draws come from a seeded host RNG, so a seed gives the same weights on every backend.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{
    RobertaConfig, RobertaForSequenceClassification, T5Config, T5ForConditionalGeneration,
};

/// How one parameter is initialized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// N(0, std²), with row `zero_row` (a padding index) set to 0.
    Normal {
        std: f64,
        zero_row: Option<usize>,
    },
    Constant(f64),
}

impl Init {
    fn normal(std: f64) -> Self {
        Init::Normal {
            std,
            zero_row: None,
        }
    }
}

/// transformers' rule for the T5 parameter at `path` (our field path, e.g.
/// `encoder.block.0.layer_0.SelfAttention.q.weight`). `None` for a path the rule does not know.
pub fn t5_rule(config: &T5Config, path: &str) -> Option<Init> {
    let f = config.initializer_factor;
    let inv_sqrt = |n: usize| f * (n as f64).powf(-0.5);
    let name = path.strip_suffix(".weight")?;
    let last = name.rsplit('.').next().unwrap_or(name);
    Some(match last {
        "shared" | "lm_head" => Init::normal(f),
        "layer_norm" | "final_layer_norm" => Init::Constant(1.0),
        "q" => Init::normal(inv_sqrt(config.d_model * config.d_kv)),
        "k" | "v" => Init::normal(inv_sqrt(config.d_model)),
        "o" => Init::normal(inv_sqrt(config.num_heads * config.d_kv)),
        "relative_attention_bias" => Init::normal(inv_sqrt(config.d_model)),
        "wi" | "wi_0" | "wi_1" => Init::normal(inv_sqrt(config.d_model)),
        "wo" => Init::normal(inv_sqrt(config.d_ff)),
        _ => return None,
    })
}

/// transformers' rule for the RoBERTa classifier parameter at `path` (our field path, e.g.
/// `roberta.encoder.layer.0.attention.self_.query.weight`).
pub fn roberta_rule(config: &RobertaConfig, path: &str) -> Option<Init> {
    let std = config.initializer_range;
    let pad = Some(config.pad_token_id as usize);
    if path.contains("LayerNorm.") {
        return match path.rsplit('.').next()? {
            "gamma" => Some(Init::Constant(1.0)),
            "beta" => Some(Init::Constant(0.0)),
            _ => None,
        };
    }
    Some(match path.rsplit('.').next()? {
        "bias" => Init::Constant(0.0),
        "weight" if path.ends_with("word_embeddings.weight") => Init::Normal { std, zero_row: pad },
        "weight" if path.ends_with("position_embeddings.weight") => {
            Init::Normal { std, zero_row: pad }
        }
        "weight" => Init::normal(std),
        _ => return None,
    })
}

/// One standard normal draw (Box–Muller).
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Values of a tensor of `dims` initialized by `init`; rows are the first dimension.
pub fn draw(init: Init, dims: &[usize], rng: &mut StdRng) -> Vec<f32> {
    let n: usize = dims.iter().product();
    match init {
        Init::Constant(c) => vec![c as f32; n],
        Init::Normal { std, zero_row } => {
            let mut v: Vec<f32> = (0..n)
                .map(|_| (standard_normal(rng) * std) as f32)
                .collect();
            if let (Some(r), Some(&rows)) = (zero_row, dims.first()) {
                if r < rows {
                    let width = n / rows;
                    v[r * width..(r + 1) * width].fill(0.0);
                }
            }
            v
        }
    }
}

/// Redraws every float parameter of a module by a path → [`Init`] rule; a path without a rule
/// is an error (collected, reported by the caller).
struct Reinit<'a, B: Backend> {
    rule: &'a dyn Fn(&str) -> Option<Init>,
    rng: StdRng,
    path: Vec<String>,
    unknown: Vec<String>,
    device: B::Device,
}

impl<B: Backend> ModuleMapper<B> for Reinit<'_, B> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let path = self.path.join(".");
        let (id, tensor, mapper) = param.consume();
        let Some(init) = (self.rule)(&path) else {
            self.unknown.push(path);
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let dims = tensor.dims();
        let values = draw(init, &dims, &mut self.rng);
        let fresh = Tensor::<B, D>::from_data(TensorData::new(values, dims), &self.device);
        Param::from_mapped_value(id, fresh, mapper)
    }
}

fn reinit<B: Backend, M: Module<B>>(
    module: M,
    rule: &dyn Fn(&str) -> Option<Init>,
    seed: u64,
    device: &B::Device,
) -> Result<M, String> {
    let mut mapper = Reinit::<B> {
        rule,
        rng: StdRng::seed_from_u64(seed),
        path: Vec::new(),
        unknown: Vec::new(),
        device: device.clone(),
    };
    let module = module.map(&mut mapper);
    if mapper.unknown.is_empty() {
        Ok(module)
    } else {
        Err(format!(
            "no initialization rule for {}",
            mapper.unknown.join(", ")
        ))
    }
}

/// A T5 model of `config`'s shapes with transformers' initial weights (seeded).
pub fn init_t5<B: Backend>(
    config: &T5Config,
    seed: u64,
    device: &B::Device,
) -> Result<T5ForConditionalGeneration<B>, String> {
    config.validate()?;
    let model = T5ForConditionalGeneration::new(config, device);
    reinit(model, &|p| t5_rule(config, p), seed, device)
}

/// Starts every decoder block's cross-attention as a copy path (`detox init
/// --copy-cross-attention A`): the values pass the encoder output through (`v` = I) and the
/// output projection scales it into the decoder (`o` = A·I), where the tied LM head reads token
/// identity. From step 0 a dialogue's own words then raise their own logits: a model trained from
/// scratch has a generic way to take words from its source before its language model takes over
/// (`tools/summary_learnability.py --copy_init A` measures the effect). Needs
/// `num_heads · d_kv == d_model` and a positive, finite `scale`.
pub fn copy_cross_attention<B: Backend>(
    mut model: T5ForConditionalGeneration<B>,
    scale: f64,
) -> Result<T5ForConditionalGeneration<B>, String> {
    let c = &model.config;
    let inner = c.num_heads * c.d_kv;
    if inner != c.d_model {
        return Err(format!(
            "a copy path needs num_heads x d_kv = d_model, got {} x {} = {inner} for d_model {}",
            c.num_heads, c.d_kv, c.d_model
        ));
    }
    if !(scale.is_finite() && scale > 0.0) {
        return Err(format!(
            "the copy path's scale must be a positive number, got {scale}"
        ));
    }
    let n = c.d_model;
    let eye = |v: f64, device: &B::Device| {
        let mut data = vec![0f32; n * n];
        (0..n).for_each(|i| data[i * n + i] = v as f32);
        Tensor::<B, 2>::from_data(TensorData::new(data, [n, n]), device)
    };
    for block in &mut model.decoder.block {
        let attn = &mut block.layer_1.EncDecAttention;
        attn.v.weight = attn.v.weight.clone().map(|w| eye(1.0, &w.device()));
        attn.o.weight = attn.o.weight.clone().map(|w| eye(scale, &w.device()));
    }
    Ok(model)
}

/// A RoBERTa sequence classifier of `config`'s shapes with transformers' initial weights (seeded).
pub fn init_roberta<B: Backend>(
    config: &RobertaConfig,
    seed: u64,
    device: &B::Device,
) -> Result<RobertaForSequenceClassification<B>, String> {
    config.validate()?;
    let model = RobertaForSequenceClassification::new(config, device);
    reinit(model, &|p| roberta_rule(config, p), seed, device)
}

/// Reads every parameter of `module` once, so that lazily initialized ones (burn draws a
/// parameter's initial value at its first read) draw their values now, from the backend's
/// generator as seeded at this point, rather than whenever something first touches them.
pub fn materialize<B: Backend, M: Module<B>>(module: &M) {
    struct Touch;
    impl<B: Backend> burn::module::ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::ModuleVisitor;

    type B = burn::backend::NdArray<f32>;

    /// Every float parameter's path, values and dims.
    #[derive(Default)]
    struct Collect {
        path: Vec<String>,
        out: Vec<(String, Vec<f32>, Vec<usize>)>,
    }

    impl ModuleVisitor<B> for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let t = param.val();
            let dims = t.dims().to_vec();
            let v = t.into_data().to_vec::<f32>().unwrap();
            self.out.push((self.path.join("."), v, dims));
        }
    }

    fn params<M: Module<B>>(m: &M) -> Vec<(String, Vec<f32>, Vec<usize>)> {
        let mut c = Collect::default();
        m.visit(&mut c);
        c.out
    }

    fn mean_std(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    fn t5_config() -> T5Config {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 300, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2,
            "num_heads": 4, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": false,
            "initializer_factor": 0.5
        }))
        .unwrap()
    }

    #[test]
    fn t5_weights_follow_transformers_rules() {
        let c = t5_config();
        let m = init_t5::<B>(&c, 7, &Default::default()).unwrap();
        let all = params(&m);
        let expect = |suffix: &str, std: f64| {
            let hits: Vec<_> = all.iter().filter(|(p, _, _)| p.ends_with(suffix)).collect();
            assert!(!hits.is_empty(), "{suffix}");
            let v: Vec<f32> = hits
                .iter()
                .flat_map(|(_, v, _)| v.iter().copied())
                .collect();
            let (mean, s) = mean_std(&v);
            assert!(mean.abs() < 0.1 * std, "{suffix}: mean {mean}");
            assert!((s / std - 1.0).abs() < 0.1, "{suffix}: std {s} vs {std}");
        };
        expect("shared.weight", 0.5);
        expect("lm_head.weight", 0.5);
        expect("SelfAttention.q.weight", 0.5 / (32.0f64 * 8.0).sqrt());
        expect("EncDecAttention.k.weight", 0.5 / 32f64.sqrt());
        expect("SelfAttention.v.weight", 0.5 / 32f64.sqrt());
        expect("SelfAttention.o.weight", 0.5 / 32f64.sqrt());
        expect("relative_attention_bias.weight", 0.5 / 32f64.sqrt());
        expect("wi_0.weight", 0.5 / 32f64.sqrt());
        expect("wi_1.weight", 0.5 / 32f64.sqrt());
        expect("wo.weight", 0.5 / 64f64.sqrt());
        for (p, v, _) in &all {
            if p.ends_with("layer_norm.weight") {
                assert!(v.iter().all(|&x| x == 1.0), "{p}");
            }
        }
    }

    #[test]
    fn a_copy_path_makes_cross_attention_values_identity_and_output_scaled_identity() {
        let c: T5Config = serde_json::from_value(serde_json::json!({
            "vocab_size": 300, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1,
            "num_decoder_layers": 2, "num_heads": 4, "feed_forward_proj": "gated-gelu"
        }))
        .unwrap();
        let d = Default::default();
        let plain = params(&init_t5::<B>(&c, 3, &d).unwrap());
        let m = copy_cross_attention(init_t5::<B>(&c, 3, &d).unwrap(), 8.0).unwrap();
        let copied = params(&m);
        let mut seen = 0;
        for ((path, v, dims), (_, before, _)) in copied.iter().zip(&plain) {
            let want = if path.ends_with("EncDecAttention.v.weight") {
                1.0
            } else if path.ends_with("EncDecAttention.o.weight") {
                8.0
            } else {
                assert_eq!(v, before, "{path} must keep its draw");
                continue;
            };
            seen += 1;
            assert_eq!(dims, &vec![32, 32], "{path}");
            for (i, &x) in v.iter().enumerate() {
                let diag = i / 32 == i % 32;
                assert_eq!(x, if diag { want } else { 0.0 }, "{path}[{i}]");
            }
        }
        assert_eq!(seen, 4, "v and o of both decoder blocks");
    }

    #[test]
    fn a_copy_path_refuses_mismatched_widths_and_bad_scales() {
        let c = t5_config(); // 4 heads x d_kv 8 = 32 = d_model: fine
        let d = Default::default();
        assert!(copy_cross_attention(init_t5::<B>(&c, 0, &d).unwrap(), 0.0).is_err());
        assert!(copy_cross_attention(init_t5::<B>(&c, 0, &d).unwrap(), f64::NAN).is_err());
        let mut wide = c.clone();
        wide.d_kv = 16;
        let e = copy_cross_attention(init_t5::<B>(&wide, 0, &d).unwrap(), 8.0).unwrap_err();
        assert!(e.contains("num_heads x d_kv = d_model"), "{e}");
    }

    #[test]
    fn a_seed_gives_the_same_weights_and_another_seed_others() {
        let c = t5_config();
        let d = Default::default();
        let a = params(&init_t5::<B>(&c, 1, &d).unwrap());
        let b = params(&init_t5::<B>(&c, 1, &d).unwrap());
        let other = params(&init_t5::<B>(&c, 2, &d).unwrap());
        assert_eq!(a, b);
        assert_ne!(a, other);
    }

    #[test]
    fn roberta_weights_follow_transformers_rules() {
        let c: RobertaConfig = serde_json::from_value(serde_json::json!({
            "vocab_size": 400, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 40,
            "id2label": {"0": "nothate", "1": "hate"}, "initializer_range": 0.05
        }))
        .unwrap();
        let m = init_roberta::<B>(&c, 3, &Default::default()).unwrap();
        let all = params(&m);
        let mut weights = Vec::new();
        for (p, v, dims) in &all {
            if p.contains("LayerNorm.gamma") {
                assert!(v.iter().all(|&x| x == 1.0), "{p}");
            } else if p.contains("LayerNorm.beta") || p.ends_with(".bias") {
                assert!(v.iter().all(|&x| x == 0.0), "{p}");
            } else {
                if p.ends_with("word_embeddings.weight")
                    || p.ends_with("position_embeddings.weight")
                {
                    let w = dims[1];
                    assert!(v[w..2 * w].iter().all(|&x| x == 0.0), "{p}: padding row 1");
                    assert!(v[..w].iter().any(|&x| x != 0.0), "{p}: row 0 drawn");
                }
                weights.extend_from_slice(v);
            }
        }
        let (mean, s) = mean_std(&weights);
        assert!(mean.abs() < 0.005, "{mean}");
        assert!((s / 0.05 - 1.0).abs() < 0.05, "{s}");
    }

    #[test]
    fn the_normal_draws_are_standard() {
        let mut rng = StdRng::seed_from_u64(0);
        let v = draw(Init::normal(2.0), &[100_000], &mut rng);
        let (mean, s) = mean_std(&v);
        assert!(mean.abs() < 0.03 && (s - 2.0).abs() < 0.03, "{mean} {s}");
        let tail = v.iter().filter(|x| x.abs() > 2.0 * 1.96).count() as f64 / v.len() as f64;
        assert!((tail - 0.05).abs() < 0.005, "two-sided 5% tail: {tail}");
    }
}
