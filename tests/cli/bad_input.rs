//! Bad input everywhere a user can hand wgtune something: JSONL, model directories, adapters,
//! checkpoints and flags. Every case must end with exit status 1, no panic, a one-line
//! `error: ...` naming the file and line or tensor, and no file created or changed.
//! README.md's Troubleshooting section lists the same cases.

use std::time::{Duration, Instant};

use wgtune::lora::{Layout, LoraConfig, init_params};
use wgtune::model::Gpt2Config;
use wgtune::train::checkpoint::{self, TrainerState};

use crate::harness::{Scratch, check_failure, fixture, run};

struct Case {
    name: &'static str,
    /// Builds the inputs in the scratch directory and returns the command line.
    setup: fn(&Scratch) -> Vec<String>,
    /// Substrings of the error line.
    expect: &'static [&'static str],
}

const GOOD_TEXT: &str = "{\"text\": \"The quick brown fox jumps over the lazy dog.\"}\n{\"text\": \"Hello world, hello again.\"}\n{\"text\": \"Numbers: 1234567, 3.14 and 42.\"}\n";

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `wgtune train` on `model` and `data`, writing to `<scratch>/out`, plus `extra` flags.
fn train_with(s: &Scratch, model: String, data: String, extra: &[&str]) -> Vec<String> {
    let out = s.path("out").display().to_string();
    let mut v = strings(&["train", "--model", &model, "--data", &data, "--out", &out]);
    // Small defaults, unless the case sets the flag itself.
    for (flag, value) in [
        ("--max-steps", "1"),
        ("--batch-size", "2"),
        ("--seq-len", "32"),
    ] {
        if !extra.contains(&flag) {
            v.extend(strings(&[flag, value]));
        }
    }
    v.extend(strings(extra));
    v
}

/// Train on the tiny model with `data.jsonl` holding `text`.
fn train_data(s: &Scratch, text: &[u8]) -> Vec<String> {
    let data = s.write("data.jsonl", text);
    train_with(s, s.tiny_model("model"), data, &[])
}

/// Train good data with extra flags.
fn train_flags(s: &Scratch, extra: &[&str]) -> Vec<String> {
    let data = s.write("data.jsonl", GOOD_TEXT);
    train_with(s, s.tiny_model("model"), data, extra)
}

/// Train on a copy of the tiny model changed by `edit` (given the model directory).
fn train_model(s: &Scratch, edit: impl FnOnce(&std::path::Path)) -> Vec<String> {
    let model = s.tiny_model("model");
    edit(std::path::Path::new(&model));
    let data = s.write("data.jsonl", GOOD_TEXT);
    train_with(s, model, data, &[])
}

fn eval_with(model: String, data: String, extra: &[&str]) -> Vec<String> {
    let mut v = strings(&["eval", "--model", &model, "--data", &data]);
    v.extend(strings(extra));
    v
}

/// Rewrite the tiny model's safetensors with `edit` applied to its (name, dtype, shape,
/// bytes) list.
fn rewrite_weights(
    dir: &std::path::Path,
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// Replace `key` in the tiny model's config.json.
fn edit_config(dir: &std::path::Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v[key] = value;
    std::fs::write(&path, v.to_string()).unwrap();
}

fn tiny_config() -> Gpt2Config {
    Gpt2Config::from_file(&fixture("models/tiny/config.json")).unwrap()
}

fn lora(targets: &[&str]) -> LoraConfig {
    LoraConfig {
        r: 8,
        lora_alpha: 16.0,
        lora_dropout: 0.0,
        target_modules: targets.iter().map(|t| t.to_string()).collect(),
        use_rslora: false,
    }
}

/// A valid adapter for `config` at `<scratch>/rel`.
fn write_adapter(s: &Scratch, rel: &str, config: &Gpt2Config, l: &LoraConfig) -> String {
    let layout = Layout::new(config, l);
    let params = init_params(&layout, l.r, 1);
    let dir = s.path(rel);
    wgtune::adapter::save_dir(&dir, l, &layout, &params, "tiny", config.n_layer, false).unwrap();
    dir.display().to_string()
}

/// Train from the tiny model with `--init-adapter` an adapter changed by `edit`.
fn train_adapter(s: &Scratch, edit: impl FnOnce(&std::path::Path)) -> Vec<String> {
    let adapter = write_adapter(s, "adapter", &tiny_config(), &lora(&["c_attn"]));
    edit(std::path::Path::new(&adapter));
    train_flags(s, &["--init-adapter", &adapter])
}

fn edit_adapter_config(dir: &std::path::Path, key: &str, value: serde_json::Value) {
    let path = dir.join("adapter_config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v[key] = value;
    std::fs::write(&path, v.to_string()).unwrap();
}

fn cases() -> Vec<Case> {
    vec![
        // ---- JSONL data ----
        Case {
            name: "data_empty_file",
            setup: |s| train_data(s, b""),
            expect: &["data.jsonl", "no data"],
        },
        Case {
            name: "data_only_blank_lines",
            setup: |s| train_data(s, b"\n   \n\t\n"),
            expect: &["data.jsonl", "no data"],
        },
        Case {
            name: "data_invalid_json",
            setup: |s| train_data(s, b"{\"text\": \"a\"}\n{\"text\": \"b\"\n"),
            expect: &["data.jsonl:2", "invalid JSON"],
        },
        Case {
            name: "data_line_is_an_array",
            setup: |s| train_data(s, b"[\"text\", \"a\"]\n"),
            expect: &["data.jsonl:1", "expected a JSON object, found an array"],
        },
        Case {
            name: "data_line_is_a_number",
            setup: |s| train_data(s, b"{\"text\": \"a\"}\n\n42\n"),
            expect: &["data.jsonl:3", "found a number"],
        },
        Case {
            name: "data_unknown_keys",
            setup: |s| train_data(s, b"{\"content\": \"a\"}\n"),
            expect: &["data.jsonl:1", "cannot tell the format"],
        },
        Case {
            name: "data_missing_field",
            setup: |s| {
                train_data(
                    s,
                    b"{\"prompt\": \"p\", \"completion\": \"c\"}\n{\"prompt\": \"p\"}\n",
                )
            },
            expect: &["data.jsonl:2", "missing field \"completion\""],
        },
        Case {
            name: "data_mistyped_field",
            setup: |s| train_data(s, b"{\"text\": 5}\n"),
            expect: &["data.jsonl:1", "\"text\" must be a string, found a number"],
        },
        Case {
            name: "data_messages_not_an_array",
            setup: |s| train_data(s, b"{\"messages\": \"hi\"}\n"),
            expect: &["data.jsonl:1", "\"messages\" must be an array"],
        },
        Case {
            name: "data_message_without_role",
            setup: |s| train_data(s, b"{\"messages\": [{\"content\": \"hi\"}]}\n"),
            expect: &["data.jsonl:1", "messages[0]", "missing field \"role\""],
        },
        Case {
            name: "data_alpaca_input_not_a_string",
            setup: |s| {
                train_data(
                    s,
                    b"{\"instruction\": \"i\", \"input\": 3, \"output\": \"o\"}\n",
                )
            },
            expect: &["data.jsonl:1", "\"input\" must be a string"],
        },
        Case {
            name: "data_mixed_formats",
            setup: |s| {
                train_data(
                    s,
                    b"{\"text\": \"a\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}\n",
                )
            },
            expect: &["data.jsonl:2", "mixed formats", "--format"],
        },
        Case {
            name: "data_invalid_utf8",
            setup: |s| {
                train_data(
                    s,
                    b"{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"\xff\xfe\"}\n",
                )
            },
            expect: &["data.jsonl:3", "not valid UTF-8"],
        },
        Case {
            name: "data_100_mib_line",
            setup: |s| {
                let mut line = b"{\"text\": \"".to_vec();
                line.resize(line.len() + (100 << 20), b'a');
                line.extend_from_slice(b"\"}\n");
                train_data(s, &line)
            },
            expect: &["data.jsonl:1", "100.0 MiB", "split or shorten"],
        },
        Case {
            name: "data_prompts_longer_than_seq_len",
            setup: |s| {
                let long = "word ".repeat(100);
                let text = format!("{{\"prompt\": \"{long}\", \"completion\": \"yes\"}}\n");
                train_data(s, text.as_bytes())
            },
            expect: &[
                "data.jsonl",
                "no line has a trained token within --seq-len 32",
            ],
        },
        Case {
            name: "data_file_missing",
            setup: |s| {
                let missing = s.path("nope.jsonl").display().to_string();
                train_with(s, s.tiny_model("model"), missing, &[])
            },
            expect: &["nope.jsonl", "cannot read"],
        },
        Case {
            name: "data_is_a_directory",
            setup: |s| {
                std::fs::create_dir_all(s.path("folder.jsonl")).unwrap();
                let d = s.path("folder.jsonl").display().to_string();
                train_with(s, s.tiny_model("model"), d, &[])
            },
            expect: &["folder.jsonl", "cannot read"],
        },
        Case {
            name: "data_unknown_format_flag",
            setup: |s| train_flags(s, &["--format", "csv"]),
            expect: &["unknown format \"csv\""],
        },
        Case {
            name: "val_data_invalid_json",
            setup: |s| {
                let val = s.write("val.jsonl", "{oops}\n");
                train_flags(s, &["--val-data", &val])
            },
            expect: &["val.jsonl:1", "invalid JSON"],
        },
        Case {
            name: "eval_data_line_is_a_string",
            setup: |s| {
                let d = s.write("eval.jsonl", "\"just text\"\n");
                eval_with(s.tiny_model("model"), d, &[])
            },
            expect: &["eval.jsonl:1", "found a string"],
        },
        // ---- model directories ----
        Case {
            name: "model_dir_missing",
            setup: |s| {
                let data = s.write("data.jsonl", GOOD_TEXT);
                let m = s.path("no-model").display().to_string();
                train_with(s, m, data, &[])
            },
            expect: &["no-model", "no such directory"],
        },
        Case {
            name: "model_config_missing",
            setup: |s| train_model(s, |d| std::fs::remove_file(d.join("config.json")).unwrap()),
            expect: &[
                "model/config.json: no config.json",
                "a GPT-2 model directory holds",
            ],
        },
        Case {
            name: "model_weights_missing",
            setup: |s| {
                train_model(s, |d| {
                    std::fs::remove_file(d.join("model.safetensors")).unwrap()
                })
            },
            expect: &["model/model.safetensors: no model.safetensors"],
        },
        Case {
            name: "model_tokenizer_missing",
            setup: |s| {
                train_model(s, |d| {
                    std::fs::remove_file(d.join("tokenizer.json")).unwrap()
                })
            },
            expect: &["no tokenizer.json"],
        },
        Case {
            name: "model_weights_truncated",
            setup: |s| {
                train_model(s, |d| {
                    let p = d.join("model.safetensors");
                    let b = std::fs::read(&p).unwrap();
                    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
                })
            },
            expect: &["model.safetensors", "not a valid safetensors file"],
        },
        Case {
            name: "model_weights_corrupt_header",
            setup: |s| {
                train_model(s, |d| {
                    let p = d.join("model.safetensors");
                    let mut b = std::fs::read(&p).unwrap();
                    b[8..40].copy_from_slice(&[b'#'; 32]);
                    std::fs::write(&p, b).unwrap();
                })
            },
            expect: &["model.safetensors", "not a valid safetensors file"],
        },
        Case {
            name: "model_weights_tiny_file",
            setup: |s| {
                train_model(s, |d| {
                    std::fs::write(d.join("model.safetensors"), b"abc").unwrap()
                })
            },
            expect: &["model.safetensors", "not a valid safetensors file"],
        },
        Case {
            name: "model_weight_wrong_shape",
            setup: |s| {
                train_model(s, |d| {
                    rewrite_weights(d, |ts| {
                        let t = ts
                            .iter_mut()
                            .find(|t| t.0.ends_with("h.1.attn.c_proj.weight"))
                            .unwrap();
                        t.2 = vec![32, 128];
                    })
                })
            },
            expect: &["h.1.attn.c_proj.weight", "shape [32, 128]", "[64, 64]"],
        },
        Case {
            name: "model_weight_wrong_dtype",
            setup: |s| {
                train_model(s, |d| {
                    rewrite_weights(d, |ts| {
                        let t = ts.iter_mut().find(|t| t.0.ends_with("ln_f.bias")).unwrap();
                        t.1 = safetensors::Dtype::I32;
                    })
                })
            },
            expect: &["ln_f.bias", "dtype I32"],
        },
        Case {
            name: "model_weight_missing",
            setup: |s| {
                train_model(s, |d| {
                    rewrite_weights(d, |ts| ts.retain(|t| !t.0.ends_with("h.1.mlp.c_fc.weight")))
                })
            },
            expect: &["h.1.mlp.c_fc.weight", "missing tensor"],
        },
        Case {
            name: "model_config_more_layers_than_weights",
            setup: |s| train_model(s, |d| edit_config(d, "n_layer", 3.into())),
            expect: &["h.2.", "missing tensor", "n_layer 3"],
        },
        Case {
            name: "model_config_not_gpt2",
            setup: |s| train_model(s, |d| edit_config(d, "model_type", "llama".into())),
            expect: &["config.json", "model_type is \"llama\""],
        },
        Case {
            name: "model_config_invalid_json",
            setup: |s| {
                train_model(s, |d| {
                    std::fs::write(d.join("config.json"), "{\"n_embd\": ").unwrap()
                })
            },
            expect: &["config.json", "not a GPT-2 config.json"],
        },
        Case {
            name: "model_config_missing_field",
            setup: |s| {
                train_model(s, |d| {
                    std::fs::write(
                        d.join("config.json"),
                        "{\"model_type\": \"bert\", \"hidden_size\": 64}",
                    )
                    .unwrap()
                })
            },
            expect: &["config.json", "missing field `n_embd`"],
        },
        Case {
            name: "model_config_heads_do_not_divide",
            setup: |s| train_model(s, |d| edit_config(d, "n_head", 5.into())),
            expect: &["config.json", "not divisible by n_head 5"],
        },
        Case {
            name: "model_tokenizer_bigger_than_vocab",
            setup: |s| train_model(s, |d| edit_config(d, "vocab_size", 500.into())),
            expect: &["tokenizer has 1000 tokens", "vocab_size is 500"],
        },
        Case {
            name: "model_tokenizer_corrupt",
            setup: |s| {
                train_model(s, |d| {
                    std::fs::write(d.join("tokenizer.json"), "{\"model\": 1}").unwrap()
                })
            },
            expect: &["tokenizer.json", "not a valid tokenizer.json"],
        },
        Case {
            name: "eval_model_weights_truncated",
            setup: |s| {
                let m = s.tiny_model("model");
                let p = s.path("model/model.safetensors");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..1000]).unwrap();
                let d = s.write("data.jsonl", GOOD_TEXT);
                eval_with(m, d, &[])
            },
            expect: &["model.safetensors", "not a valid safetensors file"],
        },
        Case {
            name: "generate_model_config_missing",
            setup: |s| {
                let m = s.tiny_model("model");
                std::fs::remove_file(s.path("model/config.json")).unwrap();
                strings(&["generate", "--model", &m, "--prompt", "hi"])
            },
            expect: &["model/config.json: no config.json"],
        },
        // ---- adapters and checkpoints ----
        Case {
            name: "adapter_config_missing",
            setup: |s| {
                train_adapter(s, |d| {
                    std::fs::remove_file(d.join("adapter_config.json")).unwrap()
                })
            },
            expect: &[
                "adapter_config.json",
                "cannot read",
                "a PEFT adapter directory holds",
            ],
        },
        Case {
            name: "adapter_config_invalid_json",
            setup: |s| {
                train_adapter(s, |d| {
                    std::fs::write(d.join("adapter_config.json"), "{").unwrap()
                })
            },
            expect: &["adapter_config.json", "invalid JSON"],
        },
        Case {
            name: "adapter_weights_missing",
            setup: |s| {
                train_adapter(s, |d| {
                    std::fs::remove_file(d.join("adapter_model.safetensors")).unwrap()
                })
            },
            expect: &["adapter_model.safetensors", "cannot read"],
        },
        Case {
            name: "adapter_weights_truncated",
            setup: |s| {
                train_adapter(s, |d| {
                    let p = d.join("adapter_model.safetensors");
                    let b = std::fs::read(&p).unwrap();
                    std::fs::write(&p, &b[..b.len() - 100]).unwrap();
                })
            },
            expect: &["adapter_model.safetensors", "not a valid safetensors file"],
        },
        Case {
            name: "adapter_rank_differs_from_weights",
            setup: |s| train_adapter(s, |d| edit_adapter_config(d, "r", 4.into())),
            expect: &[
                "adapter_model.safetensors",
                "lora_A.weight has shape [8, 64]",
                "r=4",
            ],
        },
        Case {
            name: "adapter_for_another_base_model",
            setup: |s| {
                let odd = Gpt2Config::from_file(&fixture("models/odd/config.json")).unwrap();
                let a = write_adapter(s, "adapter", &odd, &lora(&["c_attn"]));
                train_flags(s, &["--init-adapter", &a])
            },
            expect: &[
                "adapter_model.safetensors",
                "h.0.attn.c_attn.lora_A.weight",
                "another base model",
            ],
        },
        Case {
            name: "adapter_targets_missing_layer",
            setup: |s| {
                train_adapter(s, |d| {
                    edit_adapter_config(
                        d,
                        "target_modules",
                        serde_json::json!(["transformer.h.5.attn.c_attn"]),
                    )
                })
            },
            expect: &[
                "adapter_config.json",
                "h.5.attn.c_attn",
                "not in this model (2 layers)",
            ],
        },
        Case {
            name: "adapter_dora_unsupported",
            setup: |s| train_adapter(s, |d| edit_adapter_config(d, "use_dora", true.into())),
            expect: &["adapter_config.json", "DoRA adapters are not supported"],
        },
        Case {
            name: "adapter_extra_tensor",
            setup: |s| {
                let a = write_adapter(s, "adapter", &tiny_config(), &lora(&["c_attn", "c_fc"]));
                // The weights hold c_fc too, the config names only c_attn.
                edit_adapter_config(
                    std::path::Path::new(&a),
                    "target_modules",
                    serde_json::json!(["c_attn"]),
                );
                train_flags(s, &["--init-adapter", &a])
            },
            expect: &["adapter_model.safetensors", "unexpected tensor", "mlp.c_fc"],
        },
        Case {
            name: "eval_adapter_for_another_base_model",
            setup: |s| {
                let odd = Gpt2Config::from_file(&fixture("models/odd/config.json")).unwrap();
                let a = write_adapter(s, "adapter", &odd, &lora(&["c_attn"]));
                let d = s.write("data.jsonl", GOOD_TEXT);
                eval_with(s.tiny_model("model"), d, &["--adapter", &a])
            },
            expect: &["adapter_model.safetensors", "another base model"],
        },
        Case {
            name: "resume_incomplete_checkpoint",
            setup: |s| {
                let a = write_adapter(s, "ck", &tiny_config(), &lora(&["c_attn"]));
                train_flags(s, &["--resume", &a])
            },
            expect: &["trainer_state.json", "not a complete wgtune checkpoint"],
        },
        Case {
            name: "resume_with_other_data",
            setup: |s| {
                let cfg = tiny_config();
                let l = lora(&["c_attn"]);
                let layout = Layout::new(&cfg, &l);
                let p = init_params(&layout, l.r, 1);
                let zeros = vec![0.0; layout.len];
                let state = TrainerState {
                    step: 2,
                    epoch: 0,
                    cursor: 4,
                    seed: 42,
                    total_steps: 4,
                    tokens_seen: 100,
                    train_examples: 17,
                };
                let ck = s.path("ck");
                checkpoint::save(
                    &ck, &l, &layout, &p, &zeros, &zeros, &state, "tiny", &cfg, false,
                )
                .unwrap();
                train_flags(s, &["--resume", &ck.display().to_string()])
            },
            expect: &["ck", "17 training examples", "same --data and --seed"],
        },
        // ---- flags ----
        Case {
            name: "flag_rank_zero",
            setup: |s| train_flags(s, &["--rank", "0"]),
            expect: &["--rank", "at least 1"],
        },
        Case {
            name: "flag_seq_len_beyond_n_positions",
            setup: |s| train_flags(s, &["--seq-len", "4096"]),
            expect: &["--seq-len 4096", "n_positions 128"],
        },
        Case {
            name: "flag_unknown_target_module",
            setup: |s| train_flags(s, &["--targets", "q_proj"]),
            expect: &["\"q_proj\"", "c_attn, c_proj, c_fc, all-linear"],
        },
        Case {
            name: "flag_target_layer_not_in_model",
            setup: |s| train_flags(s, &["--targets", "transformer.h.7.attn.c_attn"]),
            expect: &["h.7.attn.c_attn", "not in this model (2 layers)"],
        },
        Case {
            name: "flag_lr_zero",
            setup: |s| train_flags(s, &["--lr", "0"]),
            expect: &["--lr 0 is out of range"],
        },
        Case {
            name: "flag_lr_too_large",
            setup: |s| train_flags(s, &["--lr", "5"]),
            expect: &["--lr 5 is out of range"],
        },
        Case {
            name: "flag_lr_nan",
            setup: |s| train_flags(s, &["--lr", "nan"]),
            expect: &["--lr NaN is out of range"],
        },
        Case {
            name: "flag_dropout_out_of_range",
            setup: |s| train_flags(s, &["--dropout", "1.5"]),
            expect: &["--dropout", "[0, 1)", "1.5"],
        },
        Case {
            name: "flag_alpha_negative",
            setup: |s| train_flags(s, &["--alpha=-2"]),
            expect: &["--alpha", "positive", "-2"],
        },
        Case {
            name: "flag_val_split_out_of_range",
            setup: |s| train_flags(s, &["--val-split", "1.5"]),
            expect: &["--val-split", "1.5"],
        },
        Case {
            name: "flag_val_split_one_example",
            setup: |s| {
                let data = s.write("data.jsonl", "{\"text\": \"only one\"}\n");
                train_with(s, s.tiny_model("model"), data, &["--val-split", "0.5"])
            },
            expect: &["data.jsonl", "at least 2 training examples"],
        },
        Case {
            name: "flag_batch_size_zero",
            setup: |s| train_flags(s, &["--batch-size", "0"]),
            expect: &["--batch-size must be at least 1"],
        },
        Case {
            name: "flag_max_steps_zero",
            setup: |s| train_flags(s, &["--max-steps", "0"]),
            expect: &["--max-steps must be at least 1"],
        },
        Case {
            name: "flag_weight_decay_negative",
            setup: |s| train_flags(s, &["--weight-decay=-1"]),
            expect: &["--weight-decay must be >= 0"],
        },
        Case {
            name: "flag_out_holds_an_adapter",
            setup: |s| {
                write_adapter(s, "out", &tiny_config(), &lora(&["c_attn"]));
                train_flags(s, &[])
            },
            expect: &["out", "already holds an adapter", "--overwrite"],
        },
        Case {
            name: "flag_out_is_a_file",
            setup: |s| {
                s.write("out", "not a directory");
                train_flags(s, &[])
            },
            expect: &["--out", "is a file"],
        },
        Case {
            name: "flag_metrics_dir_missing",
            setup: |s| {
                let m = s.path("nowhere/metrics.jsonl").display().to_string();
                train_flags(s, &["--metrics", &m])
            },
            expect: &["nowhere", "does not exist"],
        },
        Case {
            name: "eval_seq_len_beyond_n_positions",
            setup: |s| {
                let d = s.write("data.jsonl", GOOD_TEXT);
                eval_with(s.tiny_model("model"), d, &["--seq-len", "500"])
            },
            expect: &["--seq-len 500", "n_positions 128"],
        },
        Case {
            name: "generate_top_p_zero",
            setup: |s| {
                let m = s.tiny_model("model");
                strings(&["generate", "--model", &m, "--prompt", "hi", "--top-p", "0"])
            },
            expect: &["--top-p"],
        },
        Case {
            name: "merge_out_holds_a_model",
            setup: |s| {
                let m = s.tiny_model("model");
                let out = s.tiny_model("merged");
                let a = write_adapter(s, "adapter", &tiny_config(), &lora(&["c_attn"]));
                strings(&["merge", "--model", &m, "--adapter", &a, "--out", &out])
            },
            expect: &["merged", "already holds a model"],
        },
    ]
}

/// Every case fails cleanly, and none leaves or changes a file.
#[test]
fn every_bad_input_gets_a_one_line_error_and_changes_no_file() {
    let cases = cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names must be unique");

    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let s = Scratch::new(case.name);
                    let args = (case.setup)(&s);
                    let before = s.snapshot();
                    let start = Instant::now();
                    let out = run(&args);
                    let took = start.elapsed();
                    // With --nocapture: the table of messages (README's Troubleshooting).
                    println!("{}\t{}", case.name, crate::harness::last_line(&out));
                    let mut problem = check_failure(&out, case.expect);
                    if problem.is_none() && s.snapshot() != before {
                        problem = Some("files were created or changed".into());
                    }
                    // Every case is refused before any GPU work; a slow one is a regression
                    // (the 100 MiB line included).
                    if problem.is_none() && took > Duration::from_secs(30) {
                        problem = Some(format!("took {took:?}"));
                    }
                    if let Some(p) = problem {
                        failures.lock().unwrap().push(format!("{}: {p}", case.name));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Fields that newer PEFT versions add to adapter_config.json are ignored, not errors.
#[test]
fn adapter_config_fields_from_newer_peft_are_accepted() {
    let _gpu = crate::gpu_or_skip!();
    let s = Scratch::new("newer-peft");
    let a = write_adapter(&s, "adapter", &tiny_config(), &lora(&["c_attn"]));
    edit_adapter_config(
        std::path::Path::new(&a),
        "some_future_option",
        serde_json::json!({"nested": [1, 2]}),
    );
    edit_adapter_config(std::path::Path::new(&a), "peft_version", "9.9.9".into());
    let d = s.write("data.jsonl", GOOD_TEXT);
    let out = run(&eval_with(
        s.tiny_model("model"),
        d,
        &["--adapter", &a, "--quant", "f32"],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["loss"].as_f64().unwrap().is_finite());
}

/// A batch whose activations exceed the GPU's binding limit is refused before training,
/// after the memory estimate is printed, naming the flags to lower.
#[test]
fn a_batch_beyond_the_gpu_limits_names_what_to_lower() {
    let gpu = crate::gpu_or_skip!();
    let s = Scratch::new("too-big");
    // Enough sequences of 128 tokens that the (B*T, 4C) MLP activation (C = 64) exceeds one
    // binding: 1025 on lavapipe (128 MiB bindings).
    let batch = gpu.max_binding_words() / (4 * 64) / 128 + 1;
    let line = format!("{{\"text\": \"{}\"}}\n", "word ".repeat(130));
    let data = s.write("data.jsonl", line.repeat(batch));
    let b = batch.to_string();
    let args = train_with(
        &s,
        s.tiny_model("model"),
        data,
        &["--batch-size", &b, "--seq-len", "128"],
    );
    let out = run(&args);
    if let Some(p) = check_failure(&out, &["lower --batch-size or --seq-len"]) {
        panic!("{p}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("estimated GPU memory:"), "{stderr}");
    assert!(!s.path("out").exists());
}
