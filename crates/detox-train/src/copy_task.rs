//! A copy objective for models trained from scratch: source and target are both the first `n`
//! tokens of a dialogue (no template). A decoder can only lower this loss by attending to the
//! encoder, so cross-attention learns to align with the source early instead of the decoder
//! settling into a language model of summaries that ignores its input (what a from-scratch T5 on
//! DialogSum did for thousands of steps, with torch as with detox). The source is kept short on
//! purpose: at initialization cross-attention is close to uniform, and the gradient that teaches
//! it to pick one source position shrinks with the number of positions (copying the first 64
//! tokens out of whole 200-500-token dialogues was not learned in 250 steps; out of 48-token
//! prefixes it was). Mixed into fine-tuning by `detox finetune --copy-prefix N`.

use crate::data::Tokenized;

/// The copy example of `tokens` (a text's ids without the final `eos`): its first `n` tokens
/// (at most `max_len - 1`), followed by `eos`, as both source and target.
pub fn copy_prefix(tokens: &[u32], n: usize, max_len: usize, eos: u32) -> Tokenized {
    let len = tokens.len().min(n).min(max_len.saturating_sub(1));
    let mut input_ids = tokens[..len].to_vec();
    input_ids.push(eos);
    Tokenized {
        labels: input_ids.clone(),
        input_ids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_and_target_are_the_first_n_tokens() {
        let tokens: Vec<u32> = (100..300).collect();
        let ex = copy_prefix(&tokens, 64, 512, 1);
        assert_eq!(ex.input_ids.len(), 65);
        assert_eq!(ex.input_ids[..64], tokens[..64]);
        assert_eq!(ex.input_ids[64], 1);
        assert_eq!(ex.labels, ex.input_ids);
    }

    #[test]
    fn short_texts_and_short_limits_are_cut_consistently() {
        let ex = copy_prefix(&[5, 6, 7], 64, 512, 1);
        assert_eq!(
            (ex.input_ids, ex.labels),
            (vec![5, 6, 7, 1], vec![5, 6, 7, 1])
        );
        let tokens: Vec<u32> = (10..110).collect();
        let ex = copy_prefix(&tokens, 64, 33, 1);
        assert_eq!(ex.input_ids.len(), 33);
        assert_eq!(ex.labels[..32], tokens[..32]);
        let ex = copy_prefix(&[], 8, 512, 1);
        assert_eq!((ex.input_ids, ex.labels), (vec![1], vec![1]));
    }
}
