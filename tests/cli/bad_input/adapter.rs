//! Bad-input cases: PEFT adapters (--init-adapter, --adapter) and checkpoints (--resume).

use super::*;

pub(super) fn cases() -> Vec<Case> {
    vec![
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
                let odd = ModelConfig::from_file(&fixture("models/odd/config.json")).unwrap();
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
                "not in this model (GPT-2, 2 layers)",
            ],
        },
        Case {
            name: "adapter_dora_unsupported",
            setup: |s| train_adapter(s, |d| edit_adapter_config(d, "use_dora", true.into())),
            expect: &["adapter_config.json", "DoRA adapters are not supported"],
        },
        Case {
            name: "adapter_weight_nan",
            setup: |s| {
                train_adapter(s, |d| {
                    rewrite_file(&d.join("adapter_model.safetensors"), |ts| {
                        set_value(ts, "h.0.attn.c_attn.lora_B.weight", 5, f32::NAN)
                    })
                })
            },
            expect: &[
                "adapter_model.safetensors: tensor base_model.model.transformer.h.0.attn.c_attn.lora_B.weight holds NaN at element 5",
            ],
        },
        Case {
            name: "eval_adapter_weight_inf",
            setup: |s| {
                let a = write_adapter(s, "adapter", &tiny_config(), &lora(&["c_attn"]));
                rewrite_file(
                    &std::path::Path::new(&a).join("adapter_model.safetensors"),
                    |ts| set_value(ts, "h.1.attn.c_attn.lora_A.weight", 9, f32::INFINITY),
                );
                let d = s.write("data.jsonl", GOOD_TEXT);
                eval_with(s.tiny_model("model"), d, &["--adapter", &a])
            },
            expect: &[
                "lora_A.weight holds inf at element 9",
                "the adapter is damaged",
            ],
        },
        Case {
            name: "adapter_target_regex_selects_lm_head",
            setup: |s| {
                train_adapter(s, |d| {
                    edit_adapter_config(d, "target_modules", r".*(c_attn|lm_head)".into())
                })
            },
            expect: &[
                "adapter_config.json",
                "target_modules selects lm_head, which wgtune cannot adapt",
            ],
        },
        Case {
            name: "adapter_init_pissa",
            setup: |s| {
                train_adapter(s, |d| {
                    edit_adapter_config(d, "init_lora_weights", "pissa".into())
                })
            },
            expect: &[
                "adapter_config.json",
                "init_lora_weights \"pissa\" changes the base weights",
            ],
        },
        Case {
            name: "eval_adapter_modules_to_save",
            setup: |s| {
                let a = write_adapter(s, "adapter", &tiny_config(), &lora(&["c_attn"]));
                edit_adapter_config(
                    std::path::Path::new(&a),
                    "modules_to_save",
                    serde_json::json!(["lm_head"]),
                );
                let d = s.write("data.jsonl", GOOD_TEXT);
                eval_with(s.tiny_model("model"), d, &["--adapter", &a])
            },
            expect: &["adapter_config.json: modules_to_save is [\"lm_head\"]"],
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
                let odd = ModelConfig::from_file(&fixture("models/odd/config.json")).unwrap();
                let a = write_adapter(s, "adapter", &odd, &lora(&["c_attn"]));
                let d = s.write("data.jsonl", GOOD_TEXT);
                eval_with(s.tiny_model("model"), d, &["--adapter", &a])
            },
            expect: &["adapter_model.safetensors", "another base model"],
        },
        Case {
            name: "init_adapter_with_contradicting_lora_flags",
            setup: |s| {
                let a = write_adapter(s, "adapter", &tiny_config(), &lora(&["c_attn"]));
                train_flags(
                    s,
                    &["--init-adapter", &a, "--rank", "16", "--targets", "c_fc"],
                )
            },
            expect: &[
                "adapter",
                "fixes the LoRA settings",
                "--rank (it has 8)",
                "--targets (it has c_attn)",
                "drop those flags",
            ],
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
                let c = Checkpoint {
                    lora: l.clone(),
                    params: p,
                    exp_avg: zeros.clone(),
                    exp_avg_sq: zeros,
                    state: TrainerState {
                        step: 2,
                        epoch: 0,
                        cursor: 4,
                        seed: 42,
                        total_steps: 4,
                        tokens_seen: 100,
                        train_examples: 17,
                    },
                    // The settings of the command below: only the data differs.
                    settings: TrainSettings {
                        batch_size: 2,
                        seq_len: Some(32),
                        max_steps: Some(4),
                        ..Default::default()
                    },
                    data_fingerprint: "0123456789abcdef".into(),
                    base_model: "tiny".into(),
                };
                let ck = s.path("ck");
                checkpoint::save(&ck, &c, &cfg).unwrap();
                train_flags(s, &["--resume", &ck.display().to_string()])
            },
            expect: &[
                "ck",
                "other training data (17 examples",
                "resume with the same data file",
            ],
        },
    ]
}
