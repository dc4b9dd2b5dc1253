//! Bad-input cases: Model directories: files, safetensors, config.json, tokenizer.

use super::*;

pub(super) fn cases() -> Vec<Case> {
    vec![
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
                "a model directory holds",
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
            name: "model_config_unsupported_type",
            setup: |s| train_model(s, |d| edit_config(d, "model_type", "mistral".into())),
            expect: &[
                "config.json",
                "model_type is \"mistral\"",
                "\"llama\", \"qwen2\"",
            ],
        },
        Case {
            name: "model_config_llama_type_on_gpt2_fields",
            setup: |s| train_model(s, |d| edit_config(d, "model_type", "llama".into())),
            expect: &[
                "config.json",
                "not a Llama or Qwen2 config.json",
                "hidden_size",
            ],
        },
        Case {
            name: "model_config_invalid_json",
            setup: |s| {
                train_model(s, |d| {
                    std::fs::write(d.join("config.json"), "{\"n_embd\": ").unwrap()
                })
            },
            expect: &["config.json", "not a config.json"],
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
            // EOS moved inside the smaller vocabulary, so that the tokenizer check is the one hit.
            setup: |s| {
                train_model(s, |d| {
                    edit_config(d, "vocab_size", 500.into());
                    edit_config(d, "eos_token_id", 499.into());
                    edit_config(d, "bos_token_id", 499.into());
                })
            },
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
            name: "model_weight_nan",
            setup: |s| {
                train_model(s, |d| {
                    rewrite_weights(d, |ts| {
                        set_value(ts, "h.0.attn.c_attn.weight", 123, f32::NAN)
                    })
                })
            },
            expect: &[
                "model.safetensors: tensor transformer.h.0.attn.c_attn.weight holds NaN at element 123",
                "use another copy",
            ],
        },
        Case {
            name: "eval_model_weight_inf_f16",
            setup: |s| {
                let m = s.fixture_model("odd", "model");
                rewrite_weights(std::path::Path::new(&m), |ts| {
                    set_value(ts, "wpe.weight", 7, f32::INFINITY)
                });
                let d = s.write("data.jsonl", GOOD_TEXT);
                eval_with(m, d, &[])
            },
            expect: &[
                "model.safetensors: tensor",
                "wpe.weight holds inf at element 7",
            ],
        },
        Case {
            name: "generate_model_weight_nan_bf16",
            setup: |s| {
                let m = s.fixture_model("hubstyle", "model");
                rewrite_weights(std::path::Path::new(&m), |ts| {
                    set_value(ts, "h.1.mlp.c_proj.weight", 5, f32::NAN)
                });
                strings(&["generate", "--model", &m, "--prompt", "hi"])
            },
            expect: &["model.safetensors: tensor h.1.mlp.c_proj.weight holds NaN at element 5"],
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
    ]
}
