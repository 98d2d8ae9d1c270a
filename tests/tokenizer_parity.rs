//! Integration test (reads ../shared): the real T5 and RoBERTa tokenizers give the ids that
//! transformers' T5TokenizerFast / RobertaTokenizerFast give on 200 DialogSum test dialogues.

mod common;

use std::path::PathBuf;

fn shared() -> Option<PathBuf> {
    common::shared("tokenizers")
}

#[test]
fn real_tokenizers_match_transformers_on_dialogsum() {
    let Some(shared) = shared() else { return };
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("reference/tokenizer_parity.json"))
            .unwrap(),
    )
    .unwrap();
    let rows: Vec<usize> = serde_json::from_value(fixture["rows"].clone()).unwrap();
    let want_t5: Vec<Vec<u32>> = serde_json::from_value(fixture["t5"].clone()).unwrap();
    let want_rb: Vec<Vec<u32>> = serde_json::from_value(fixture["roberta"].clone()).unwrap();
    let test = std::fs::read_to_string(shared.join("data/dialogsum/test.jsonl")).unwrap();
    let lines: Vec<&str> = test.lines().collect();
    // No truncation here: the fixture holds full-length ids.
    let t5 =
        detox_hub::TextTokenizer::from_dir(&shared.join("tokenizers/t5"), 0, usize::MAX, 32128)
            .unwrap();
    let rb = detox_hub::TextTokenizer::from_dir(
        &shared.join("tokenizers/roberta"),
        1,
        usize::MAX,
        50265,
    )
    .unwrap();
    assert_eq!(rows.len(), 200);
    for (k, &row) in rows.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(lines[row]).unwrap();
        let dialogue = v["dialogue"].as_str().unwrap();
        let prompt = format!("Summarize the following conversation.\n\n{dialogue}\n\nSummary: ");
        assert_eq!(
            t5.encode(&prompt).unwrap(),
            want_t5[k],
            "T5 ids of test row {row}"
        );
        assert_eq!(
            rb.encode(dialogue).unwrap(),
            want_rb[k],
            "RoBERTa ids of test row {row}"
        );
    }
}
