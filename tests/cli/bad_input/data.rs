//! Bad-input cases: JSONL training, validation and eval data.

use super::*;

pub(super) fn cases() -> Vec<Case> {
    vec![
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
    ]
}
