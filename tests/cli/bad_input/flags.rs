//! Bad-input cases: Flags out of range or contradicting the model or the files.

use super::*;

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "flag_rank_zero",
            setup: |s| train_flags(s, &["--rank", "0"]),
            expect: &["--rank", "at least 1"],
        },
        Case {
            name: "flag_seq_len_beyond_n_positions",
            setup: |s| train_flags(s, &["--seq-len", "4096"]),
            expect: &["--seq-len 4096", "context of 128 positions"],
        },
        Case {
            name: "flag_unknown_target_module",
            setup: |s| train_flags(s, &["--targets", "q_proj"]),
            expect: &["\"q_proj\"", "c_attn, c_proj, c_fc, all-linear"],
        },
        Case {
            name: "flag_target_layer_not_in_model",
            setup: |s| train_flags(s, &["--targets", "transformer.h.7.attn.c_attn"]),
            expect: &["h.7.attn.c_attn", "not in this model (GPT-2, 2 layers)"],
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
            name: "flag_max_steps_negative",
            setup: |s| train_flags(s, &["--max-steps", "-1"]),
            expect: &["--max-steps must be at least 1, got -1"],
        },
        Case {
            name: "flag_seed_negative",
            setup: |s| train_flags(s, &["--seed", "-7"]),
            expect: &["--seed must be 0 or more, got -7"],
        },
        Case {
            name: "flag_val_batches_negative",
            setup: |s| train_flags(s, &["--val-batches", "-2"]),
            expect: &["--val-batches -2:", "1 or more"],
        },
        Case {
            name: "eval_batch_size_negative",
            setup: |s| {
                let d = s.write("data.jsonl", GOOD_TEXT);
                eval_with(s.tiny_model("model"), d, &["--batch-size", "-1"])
            },
            expect: &["--batch-size must be at least 1, got -1"],
        },
        Case {
            name: "generate_max_new_tokens_negative",
            setup: |s| {
                let m = s.tiny_model("model");
                strings(&[
                    "generate",
                    "--model",
                    &m,
                    "--prompt",
                    "hi",
                    "--max-new-tokens",
                    "-5",
                ])
            },
            expect: &["--max-new-tokens must be 0 or more, got -5"],
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
            expect: &["--seq-len 500", "context of 128 positions"],
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
