use std::path::Path;

use crate::common::assert_close;
use crate::fixtures::dir;
use crate::gpu_or_skip;
use serde_json::Value;
use wgtune::data;
use wgtune::data::IGNORE_INDEX;
use wgtune::model::{Quant, load_dir};
use wgtune::tokenizer::Tokenizer;

fn json(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir(rel)).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Token ids and decoded text identical to transformers' GPT2TokenizerFast on varied text
/// (unicode, whitespace runs, numbers, a literal <|endoftext|>), for the full GPT-2 tokenizer,
/// the 1000-token one, and the vocab.json + merges.txt fallback.
#[test]
fn tokenizers_match_transformers() {
    let full = Tokenizer::from_dir(&dir("tokenizers/gpt2")).unwrap();
    let tiny = Tokenizer::from_dir(&dir("models/tiny")).unwrap();
    let fallback = Tokenizer::from_dir(&dir("models/odd")).unwrap();
    assert_eq!(full.eos_id(), Some(50256));
    assert_eq!(tiny.eos_id(), Some(999));
    assert_eq!(fallback.eos_id(), Some(999));
    let cases = json("tokenizers/cases.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 30);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        assert_eq!(
            full.encode(text).unwrap(),
            ids(&c["gpt2_ids"]),
            "gpt2 ids of {text:?}"
        );
        assert_eq!(
            full.decode(&ids(&c["gpt2_ids"])).unwrap(),
            c["gpt2_decoded"].as_str().unwrap(),
            "gpt2 decode of {text:?}"
        );
        assert_eq!(
            tiny.encode(text).unwrap(),
            ids(&c["tiny_ids"]),
            "tiny ids of {text:?}"
        );
        assert_eq!(
            fallback.encode(text).unwrap(),
            ids(&c["tiny_ids"]),
            "fallback ids of {text:?}"
        );
        assert_eq!(
            tiny.decode(&ids(&c["tiny_ids"])).unwrap(),
            c["tiny_decoded"].as_str().unwrap(),
            "tiny decode of {text:?}"
        );
    }
}

const FILES: [(&str, &str, bool); 5] = [
    ("text", "text.jsonl", false),
    ("prompt_completion", "prompt_completion.jsonl", false),
    ("alpaca", "alpaca.jsonl", false),
    ("messages", "messages.jsonl", false),
    (
        "prompt_completion_train_on_prompt",
        "prompt_completion.jsonl",
        true,
    ),
];

/// Formatting and tokenization of the four JSONL formats: ids and labels identical to the
/// reference script's (which implements the rules documented in src/data.rs).
#[test]
fn jsonl_formats_tokenize_like_the_reference() {
    let tok = Tokenizer::from_dir(&dir("models/tiny")).unwrap();
    let want = json("data/tokenized_tiny.json");
    for (key, file, train_on_prompt) in FILES {
        let ds = data::read_jsonl(&dir(&format!("data/{file}")), None).unwrap();
        let lines = want[key].as_array().unwrap();
        assert_eq!(ds.rows.len(), lines.len(), "{key}");
        for ((line, segs), w) in ds.rows.iter().zip(lines) {
            let ex = data::tokenize(&tok, segs, 999, train_on_prompt, usize::MAX, *line).unwrap();
            assert_eq!(ex.ids, ids(&w["ids"]), "{key} line {line} ids");
            let labels: Vec<i32> = w["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap() as i32)
                .collect();
            assert_eq!(ex.labels, labels, "{key} line {line} labels");
        }
    }
}

/// Eval over each fixture file: token-weighted mean loss within 1e-5 relative of
/// transformers, and the same token count (batched with padding, seq_len 128 truncation).
#[test]
fn eval_loss_matches_transformers() {
    let gpu = gpu_or_skip!();
    let (m, tok) = load_dir(gpu, &dir("models/tiny"), Quant::F32).unwrap();
    let want = json("data/expected_eval_tiny.json");
    let seq_len = want["seq_len"].as_u64().unwrap() as usize;
    for (key, file, train_on_prompt) in FILES {
        let ds = data::read_jsonl(Path::new(&dir(&format!("data/{file}"))), None).unwrap();
        let examples: Vec<_> = ds
            .rows
            .iter()
            .map(|(line, segs)| {
                data::tokenize(&tok, segs, 999, train_on_prompt, seq_len, *line).unwrap()
            })
            .collect();
        // One padded batch of all lines.
        let (b, t) = (
            examples.len(),
            examples.iter().map(|e| e.ids.len()).max().unwrap(),
        );
        let (mut ids, mut mask, mut targets) = (
            vec![999u32; b * t],
            vec![0u32; b * t],
            vec![IGNORE_INDEX; b * t],
        );
        for (i, e) in examples.iter().enumerate() {
            for j in 0..e.ids.len() {
                ids[i * t + j] = e.ids[j];
                mask[i * t + j] = 1;
                if j + 1 < e.ids.len() {
                    targets[i * t + j] = e.labels[j + 1];
                }
            }
        }
        let losses =
            pollster::block_on(m.position_losses(gpu, &ids, &mask, &targets, b, t, None)).unwrap();
        let n = targets.iter().filter(|&&x| x != IGNORE_INDEX).count();
        let loss = losses.iter().map(|&l| l as f64).sum::<f64>() / n as f64;
        assert_eq!(
            n as u64,
            want[key]["tokens"].as_u64().unwrap(),
            "{key} tokens"
        );
        assert_close(
            &format!("{key} loss"),
            &[loss as f32],
            &[want[key]["loss"].as_f64().unwrap() as f32],
            0.0,
            1e-5,
        );
    }
}
