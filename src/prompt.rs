//! The lab's prompts: zero-shot instruction and one-/few-shot prompts built from examples.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// The zero-shot template of the lab; `{dialogue}` is replaced by the dialogue.
pub const ZERO_SHOT_TEMPLATE: &str =
    "Summarize the following conversation.\n\n{dialogue}\n\nSummary: ";

pub fn zero_shot(dialogue: &str) -> String {
    ZERO_SHOT_TEMPLATE.replace("{dialogue}", dialogue)
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

/// The first `n` `(dialogue, summary)` pairs of a DialogSum-style JSONL file.
pub fn read_examples(path: &Path, n: usize) -> Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        if out.len() == n {
            break;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
        let field = |name: &str| -> Result<String> {
            v[name].as_str().map(str::to_string).with_context(|| {
                format!(
                    "{}:{}: missing string field `{name}`",
                    path.display(),
                    i + 1
                )
            })
        };
        out.push((field("dialogue")?, field("summary")?));
    }
    if out.len() < n {
        bail!(
            "{}: asked for {n} examples but the file has {}",
            path.display(),
            out.len()
        );
    }
    Ok(out)
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
