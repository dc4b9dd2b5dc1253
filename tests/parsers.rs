//! Inputs the fuzz targets (`fuzz/`, README "Fuzzing") showed the parsers mishandling: each is
//! now a clear one-line error, or parsed as the Python reference does.

use std::path::Path;

use wgtune::adapter::{config_json, parse_config};
use wgtune::data::{Format, parse_jsonl, parse_jsonl_bytes};
use wgtune::lora::{Layout, LoraConfig};
use wgtune::model::Gpt2Config;
use wgtune::model::ModelConfig;

fn model_err(json: &str) -> String {
    Gpt2Config::from_json(json, Path::new("config.json"))
        .map(|_| ())
        .unwrap_err()
        .0
}

fn config(n_embd: &str, n_head: &str, n_layer: &str, extra: &str) -> String {
    format!(
        r#"{{"n_embd":{n_embd},"n_head":{n_head},"n_layer":{n_layer},"n_positions":8,"vocab_size":10{extra}}}"#
    )
}

#[test]
fn model_configs_too_large_to_count_or_lay_out_are_errors() {
    // num_params overflowed (a panic in debug builds, a wrong count in release).
    assert_eq!(
        model_err(&config("4294967296", "33554432", "1", "")),
        "config.json: n_embd 4294967296, n_positions 8 and vocab_size 10 make more parameters than this machine can count"
    );
    // LoRA layouts looped over every layer (a hang), and target names only match 1000.
    assert_eq!(
        model_err(&config("8", "1", "1000000000000", "")),
        "config.json: n_layer 1000000000000 exceeds the supported 1000"
    );
    // eos() computed vocab_size as u32 - 1, and ids are i32 labels.
    assert!(
        model_err(&config("8", "1", "1", "").replace("10}", "4294967296}"))
            .contains("vocab_size 4294967296 exceeds the supported 2147483647")
    );
    // An EOS id outside the vocabulary would index past the embedding table.
    assert_eq!(
        model_err(&config("8", "1", "1", r#","eos_token_id":10"#)),
        "config.json: eos_token_id 10 is outside the vocabulary of 10 tokens"
    );
    let ok = Gpt2Config::from_json(&config("8", "1", "1000", ""), Path::new("c")).unwrap();
    assert_eq!(ok.eos(), 9);
    assert!(ok.num_params() > 0);
}

fn adapter_err(json: &str) -> String {
    parse_config(json, Path::new("adapter_config.json"))
        .map(|_| ())
        .unwrap_err()
        .0
}

#[test]
fn adapter_configs_with_huge_rank_or_infinite_alpha_are_errors() {
    // r·in_features overflowed in the layout.
    assert_eq!(
        adapter_err(r#"{"r":4611686018427387904,"lora_alpha":8,"target_modules":["c_attn"]}"#),
        "adapter_config.json: LoRA rank 4611686018427387904 is too large (at most 4096)"
    );
    // 1e39 is infinite as an f32: the scale was inf and config_json wrote alpha as null.
    assert_eq!(
        adapter_err(r#"{"r":4,"lora_alpha":1e39,"target_modules":["c_attn"]}"#),
        "adapter_config.json: LoRA alpha (--alpha, lora_alpha) must be positive and finite, got inf"
    );
    // An integral alpha beyond i64 was written back as i64::MAX (a saturating cast).
    let cfg = parse_config(
        r#"{"r":4096,"lora_alpha":3.4e38,"target_modules":["c_fc"]}"#,
        Path::new("a"),
    )
    .unwrap();
    let back = parse_config(
        &config_json(&cfg, "base", &two_layers(), false).to_string(),
        Path::new("b"),
    )
    .unwrap();
    assert_eq!(back.lora_alpha, cfg.lora_alpha);
    let model = Gpt2Config::preset_shape("gpt2-xl").unwrap();
    let layout = Layout::new(&ModelConfig::from(model.clone()), &cfg);
    assert_eq!(layout.trainable, 48 * 4096 * (1600 + 6400));
    let too_big = LoraConfig { r: 4097, ..cfg };
    assert!(too_big.validate_for(&ModelConfig::from(model)).is_err());
}

#[test]
fn alpaca_fields_that_look_like_placeholders_stay_as_written() {
    // The instruction's "{input}" was replaced by the input, unlike Python's str.format.
    let line =
        r#"{"instruction":"say {input} and {instruction}","input":"x{instruction}","output":"o"}"#;
    let d = parse_jsonl(line, "f", None).unwrap();
    let prompt = &d.rows[0].1[0].0;
    assert!(
        prompt.contains("### Instruction:\nsay {input} and {instruction}\n\n### Input:\nx{instruction}\n\n### Response:\n"),
        "{prompt}"
    );
    let d = parse_jsonl(r#"{"instruction":"{input}","output":"o"}"#, "f", None).unwrap();
    assert!(
        d.rows[0].1[0]
            .0
            .contains("### Instruction:\n{input}\n\n### Response:\n")
    );
}

#[test]
fn jsonl_bytes_name_the_line_of_invalid_utf8() {
    let e = parse_jsonl_bytes(b"{\"text\":\"a\"}\n{\"text\":\"\xff\"}\n", "d.jsonl", None)
        .unwrap_err()
        .0;
    assert_eq!(e, "d.jsonl:2: not valid UTF-8");
    let d = parse_jsonl_bytes(b"{\"text\":\"a\"}", "d.jsonl", Some(Format::Text)).unwrap();
    assert_eq!(d.rows.len(), 1);
}

/// A GPT-2 of two blocks.
fn two_layers() -> ModelConfig {
    let c = Gpt2Config::preset_shape("distilgpt2").unwrap();
    ModelConfig::from(Gpt2Config { n_layer: 2, ..c })
}
