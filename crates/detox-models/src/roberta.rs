//! RoBERTa sequence classifier (`RobertaForSequenceClassification` semantics).
//!
//! Field names mirror transformers' (`roberta.encoder.layer.{i}.attention.output.LayerNorm`); the one
//! rename is HF's `attention.self`, a Rust keyword, which is `attention.self_` here.

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation;

use crate::config::RobertaConfig;
use crate::dropout::Dropout;
use crate::lora::{LoraLinear, LoraTarget};
use crate::mask::additive_mask;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenAct {
    Gelu,
    GeluNew,
    Relu,
}

impl HiddenAct {
    fn from_name(name: &str) -> Self {
        match name {
            "gelu_new" => Self::GeluNew,
            "relu" => Self::Relu,
            _ => Self::Gelu,
        }
    }

    fn apply<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Gelu => crate::kernels::gelu(x),
            Self::GeluNew => activation::gelu_approximate(x),
            Self::Relu => activation::relu(x),
        }
    }
}

/// RoBERTa position ids: `padding_idx + cumsum(not_pad)` for tokens, `padding_idx` for padding
/// (transformers' `create_position_ids_from_input_ids`). Row-major `[batch, len]`.
pub fn position_ids(input_ids: &[i64], len: usize, padding_idx: i64) -> Vec<i64> {
    let mut out = Vec::with_capacity(input_ids.len());
    for row in input_ids.chunks(len) {
        let mut count = 0;
        for &id in row {
            if id != padding_idx {
                count += 1;
                out.push(padding_idx + count);
            } else {
                out.push(padding_idx);
            }
        }
    }
    out
}

#[allow(non_snake_case)]
#[derive(Module, Debug)]
pub struct RobertaEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub token_type_embeddings: Embedding<B>,
    pub LayerNorm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> RobertaEmbeddings<B> {
    /// `position_ids` as [`position_ids`] computes them; token type 0 everywhere.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        position_ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        let token_type = self
            .token_type_embeddings
            .weight
            .val()
            .slice(0..1)
            .unsqueeze::<3>();
        let x = self.word_embeddings.forward(input_ids)
            + self.position_embeddings.forward(position_ids)
            + token_type;
        self.dropout.forward(self.LayerNorm.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct RobertaSelfAttention<B: Backend> {
    pub query: LoraLinear<B>,
    pub key: LoraLinear<B>,
    pub value: LoraLinear<B>,
    pub dropout: Dropout,
    n_heads: usize,
}

impl<B: Backend> RobertaSelfAttention<B> {
    fn split(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, l, d] = x.dims();
        x.reshape([b, l, self.n_heads, d / self.n_heads])
            .swap_dims(1, 2)
    }

    pub fn forward(&self, x: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, l, d] = x.dims();
        let q = self.split(self.query.forward(x.clone()));
        let k = self.split(self.key.forward(x.clone()));
        let v = self.split(self.value.forward(x));
        let scale = 1.0 / ((d / self.n_heads) as f64).sqrt();
        // scaling the (4x smaller) queries instead of the scores: the same numbers (exactly so
        // for power-of-4 head sizes such as roberta-base's 64)
        let q = q * scale;
        // burn-flex: one task per (row, head), heads merged on the way out
        let (q, k, v, mask_bias) =
            match crate::kernels_attention_full::attend_merged(q, k, v, mask_bias) {
                Ok(merged) => return merged,
                Err(declined) => declined,
            };
        let scores = q.matmul(k.swap_dims(2, 3));
        let probs = self
            .dropout
            .forward(crate::kernels::softmax_with_bias(scores, mask_bias));
        probs.matmul(v).swap_dims(1, 2).reshape([b, l, d])
    }
}

/// `dense → dropout → LayerNorm(x + residual)`: HF's `RobertaSelfOutput` and `RobertaOutput`.
#[allow(non_snake_case)]
#[derive(Module, Debug)]
pub struct RobertaResidualOutput<B: Backend> {
    pub dense: LoraLinear<B>,
    pub LayerNorm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> RobertaResidualOutput<B> {
    pub fn forward(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.LayerNorm.forward(crate::kernels::add(
            self.dropout.forward(self.dense.forward(x)),
            residual,
        ))
    }
}

#[derive(Module, Debug)]
pub struct RobertaAttention<B: Backend> {
    pub self_: RobertaSelfAttention<B>,
    pub output: RobertaResidualOutput<B>,
}

impl<B: Backend> RobertaAttention<B> {
    pub fn forward(&self, x: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        self.output
            .forward(self.self_.forward(x.clone(), mask_bias), x)
    }
}

#[derive(Module, Debug)]
pub struct RobertaIntermediate<B: Backend> {
    pub dense: LoraLinear<B>,
    #[module(skip)]
    act: HiddenAct,
}

#[derive(Module, Debug)]
pub struct RobertaLayer<B: Backend> {
    pub attention: RobertaAttention<B>,
    pub intermediate: RobertaIntermediate<B>,
    pub output: RobertaResidualOutput<B>,
}

impl<B: Backend> RobertaLayer<B> {
    pub fn forward(&self, x: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let a = self.attention.forward(x, mask_bias);
        let h = self
            .intermediate
            .act
            .apply(self.intermediate.dense.forward(a.clone()));
        self.output.forward(h, a)
    }
}

#[derive(Module, Debug)]
pub struct RobertaEncoder<B: Backend> {
    pub layer: Vec<RobertaLayer<B>>,
}

#[derive(Module, Debug)]
pub struct RobertaModel<B: Backend> {
    pub embeddings: RobertaEmbeddings<B>,
    pub encoder: RobertaEncoder<B>,
}

#[derive(Module, Debug)]
pub struct RobertaClassificationHead<B: Backend> {
    pub dense: Linear<B>,
    pub out_proj: Linear<B>,
    pub dropout: Dropout,
}

impl<B: Backend> RobertaClassificationHead<B> {
    /// Classifies from the first token's (`<s>`) hidden state.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [b, _, d] = hidden.dims();
        let first = hidden.slice([0..b, 0..1]).reshape([b, d]);
        let x = self.dense.forward(self.dropout.forward(first)).tanh();
        self.out_proj.forward(self.dropout.forward(x))
    }
}

/// `RobertaForSequenceClassification`.
#[derive(Module, Debug)]
pub struct RobertaForSequenceClassification<B: Backend> {
    pub roberta: RobertaModel<B>,
    pub classifier: RobertaClassificationHead<B>,
    #[module(skip)]
    pub config: RobertaConfig,
    #[module(skip)]
    pub labels: Vec<String>,
}

impl<B: Backend> RobertaForSequenceClassification<B> {
    pub fn new(config: &RobertaConfig, device: &B::Device) -> Self {
        let c = config;
        let labels = c.labels().expect("validated config");
        let d = c.hidden_size;
        let lin = |i, o| LoraLinear::new(i, o, true, device);
        let head = |i, o| LinearConfig::new(i, o).init(device);
        let ln = || {
            LayerNormConfig::new(d)
                .with_epsilon(c.layer_norm_eps)
                .init(device)
        };
        let hidden_dropout = || Dropout::new(c.hidden_dropout_prob);
        let layer = (0..c.num_hidden_layers)
            .map(|_| RobertaLayer {
                attention: RobertaAttention {
                    self_: RobertaSelfAttention {
                        query: lin(d, d),
                        key: lin(d, d),
                        value: lin(d, d),
                        dropout: Dropout::new(c.attention_probs_dropout_prob),
                        n_heads: c.num_attention_heads,
                    },
                    output: RobertaResidualOutput {
                        dense: lin(d, d),
                        LayerNorm: ln(),
                        dropout: hidden_dropout(),
                    },
                },
                intermediate: RobertaIntermediate {
                    dense: lin(d, c.intermediate_size),
                    act: HiddenAct::from_name(&c.hidden_act),
                },
                output: RobertaResidualOutput {
                    dense: lin(c.intermediate_size, d),
                    LayerNorm: ln(),
                    dropout: hidden_dropout(),
                },
            })
            .collect();
        Self {
            roberta: RobertaModel {
                embeddings: RobertaEmbeddings {
                    word_embeddings: EmbeddingConfig::new(c.vocab_size, d).init(device),
                    position_embeddings: EmbeddingConfig::new(c.max_position_embeddings, d)
                        .init(device),
                    token_type_embeddings: EmbeddingConfig::new(c.type_vocab_size.max(1), d)
                        .init(device),
                    LayerNorm: ln(),
                    dropout: hidden_dropout(),
                },
                encoder: RobertaEncoder { layer },
            },
            classifier: RobertaClassificationHead {
                dense: head(d, d),
                out_proj: head(d, labels.len()),
                dropout: Dropout::new(c.classifier_dropout.unwrap_or(c.hidden_dropout_prob)),
            },
            labels,
            config: c.clone(),
        }
    }

    /// Embedding output and each layer's output, for `input_ids`/`attention_mask` `[batch, len]`.
    pub fn hidden_states(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
    ) -> Vec<Tensor<B, 3>> {
        let [b, l] = input_ids.dims();
        let device = input_ids.device();
        let ids: Vec<i64> = input_ids
            .to_data()
            .convert::<i64>()
            .into_vec()
            .expect("int ids");
        let pos = position_ids(&ids, l, self.config.pad_token_id as i64);
        let pos = Tensor::<B, 2, Int>::from_data(TensorData::new(pos, [b, l]), &device);
        let mask_bias = additive_mask(attention_mask);
        let mut x = self.roberta.embeddings.forward(input_ids, pos);
        let mut out = vec![x.clone()];
        for layer in &self.roberta.encoder.layer {
            x = layer.forward(x, mask_bias.clone());
            out.push(x.clone());
        }
        out
    }

    /// Class logits `[batch, num_labels]`.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
    ) -> Tensor<B, 2> {
        let hidden = self
            .hidden_states(input_ids, attention_mask)
            .pop()
            .expect("embeddings");
        self.classifier.forward(hidden)
    }

    /// Index of the label called `name`.
    pub fn label_index(&self, name: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == name)
    }
}

impl<B: Backend> LoraTarget<B> for RobertaForSequenceClassification<B> {
    /// HF module names, e.g. `roberta.encoder.layer.0.attention.self.query`.
    fn lora_linears(&mut self) -> Vec<(String, &mut LoraLinear<B>)> {
        let mut out = Vec::new();
        for (i, l) in self.roberta.encoder.layer.iter_mut().enumerate() {
            let p = format!("roberta.encoder.layer.{i}");
            let a = &mut l.attention;
            out.push((format!("{p}.attention.self.query"), &mut a.self_.query));
            out.push((format!("{p}.attention.self.key"), &mut a.self_.key));
            out.push((format!("{p}.attention.self.value"), &mut a.self_.value));
            out.push((format!("{p}.attention.output.dense"), &mut a.output.dense));
            out.push((format!("{p}.intermediate.dense"), &mut l.intermediate.dense));
            out.push((format!("{p}.output.dense"), &mut l.output.dense));
        }
        out
    }
}
