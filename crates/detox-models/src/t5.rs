//! T5 / FLAN-T5 (`T5ForConditionalGeneration` semantics).
//!
//! The struct tree mirrors transformers' module names: `encoder.block.{i}.layer_0.SelfAttention.q`
//! is HF's `encoder.block.{i}.layer.0.SelfAttention.q` (a Rust struct cannot hold HF's
//! heterogeneous `layer` list, so `layer.N` becomes the field `layer_N`; that is the only rename).
//!
//! Attention is T5's: no 1/sqrt(d) scaling, an additive relative-position bias computed by block 0
//! of each stack and shared by all its blocks (bidirectional buckets in the encoder, causal buckets
//! in the decoder). The KV cache lives outside the modules ([`T5DecoderCache`]), so the same module
//! serves training (all positions at once) and incremental decoding.

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};

use crate::dropout::Dropout;
use burn::prelude::*;
use burn::tensor::activation;

use crate::config::{T5Activation, T5Config};
use crate::kv_cache::KvCache;
use crate::linear::linear_flat;
use crate::lora::{LoraLinear, LoraTarget};
use crate::mask::{additive_mask, causal_mask_bias};

/// T5's layer norm: RMS only (no mean subtraction, no bias).
#[derive(Module, Debug)]
pub struct T5LayerNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    eps: f64,
}

impl<B: Backend> T5LayerNorm<B> {
    pub fn new(d_model: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([d_model], device)),
            eps,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        crate::kernels::rms_norm(x, self.weight.val(), self.eps)
    }
}

/// The relative-position bucket of transformers' `T5Attention._relative_position_bucket`,
/// computed for one (key - query) distance. The log-region arithmetic is done in f32 as torch does.
pub fn relative_position_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> i64 {
    let mut num_buckets = num_buckets as i64;
    let mut bucket = 0i64;
    let rp = if bidirectional {
        num_buckets /= 2;
        if relative_position > 0 {
            bucket += num_buckets;
        }
        relative_position.abs()
    } else {
        -relative_position.min(0)
    };
    let max_exact = num_buckets / 2;
    if rp < max_exact {
        bucket + rp
    } else {
        // torch: max_exact + (log(rp.float() / max_exact) / math.log(max_distance / max_exact)
        //        * (num_buckets - max_exact)).to(long), clamped to num_buckets - 1.
        let log_ratio = ((max_distance as f64) / (max_exact as f64)).ln() as f32;
        let scaled = ((rp as f32) / (max_exact as f32)).ln() / log_ratio
            * ((num_buckets - max_exact) as f32);
        let large = (max_exact + scaled as i64).min(num_buckets - 1);
        bucket + large
    }
}

/// Buckets for queries at absolute positions `q_offset..q_offset+q_len` against keys `0..k_len`,
/// row-major `[q_len, k_len]`.
pub fn relative_position_buckets(
    q_offset: usize,
    q_len: usize,
    k_len: usize,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> Vec<i64> {
    let mut out = Vec::with_capacity(q_len * k_len);
    for i in 0..q_len {
        let ctx = (q_offset + i) as i64;
        for j in 0..k_len {
            out.push(relative_position_bucket(
                j as i64 - ctx,
                bidirectional,
                num_buckets,
                max_distance,
            ));
        }
    }
    out
}

/// `T5Attention`: q/k/v/o projections without bias, optionally the relative-attention-bias table.
#[derive(Module, Debug)]
pub struct T5Attention<B: Backend> {
    pub q: LoraLinear<B>,
    pub k: LoraLinear<B>,
    pub v: LoraLinear<B>,
    pub o: LoraLinear<B>,
    pub relative_attention_bias: Option<Embedding<B>>,
    pub dropout: Dropout,
    n_heads: usize,
    d_kv: usize,
    num_buckets: usize,
    max_distance: usize,
    bidirectional: bool,
}

impl<B: Backend> T5Attention<B> {
    pub fn new(
        config: &T5Config,
        has_relative_attention_bias: bool,
        bidirectional: bool,
        device: &B::Device,
    ) -> Self {
        let inner = config.num_heads * config.d_kv;
        let lin = |i, o| LoraLinear::new(i, o, false, device);
        Self {
            q: lin(config.d_model, inner),
            k: lin(config.d_model, inner),
            v: lin(config.d_model, inner),
            o: lin(inner, config.d_model),
            relative_attention_bias: has_relative_attention_bias.then(|| {
                EmbeddingConfig::new(config.relative_attention_num_buckets, config.num_heads)
                    .init(device)
            }),
            dropout: Dropout::new(config.dropout_rate),
            n_heads: config.num_heads,
            d_kv: config.d_kv,
            num_buckets: config.relative_attention_num_buckets,
            max_distance: config.relative_attention_max_distance,
            bidirectional,
        }
    }

    /// `[batch, len, heads*d_kv]` → `[batch, heads, len, d_kv]`.
    fn split_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, l, _] = x.dims();
        x.reshape([b, l, self.n_heads, self.d_kv]).swap_dims(1, 2)
    }

    /// Keys and values of `x`, split into heads (what the cross-attention cache stores).
    pub fn key_values(&self, x: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        (
            self.split_heads(self.k.forward(x.clone())),
            self.split_heads(self.v.forward(x)),
        )
    }

    /// The position bias `[1, heads, q_len, k_len]` for queries at absolute positions
    /// `q_offset..q_offset+q_len` (`compute_bias` of transformers). Zeros if this layer has no table.
    pub fn compute_bias(
        &self,
        q_offset: usize,
        q_len: usize,
        k_len: usize,
        device: &B::Device,
    ) -> Tensor<B, 4> {
        let Some(table) = &self.relative_attention_bias else {
            return Tensor::zeros([1, self.n_heads, q_len, k_len], device);
        };
        let buckets = relative_position_buckets(
            q_offset,
            q_len,
            k_len,
            self.bidirectional,
            self.num_buckets,
            self.max_distance,
        );
        let ids =
            Tensor::<B, 2, Int>::from_data(TensorData::new(buckets, [1, q_len * k_len]), device);
        table
            .forward(ids) // [1, q*k, heads]
            .reshape([q_len, k_len, self.n_heads])
            .permute([2, 0, 1])
            .unsqueeze::<4>()
    }

    /// Unscaled attention of `q` over `k`/`v` with an additive `bias` (position bias and masks).
    fn attend(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        bias: Tensor<B, 4>,
    ) -> Tensor<B, 3> {
        // a decoding step's few queries on burn-flex: keys/values read in place
        let (q, k, v, bias) = match crate::kernels_attention::attend(q, k, v, bias) {
            Ok(ctx) => return self.merge_heads_and_project(ctx),
            Err(declined) => declined,
        };
        // whole sequences on burn-flex: one task per (row, head), heads merged on the way out
        let (q, k, v, bias) = match crate::kernels_attention_full::attend_merged(q, k, v, bias) {
            Ok(merged) => return self.o.forward(merged),
            Err(declined) => declined,
        };
        // the same under autodiff (training), with its own backward and the weights' dropout
        let device = q.device();
        let dropout = |n| self.dropout.flex_mask::<B>(n, &device);
        let ctx = match crate::kernels_attention_train::attend_merged(q, k, v, bias, dropout) {
            Ok(merged) => return self.o.forward(merged),
            Err((q, k, v, bias)) => {
                let scores = q.matmul(k.swap_dims(2, 3));
                let weights = self
                    .dropout
                    .forward(crate::kernels::softmax_with_bias(scores, bias));
                weights.matmul(v) // [b, h, q, d_kv]
            }
        };
        self.merge_heads_and_project(ctx)
    }

    /// Softmax weights `[batch, heads, q_len, k_len]` of this attention's first `heads` heads,
    /// queries from `x` (already normed) over the keys `k` (`[batch, n_heads, k_len, d_kv]`,
    /// from [`Self::key_values`]) with the additive `bias`. Plain tensor ops, so a loss on the
    /// weights trains through them (a supervised pointer, `detox finetune --pointer-loss`).
    pub fn attention_weights(
        &self,
        x: Tensor<B, 3>,
        k: Tensor<B, 4>,
        bias: Tensor<B, 4>,
        heads: usize,
    ) -> Tensor<B, 4> {
        let heads = heads.clamp(1, self.n_heads);
        let q = self.split_heads(self.q.forward(x)).narrow(1, 0, heads);
        let k = k.narrow(1, 0, heads);
        crate::kernels::softmax_with_bias(q.matmul(k.swap_dims(2, 3)), bias)
    }

    /// `[b, h, q, d_kv]` → `[b, q, h*d_kv]` → the output projection.
    fn merge_heads_and_project(&self, ctx: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, h, l, d] = ctx.dims();
        self.o.forward(ctx.swap_dims(1, 2).reshape([b, l, h * d]))
    }

    /// Self-attention over `x` (and, with a cache, over the cached positions before it).
    pub fn forward_self(
        &self,
        x: Tensor<B, 3>,
        bias: Tensor<B, 4>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let q = self.split_heads(self.q.forward(x.clone()));
        let (k, v) = self.key_values(x);
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        self.attend(q, k, v, bias)
    }

    /// Cross-attention of `x` over precomputed keys/values of the encoder output.
    ///
    /// `x` may hold `g` rows per encoder row (`[batch * g, len, d]`, rows `i*g..(i+1)*g` over
    /// encoder row `i`: the beams of one prompt). Cross-attention has no position bias, so those
    /// rows attend as `g * len` query positions of one row, and the encoder keys/values are
    /// used once per prompt instead of being copied per beam.
    pub fn forward_cross(
        &self,
        x: Tensor<B, 3>,
        kv: (Tensor<B, 4>, Tensor<B, 4>),
        bias: Tensor<B, 4>,
    ) -> Tensor<B, 3> {
        let [bq, len, d] = x.dims();
        let bkv = kv.0.dims()[0];
        assert!(
            bkv > 0 && bq % bkv == 0,
            "cross-attention: {bq} query rows for {bkv} encoder rows"
        );
        let g = bq / bkv;
        let x = if g == 1 {
            x
        } else {
            x.reshape([bkv, g * len, d])
        };
        let q = self.split_heads(self.q.forward(x));
        let out = self.attend(q, kv.0, kv.1, bias);
        if g == 1 {
            out
        } else {
            let d_out = out.dims()[2];
            out.reshape([bq, len, d_out])
        }
    }
}

/// `T5LayerSelfAttention`: `x + dropout(SelfAttention(layer_norm(x)))`.
#[allow(non_snake_case)]
#[derive(Module, Debug)]
pub struct T5LayerSelfAttention<B: Backend> {
    pub SelfAttention: T5Attention<B>,
    pub layer_norm: T5LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> T5LayerSelfAttention<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        bias: Tensor<B, 4>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let h = self
            .SelfAttention
            .forward_self(self.layer_norm.forward(x.clone()), bias, cache);
        crate::kernels::add(x, self.dropout.forward(h))
    }
}

/// `T5LayerCrossAttention`: `x + dropout(EncDecAttention(layer_norm(x), encoder))`.
#[allow(non_snake_case)]
#[derive(Module, Debug)]
pub struct T5LayerCrossAttention<B: Backend> {
    pub EncDecAttention: T5Attention<B>,
    pub layer_norm: T5LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> T5LayerCrossAttention<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        kv: (Tensor<B, 4>, Tensor<B, 4>),
        bias: Tensor<B, 4>,
    ) -> Tensor<B, 3> {
        let h = self
            .EncDecAttention
            .forward_cross(self.layer_norm.forward(x.clone()), kv, bias);
        crate::kernels::add(x, self.dropout.forward(h))
    }
}

/// `T5DenseActDense` (`wi`, `wo`) or `T5DenseGatedActDense` (`wi_0`, `wi_1`, `wo`).
#[derive(Module, Debug)]
pub struct T5DenseActDense<B: Backend> {
    pub wi: Option<LoraLinear<B>>,
    pub wi_0: Option<LoraLinear<B>>,
    pub wi_1: Option<LoraLinear<B>>,
    pub wo: LoraLinear<B>,
    pub dropout: Dropout,
    #[module(skip)]
    act: T5Activation,
}

fn apply_act<B: Backend, const D: usize>(act: T5Activation, x: Tensor<B, D>) -> Tensor<B, D> {
    match act {
        T5Activation::Relu => activation::relu(x),
        T5Activation::Gelu => crate::kernels::gelu(x),
        T5Activation::GeluNew => crate::kernels::gelu_new_mul(x, None),
        T5Activation::Silu => activation::silu(x),
    }
}

impl<B: Backend> T5DenseActDense<B> {
    pub fn new(config: &T5Config, gated: bool, act: T5Activation, device: &B::Device) -> Self {
        let lin = |i, o| LoraLinear::new(i, o, false, device);
        Self {
            wi: (!gated).then(|| lin(config.d_model, config.d_ff)),
            wi_0: gated.then(|| lin(config.d_model, config.d_ff)),
            wi_1: gated.then(|| lin(config.d_model, config.d_ff)),
            wo: lin(config.d_ff, config.d_model),
            dropout: Dropout::new(config.dropout_rate),
            act,
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = match (&self.wi, &self.wi_0, &self.wi_1) {
            (Some(wi), _, _) => apply_act(self.act, wi.forward(x)),
            (None, Some(wi_0), Some(wi_1)) if self.act == T5Activation::GeluNew => {
                // FLAN-T5's gated-gelu: activation and product in one pass
                crate::kernels::gelu_new_mul(wi_0.forward(x.clone()), Some(wi_1.forward(x)))
            }
            (None, Some(wi_0), Some(wi_1)) => {
                apply_act(self.act, wi_0.forward(x.clone())) * wi_1.forward(x)
            }
            _ => unreachable!("T5DenseActDense is built with either wi or wi_0 and wi_1"),
        };
        self.wo.forward(self.dropout.forward(h))
    }
}

/// `T5LayerFF`: `x + dropout(DenseReluDense(layer_norm(x)))`.
#[allow(non_snake_case)]
#[derive(Module, Debug)]
pub struct T5LayerFF<B: Backend> {
    pub DenseReluDense: T5DenseActDense<B>,
    pub layer_norm: T5LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> T5LayerFF<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self
            .DenseReluDense
            .forward(self.layer_norm.forward(x.clone()));
        crate::kernels::add(x, self.dropout.forward(h))
    }
}

fn layer_norm<B: Backend>(c: &T5Config, device: &B::Device) -> T5LayerNorm<B> {
    T5LayerNorm::new(c.d_model, c.layer_norm_epsilon, device)
}

fn dropout(c: &T5Config) -> Dropout {
    Dropout::new(c.dropout_rate)
}

fn ff<B: Backend>(c: &T5Config, device: &B::Device) -> T5LayerFF<B> {
    let (gated, act) = c.ff_activation().expect("validated config");
    T5LayerFF {
        DenseReluDense: T5DenseActDense::new(c, gated, act, device),
        layer_norm: layer_norm(c, device),
        dropout: dropout(c),
    }
}

/// An encoder block: HF `block.{i}.layer.0` (self-attention) and `layer.1` (feed-forward).
#[derive(Module, Debug)]
pub struct T5EncoderBlock<B: Backend> {
    pub layer_0: T5LayerSelfAttention<B>,
    pub layer_1: T5LayerFF<B>,
}

impl<B: Backend> T5EncoderBlock<B> {
    pub fn forward(&self, x: Tensor<B, 3>, bias: Tensor<B, 4>) -> Tensor<B, 3> {
        self.layer_1.forward(self.layer_0.forward(x, bias, None))
    }
}

/// A decoder block: `layer.0` self-attention, `layer.1` cross-attention, `layer.2` feed-forward.
#[derive(Module, Debug)]
pub struct T5DecoderBlock<B: Backend> {
    pub layer_0: T5LayerSelfAttention<B>,
    pub layer_1: T5LayerCrossAttention<B>,
    pub layer_2: T5LayerFF<B>,
}

impl<B: Backend> T5DecoderBlock<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        self_bias: Tensor<B, 4>,
        cross_kv: (Tensor<B, 4>, Tensor<B, 4>),
        cross_bias: Tensor<B, 4>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        self.forward_traced(x, self_bias, cross_kv, cross_bias, cache, 0)
            .0
    }

    /// [`Self::forward`] that also returns the cross-attention weights of the first
    /// `pointer_heads` heads ([`T5Attention::attention_weights`]; `None` when 0).
    pub fn forward_traced(
        &self,
        x: Tensor<B, 3>,
        self_bias: Tensor<B, 4>,
        cross_kv: (Tensor<B, 4>, Tensor<B, 4>),
        cross_bias: Tensor<B, 4>,
        cache: Option<&mut KvCache<B>>,
        pointer_heads: usize,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 4>>) {
        let x = self.layer_0.forward(x, self_bias, cache);
        let pointer = (pointer_heads > 0).then(|| {
            self.layer_1.EncDecAttention.attention_weights(
                self.layer_1.layer_norm.forward(x.clone()),
                cross_kv.0.clone(),
                cross_bias.clone(),
                pointer_heads,
            )
        });
        let x = self.layer_1.forward(x, cross_kv, cross_bias);
        (self.layer_2.forward(x), pointer)
    }
}

/// The encoder `T5Stack`.
#[derive(Module, Debug)]
pub struct T5Encoder<B: Backend> {
    pub block: Vec<T5EncoderBlock<B>>,
    pub final_layer_norm: T5LayerNorm<B>,
    pub dropout: Dropout,
}

/// The decoder `T5Stack`.
#[derive(Module, Debug)]
pub struct T5Decoder<B: Backend> {
    pub block: Vec<T5DecoderBlock<B>>,
    pub final_layer_norm: T5LayerNorm<B>,
    pub dropout: Dropout,
}

/// What the decoder needs from the encoder: its hidden states and its additive key mask.
#[derive(Debug, Clone)]
pub struct EncoderOutput<B: Backend> {
    /// `[batch, src_len, d_model]`, after the final layer norm.
    pub hidden: Tensor<B, 3>,
    /// `[batch, 1, 1, src_len]`: 0 for real tokens, a large negative value for padding.
    pub mask_bias: Tensor<B, 4>,
}

impl<B: Backend> EncoderOutput<B> {
    /// Keep only the rows `rows` (for dropping finished sequences during decoding).
    pub fn select_rows(&self, rows: Tensor<B, 1, Int>) -> Self {
        Self {
            hidden: self.hidden.clone().select(0, rows.clone()),
            mask_bias: self.mask_bias.clone().select(0, rows),
        }
    }
}

/// Per-layer decoder state for incremental decoding: self-attention keys/values grow by one
/// position a step; cross-attention keys/values are computed once from the encoder output.
#[derive(Debug, Clone)]
pub struct T5DecoderCache<B: Backend> {
    pub self_attn: Vec<KvCache<B>>,
    pub cross: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
}

impl<B: Backend> T5DecoderCache<B> {
    /// An empty cache whose self-attention buffers are sized for `max_len` positions.
    pub fn new(num_layers: usize, max_len: usize) -> Self {
        Self {
            self_attn: (0..num_layers).map(|_| KvCache::new(max_len)).collect(),
            cross: vec![None; num_layers],
        }
    }

    /// Positions already decoded.
    pub fn len(&self) -> usize {
        self.self_attn.first().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keep only the batch rows `rows` (finished sequences stop costing compute).
    pub fn select_rows(&mut self, rows: Tensor<B, 1, Int>) {
        self.select_decoder_rows(rows.clone());
        self.select_encoder_rows(rows);
    }

    /// Reorders / keeps the decoder rows of the self-attention caches (`rows` may repeat a
    /// row: beam search continues a beam in several ways).
    pub fn select_decoder_rows(&mut self, rows: Tensor<B, 1, Int>) {
        for c in &mut self.self_attn {
            c.select_rows(rows.clone());
        }
    }

    /// Keeps the encoder rows `rows` of the cross-attention keys/values (one per prompt when
    /// the decoder runs several beams per prompt).
    pub fn select_encoder_rows(&mut self, rows: Tensor<B, 1, Int>) {
        for kv in self.cross.iter_mut().flatten() {
            kv.0 = kv.0.clone().select(0, rows.clone());
            kv.1 = kv.1.clone().select(0, rows.clone());
        }
    }
}

impl<B: Backend> T5Encoder<B> {
    /// Hidden states after each block (before the final norm) and the final output.
    pub fn forward_all(
        &self,
        embeddings: Tensor<B, 3>,
        mask_bias: Tensor<B, 4>,
    ) -> (Vec<Tensor<B, 3>>, Tensor<B, 3>) {
        let [_, len, _] = embeddings.dims();
        let device = embeddings.device();
        let position_bias = self.block[0]
            .layer_0
            .SelfAttention
            .compute_bias(0, len, len, &device);
        let bias = position_bias + mask_bias;
        let mut x = self.dropout.forward(embeddings);
        let mut outs = Vec::with_capacity(self.block.len());
        for block in &self.block {
            x = block.forward(x, bias.clone());
            outs.push(x.clone());
        }
        let out = self.dropout.forward(self.final_layer_norm.forward(x));
        (outs, out)
    }
}

impl<B: Backend> T5Decoder<B> {
    /// Decodes `embeddings` (positions `cache.len()..` when a cache is given, else `0..`).
    /// `decoder_mask` is `[batch, past + new]` (1 = attend) or `None` for all ones.
    /// Returns each block's output and the final hidden states `[batch, new, d_model]`.
    pub fn forward_all(
        &self,
        embeddings: Tensor<B, 3>,
        encoder: &EncoderOutput<B>,
        decoder_mask: Option<Tensor<B, 2, Int>>,
        cache: Option<&mut T5DecoderCache<B>>,
    ) -> (Vec<Tensor<B, 3>>, Tensor<B, 3>) {
        let (outs, out, _) = self.forward_traced(embeddings, encoder, decoder_mask, cache, 0);
        (outs, out)
    }

    /// [`Self::forward_all`] that also returns the cross-attention weights of the last block's
    /// first `pointer_heads` heads (`[batch, heads, new, src_len]`; `None` when 0).
    pub fn forward_traced(
        &self,
        embeddings: Tensor<B, 3>,
        encoder: &EncoderOutput<B>,
        decoder_mask: Option<Tensor<B, 2, Int>>,
        mut cache: Option<&mut T5DecoderCache<B>>,
        pointer_heads: usize,
    ) -> (Vec<Tensor<B, 3>>, Tensor<B, 3>, Option<Tensor<B, 4>>) {
        let [_, new_len, _] = embeddings.dims();
        let device = embeddings.device();
        let past = cache.as_ref().map_or(0, |c| c.len());
        let total = past + new_len;
        let mut self_bias = self.block[0]
            .layer_0
            .SelfAttention
            .compute_bias(past, new_len, total, &device)
            + causal_mask_bias::<B>(past, new_len, total, &device);
        if let Some(mask) = decoder_mask {
            self_bias = self_bias + additive_mask(mask);
        }
        let mut x = self.dropout.forward(embeddings);
        let mut outs = Vec::with_capacity(self.block.len());
        let mut pointer = None;
        let last = self.block.len().saturating_sub(1);
        for (i, block) in self.block.iter().enumerate() {
            let cross_attn = &block.layer_1.EncDecAttention;
            let (kv, layer_cache) = match cache.as_deref_mut() {
                Some(c) => {
                    let kv = c.cross[i]
                        .get_or_insert_with(|| cross_attn.key_values(encoder.hidden.clone()))
                        .clone();
                    (kv, Some(&mut c.self_attn[i]))
                }
                None => (cross_attn.key_values(encoder.hidden.clone()), None),
            };
            let heads = if i == last { pointer_heads } else { 0 };
            let (y, weights) = block.forward_traced(
                x,
                self_bias.clone(),
                kv,
                encoder.mask_bias.clone(),
                layer_cache,
                heads,
            );
            x = y;
            pointer = pointer.or(weights);
            outs.push(x.clone());
        }
        let out = self.dropout.forward(self.final_layer_norm.forward(x));
        (outs, out, pointer)
    }
}

/// `T5ForConditionalGeneration`.
#[derive(Module, Debug)]
pub struct T5ForConditionalGeneration<B: Backend> {
    pub shared: Embedding<B>,
    pub encoder: T5Encoder<B>,
    pub decoder: T5Decoder<B>,
    /// Absent when the head is tied to `shared` (`tie_word_embeddings`).
    pub lm_head: Option<Linear<B>>,
    #[module(skip)]
    pub config: T5Config,
}

impl<B: Backend> T5ForConditionalGeneration<B> {
    /// A randomly initialized model of `config`'s shapes (weights are then loaded over it).
    pub fn new(config: &T5Config, device: &B::Device) -> Self {
        let c = config;
        let encoder = T5Encoder {
            block: (0..c.num_layers)
                .map(|i| T5EncoderBlock {
                    layer_0: T5LayerSelfAttention {
                        SelfAttention: T5Attention::new(c, i == 0, true, device),
                        layer_norm: layer_norm(c, device),
                        dropout: dropout(c),
                    },
                    layer_1: ff(c, device),
                })
                .collect(),
            final_layer_norm: layer_norm(c, device),
            dropout: dropout(c),
        };
        let decoder = T5Decoder {
            block: (0..c.decoder_layers())
                .map(|i| T5DecoderBlock {
                    layer_0: T5LayerSelfAttention {
                        SelfAttention: T5Attention::new(c, i == 0, false, device),
                        layer_norm: layer_norm(c, device),
                        dropout: dropout(c),
                    },
                    layer_1: T5LayerCrossAttention {
                        EncDecAttention: T5Attention::new(c, false, false, device),
                        layer_norm: layer_norm(c, device),
                        dropout: dropout(c),
                    },
                    layer_2: ff(c, device),
                })
                .collect(),
            final_layer_norm: layer_norm(c, device),
            dropout: dropout(c),
        };
        Self {
            shared: EmbeddingConfig::new(c.vocab_size, c.d_model).init(device),
            encoder,
            decoder,
            lm_head: (!c.tie_word_embeddings).then(|| {
                LinearConfig::new(c.d_model, c.vocab_size)
                    .with_bias(false)
                    .init(device)
            }),
            config: c.clone(),
        }
    }

    pub fn embed(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.shared.forward(ids)
    }

    /// Runs the encoder. `attention_mask` is `[batch, src_len]`, 1 for tokens and 0 for padding.
    pub fn encode(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
    ) -> EncoderOutput<B> {
        let mask_bias = additive_mask(attention_mask);
        let (_, hidden) = self
            .encoder
            .forward_all(self.embed(input_ids), mask_bias.clone());
        EncoderOutput { hidden, mask_bias }
    }

    /// Decoder hidden states `[batch, new, d_model]` (before the LM head). The decoder batch
    /// may be a multiple `g` of the encoder's: rows `i*g..(i+1)*g` then decode encoder row `i`
    /// (beam search's beams share their prompt's encoder output and cross-attention cache).
    pub fn decode(
        &self,
        decoder_input_ids: Tensor<B, 2, Int>,
        encoder: &EncoderOutput<B>,
        decoder_mask: Option<Tensor<B, 2, Int>>,
        cache: Option<&mut T5DecoderCache<B>>,
    ) -> Tensor<B, 3> {
        self.decoder
            .forward_all(self.embed(decoder_input_ids), encoder, decoder_mask, cache)
            .1
    }

    /// Vocabulary logits for decoder hidden states (every position).
    pub fn lm_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => linear_flat(hidden, head.weight.val(), None),
            None => {
                // Tied head: transformers rescales the decoder output by d_model^-0.5 first.
                let scaled = hidden * (self.config.d_model as f64).powf(-0.5);
                // the embedding table [vocab, d_model] is the `[out, in]` weight of the head
                linear_flat(scaled, self.shared.weight.val().transpose(), None)
            }
        }
    }

    /// Full forward pass: logits `[batch, tgt_len, vocab]` for every decoder position.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        decoder_input_ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        let enc = self.encode(input_ids, attention_mask);
        self.lm_logits(self.decode(decoder_input_ids, &enc, None, None))
    }

    /// [`Self::forward`] that also returns the last decoder block's cross-attention weights
    /// of its first `pointer_heads` heads, `[batch, heads, tgt_len, src_len]`.
    pub fn forward_with_pointer(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        decoder_input_ids: Tensor<B, 2, Int>,
        pointer_heads: usize,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let enc = self.encode(input_ids, attention_mask);
        let (_, hidden, pointer) = self.decoder.forward_traced(
            self.embed(decoder_input_ids),
            &enc,
            None,
            None,
            pointer_heads.max(1),
        );
        let pointer = pointer.expect("a decoder has at least one block");
        (self.lm_logits(hidden), pointer)
    }

    /// Every linear weight, the LM head included, in PyTorch's `[out, in]` order
    /// ([`crate::linear::out_in_layout`]); the loaders call it.
    pub fn use_out_in_layout(&mut self) {
        LoraTarget::use_out_in_layout(self);
        if let Some(head) = self.lm_head.as_mut() {
            head.weight = crate::linear::out_in_layout(head.weight.clone());
        }
    }

    /// A fresh decoding cache for up to `max_len` decoder positions.
    pub fn new_cache(&self, max_len: usize) -> T5DecoderCache<B> {
        T5DecoderCache::new(self.decoder.block.len(), max_len)
    }
}

impl<B: Backend> T5Attention<B> {
    fn lora_linears<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut LoraLinear<B>)>,
    ) {
        out.push((format!("{prefix}.q"), &mut self.q));
        out.push((format!("{prefix}.k"), &mut self.k));
        out.push((format!("{prefix}.v"), &mut self.v));
        out.push((format!("{prefix}.o"), &mut self.o));
    }
}

impl<B: Backend> T5DenseActDense<B> {
    fn lora_linears<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut LoraLinear<B>)>,
    ) {
        for (name, l) in [
            ("wi", &mut self.wi),
            ("wi_0", &mut self.wi_0),
            ("wi_1", &mut self.wi_1),
        ] {
            if let Some(l) = l.as_mut() {
                out.push((format!("{prefix}.{name}"), l));
            }
        }
        out.push((format!("{prefix}.wo"), &mut self.wo));
    }
}

impl<B: Backend> LoraTarget<B> for T5ForConditionalGeneration<B> {
    /// HF module names, e.g. `decoder.block.1.layer.1.EncDecAttention.v`, `encoder.block.0.layer.1.DenseReluDense.wo`.
    fn lora_linears(&mut self) -> Vec<(String, &mut LoraLinear<B>)> {
        let mut out = Vec::new();
        for (i, b) in self.encoder.block.iter_mut().enumerate() {
            let p = format!("encoder.block.{i}.layer");
            b.layer_0
                .SelfAttention
                .lora_linears(&format!("{p}.0.SelfAttention"), &mut out);
            b.layer_1
                .DenseReluDense
                .lora_linears(&format!("{p}.1.DenseReluDense"), &mut out);
        }
        for (i, b) in self.decoder.block.iter_mut().enumerate() {
            let p = format!("decoder.block.{i}.layer");
            b.layer_0
                .SelfAttention
                .lora_linears(&format!("{p}.0.SelfAttention"), &mut out);
            b.layer_1
                .EncDecAttention
                .lora_linears(&format!("{p}.1.EncDecAttention"), &mut out);
            b.layer_2
                .DenseReluDense
                .lora_linears(&format!("{p}.2.DenseReluDense"), &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bidirectional_match_hand_values() {
        // num_buckets 32 → 16 per direction, max_exact 8, max_distance 128.
        let b = |rp| relative_position_bucket(rp, true, 32, 128);
        assert_eq!(b(0), 0);
        assert_eq!(b(-1), 1);
        assert_eq!(b(1), 17);
        assert_eq!(b(-7), 7);
        // log region: 8 + floor(ln(16/8)/ln(128/8) * 8) = 8 + floor(0.25*8) = 10
        assert_eq!(b(-16), 10);
        assert_eq!(b(16), 26);
        assert_eq!(b(-1000), 15);
        assert_eq!(b(1000), 31);
    }

    #[test]
    fn buckets_causal_ignore_future_and_use_all_buckets_for_past() {
        let b = |rp| relative_position_bucket(rp, false, 32, 128);
        assert_eq!(b(5), 0, "future keys share bucket 0 in the decoder");
        assert_eq!(b(-5), 5);
        assert_eq!(b(-15), 15);
        // max_exact 16: 16 + floor(ln(32/16)/ln(128/16) * 16) = 16 + floor(16/3) = 21
        assert_eq!(b(-32), 21);
        assert_eq!(b(-10_000), 31);
    }

    /// Beams share their prompt's encoder output: decoding `g` rows per encoder row gives what
    /// decoding against the encoder output copied `g` times gives, with and without a cache.
    fn grouped_decoding_matches_copied_encoder<B: Backend>() {
        let _rng = crate::test_rng_lock();
        let device = Default::default();
        let config: T5Config = serde_json::from_value(serde_json::json!({
            "vocab_size": 30, "d_model": 8, "d_kv": 4, "d_ff": 12, "num_layers": 1,
            "num_decoder_layers": 2, "num_heads": 2, "relative_attention_num_buckets": 6,
            "feed_forward_proj": "gated-gelu", "tie_word_embeddings": false
        }))
        .unwrap();
        let model = T5ForConditionalGeneration::<B>::new(&config, &device);
        let ids = Tensor::<B, 2, Int>::from_data([[3, 4, 5, 1], [6, 7, 1, 0]], &device);
        let mask = Tensor::<B, 2, Int>::from_data([[1, 1, 1, 1], [1, 1, 1, 0]], &device);
        let enc = model.encode(ids, mask);
        let g = 3;
        let rows = Tensor::<B, 1, Int>::from_data([0, 0, 0, 1, 1, 1], &device);
        let copied = enc.select_rows(rows);
        let dec = Tensor::<B, 2, Int>::from_data(
            [
                [0, 5, 2],
                [0, 9, 9],
                [0, 1, 4],
                [0, 3, 3],
                [0, 8, 2],
                [0, 2, 7],
            ],
            &device,
        );
        let want = model.decode(dec.clone(), &copied, None, None);
        let got = model.decode(dec.clone(), &enc, None, None);
        assert_eq!(got.dims(), [2 * g, 3, 8]);
        got.into_data().assert_approx_eq::<f32>(
            &want.clone().into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
        // step by step with a cache, reordering the beams between steps
        let mut cache = model.new_cache(4);
        let mut last = None;
        for t in 0..3 {
            let step = dec.clone().slice([0..2 * g, t..t + 1]);
            last = Some(model.decode(step, &enc, None, Some(&mut cache)));
            let same = Tensor::<B, 1, Int>::from_data([0, 1, 2, 3, 4, 5], &device);
            cache.select_decoder_rows(same);
        }
        let want_last = want.slice([0..2 * g, 2..3]);
        last.unwrap().into_data().assert_approx_eq::<f32>(
            &want_last.into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
    }

    /// The traced forward gives the plain forward's logits, and its pointer weights are the
    /// last block's cross-attention: rows summing to 1, nothing on source padding, and the
    /// cross-attention output rebuilt from them and the values.
    #[test]
    fn forward_with_pointer_returns_the_last_blocks_cross_attention() {
        type B = burn::backend::NdArray<f32>;
        let _rng = crate::test_rng_lock();
        let device = Default::default();
        let config: T5Config = serde_json::from_value(serde_json::json!({
            "vocab_size": 30, "d_model": 8, "d_kv": 4, "d_ff": 12, "num_layers": 1,
            "num_decoder_layers": 2, "num_heads": 2, "relative_attention_num_buckets": 6,
            "feed_forward_proj": "gated-gelu", "tie_word_embeddings": true, "dropout_rate": 0.0
        }))
        .unwrap();
        let model = T5ForConditionalGeneration::<B>::new(&config, &device);
        let ids = Tensor::<B, 2, Int>::from_data([[3, 4, 5, 1], [6, 7, 1, 0]], &device);
        let mask = Tensor::<B, 2, Int>::from_data([[1, 1, 1, 1], [1, 1, 1, 0]], &device);
        let dec = Tensor::<B, 2, Int>::from_data([[0, 5, 2], [0, 9, 9]], &device);
        let want = model.forward(ids.clone(), mask.clone(), dec.clone());
        let (logits, w) = model.forward_with_pointer(ids.clone(), mask.clone(), dec.clone(), 2);
        logits
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::absolute(1e-6));
        assert_eq!(w.dims(), [2, 2, 3, 4]);
        let rows: Vec<f32> = w.clone().sum_dim(3).into_data().to_vec().unwrap();
        assert!(rows.iter().all(|r| (r - 1.0).abs() < 1e-5), "{rows:?}");
        let padded: Vec<f32> = w
            .clone()
            .slice([1..2, 0..2, 0..3, 3..4])
            .into_data()
            .to_vec()
            .unwrap();
        assert!(padded.iter().all(|&p| p < 1e-6), "{padded:?}");
        // the weights are the ones the block uses: weights x values, merged and projected,
        // equal the cross-attention output for the same normed input
        let enc = model.encode(ids, mask);
        let (outs, _) = model
            .decoder
            .forward_all(model.embed(dec), &enc, None, None);
        let last = model.decoder.block.last().unwrap();
        let first_bias = model.decoder.block[0]
            .layer_0
            .SelfAttention
            .compute_bias(0, 3, 3, &device)
            + crate::mask::causal_mask_bias::<B>(0, 3, 3, &device);
        let mid = last.layer_0.forward(outs[0].clone(), first_bias, None);
        let ca = &last.layer_1.EncDecAttention;
        let normed = last.layer_1.layer_norm.forward(mid);
        let (k, v) = ca.key_values(enc.hidden.clone());
        let w_again = ca.attention_weights(normed.clone(), k, enc.mask_bias.clone(), 2);
        w_again
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&w.into_data(), burn::tensor::Tolerance::absolute(1e-6));
        let ctx = w_again.matmul(v); // [b, h, q, d_kv]
        let [b, h, l, d] = ctx.dims();
        let out = ca.o.forward(ctx.swap_dims(1, 2).reshape([b, l, h * d]));
        let kv = ca.key_values(enc.hidden.clone());
        let want_out = ca.forward_cross(normed, kv, enc.mask_bias.clone());
        out.into_data().assert_approx_eq::<f32>(
            &want_out.into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
    }

    #[test]
    fn grouped_decoding_matches_copied_encoder_flex() {
        grouped_decoding_matches_copied_encoder::<burn::backend::Flex>();
    }

    #[test]
    fn grouped_decoding_matches_copied_encoder_ndarray() {
        grouped_decoding_matches_copied_encoder::<burn::backend::NdArray<f32>>();
    }
}
