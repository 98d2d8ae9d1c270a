//! The lab's prompts: zero-shot instruction and one-/few-shot prompts built from examples, and
//! how many of their tokens T5 is handed (`--max-source-length`).

use std::path::Path;

use anyhow::{bail, Result};
use detox_train::data::{read_jsonl, PromptTemplate};

/// The lab's zero-shot instruction (detox-train's default template) around `dialogue`.
pub fn zero_shot(dialogue: &str) -> String {
    PromptTemplate::default().render(dialogue)
}

/// The lab's in-context prompt: each example as "Dialogue: … What was going on? {summary}",
/// then the dialogue to summarize with the question left open.
pub fn few_shot(examples: &[(String, String)], dialogue: &str) -> String {
    let mut prompt = String::new();
    for (d, s) in examples {
        prompt.push_str(&format!(
            "\nDialogue:\n\n{d}\n\nWhat was going on?\n{s}\n\n\n"
        ));
    }
    prompt.push_str(&format!(
        "\nDialogue:\n\n{dialogue}\n\nWhat was going on?\n"
    ));
    prompt
}

/// The first `n` `(dialogue, summary)` pairs of a DialogSum-style JSONL file (read by
/// detox-train's reader, which names the file, line and field of what is wrong).
pub fn read_examples(path: &Path, n: usize) -> Result<Vec<(String, String)>> {
    let examples = read_jsonl(path, Some(n))?;
    if examples.len() < n {
        bail!(
            "{}: asked for {n} examples but the file has {}",
            path.display(),
            examples.len()
        );
    }
    Ok(examples
        .into_iter()
        .map(|e| (e.dialogue, e.summary))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_shot_wraps_dialogue() {
        assert_eq!(
            zero_shot("#Person1#: Hi."),
            "Summarize the following conversation.\n\n#Person1#: Hi.\n\nSummary: "
        );
    }

    #[test]
    fn few_shot_puts_examples_before_the_open_question() {
        let p = few_shot(&[("A".into(), "a".into())], "B");
        assert_eq!(p, "\nDialogue:\n\nA\n\nWhat was going on?\na\n\n\n\nDialogue:\n\nB\n\nWhat was going on?\n");
    }
}

/// `--max-source-length` of the commands that encode prompts for T5 (`summarize`, `evaluate`).
#[derive(clap::Args, Debug, Clone)]
pub struct SourceLengthArgs {
    /// Longest prompt in tokens; a longer prompt is cut to it with a warning. Default: no limit,
    /// as transformers' tokenizer call without `truncation=True` (T5's relative positions take
    /// any length; FLAN-T5's 512 is its training length, not a bound).
    #[arg(long)]
    pub max_source_length: Option<usize>,
}

impl SourceLengthArgs {
    /// Refuses `--max-source-length 0`.
    pub fn check(&self) -> Result<()> {
        if self.max_source_length == Some(0) {
            bail!("--max-source-length must be at least 1 (the longest prompt in tokens)");
        }
        Ok(())
    }

    /// The tokenizer's limit: the flag's value, else no limit.
    pub fn limit(&self) -> usize {
        self.max_source_length.unwrap_or(usize::MAX)
    }
}
