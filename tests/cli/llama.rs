//! The Llama family through the CLI as users run it, on the tiny Llama and Qwen2 fixtures:
//! `train` on chat data (the model's template, assistant tokens only) writes a PEFT adapter
//! with the family's default targets; `eval`, `generate`, `merge` and `--init-adapter` take
//! it; the merged model evaluates as the base with the adapter.

use std::process::Output;

use super::harness::{Scratch, fixture, run};

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap()
}

/// (fixture, PEFT's trainable-parameters line for q_proj + v_proj at r 8)
const MODELS: [(&str, &str); 2] = [
    (
        "llama_tiny",
        "trainable params: 4,032 || all params: 240,120 || trainable%: 1.6792",
    ),
    (
        "qwen2_tiny",
        "trainable params: 3,200 || all params: 119,080 || trainable%: 2.6873",
    ),
];

#[test]
fn train_eval_generate_merge_a_llama_family_adapter() {
    if crate::common::gpu().is_none() {
        return;
    }
    for (name, line) in MODELS {
        let s = Scratch::new(&format!("llama-{name}"));
        let model = s.fixture_model(name, "model");
        let data = fixture("data/messages.jsonl").display().to_string();
        let out = s.path("out").display().to_string();
        let train = ok(run(&args(&[
            "train",
            "--model",
            &model,
            "--data",
            &data,
            "--quant",
            "f32",
            "--lr",
            "1e-2",
            "--max-steps",
            "4",
            "--batch-size",
            "2",
            "--out",
            &out,
        ])));
        let stderr = String::from_utf8_lossy(&train.stderr);
        assert!(stderr.contains(line), "{name}: {stderr}");
        let summary = json(&train);
        assert_eq!(summary["steps"], 4, "{name}");
        assert!(summary["final_loss"].as_f64().unwrap().is_finite());

        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.path("out/adapter_config.json")).unwrap())
                .unwrap();
        assert_eq!(
            config["target_modules"],
            serde_json::json!(["q_proj", "v_proj"])
        );
        assert_eq!(config["fan_in_fan_out"], false, "{name}: nn.Linear");
        assert_eq!(config["base_model_name_or_path"], model.as_str());

        let eval = |data: &str, extra: &[&str]| {
            let mut a = args(&["eval", "--data", data, "--quant", "f32"]);
            a.extend(args(extra));
            json(&ok(run(&a)))
        };
        let base = eval(&data, &["--model", &model]);
        let tuned = eval(&data, &["--model", &model, "--adapter", &out]);
        // The chat template's assistant tokens of the three conversations are what counts.
        assert_eq!(base["tokens"], tuned["tokens"], "{name}");
        assert!(
            tuned["loss"].as_f64().unwrap() < base["loss"].as_f64().unwrap(),
            "{name}: four steps at lr 1e-2 lower the loss on their own data: {base} -> {tuned}"
        );

        // compare makes each line an example as eval does (the chat template, assistant
        // tokens only), and prompts both models with the conversation before its last
        // assistant turn, rendered with the generation prompt.
        let c = json(&ok(run(&args(&[
            "compare",
            "--model",
            &model,
            "--adapter",
            &out,
            "--data",
            &data,
            "--quant",
            "f32",
            "--max-new-tokens",
            "3",
            "--json",
        ]))));
        let lines: Vec<String> = std::fs::read_to_string(&data)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let rows = c["rows"].as_array().unwrap();
        assert_eq!(rows.len(), lines.len(), "{name}: {c}");
        for row in rows {
            let line = row["line"].as_u64().unwrap() as usize;
            let one = s.write(&format!("line{line}.jsonl"), &lines[line - 1]);
            let one_base = eval(&one, &["--model", &model]);
            let one_tuned = eval(&one, &["--model", &model, "--adapter", &out]);
            for (what, got, want) in [
                ("base", &row["base_loss"], &one_base["loss"]),
                ("tuned", &row["tuned_loss"], &one_tuned["loss"]),
            ] {
                let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs(),
                    "{name} line {line} {what}: compare {g} vs eval {w}"
                );
            }
            assert_eq!(row["tokens"], one_base["tokens"], "{name} line {line}");
            let msgs: serde_json::Value = serde_json::from_str(&lines[line - 1]).unwrap();
            let last = msgs["messages"]
                .as_array()
                .unwrap()
                .iter()
                .rfind(|m| m["role"] == "assistant")
                .unwrap()
                .clone();
            assert_eq!(row["reference"], last["content"], "{name} line {line}");
            let prompt = row["prompt"].as_str().unwrap();
            assert!(
                [
                    "<|start_header_id|>assistant<|end_header_id|>\n\n",
                    "<|im_start|>assistant\n"
                ]
                .iter()
                .any(|g| prompt.ends_with(g))
                    && !prompt.contains(last["content"].as_str().unwrap()),
                "{name} line {line}: the prompt is the conversation before the answer, with the generation prompt: {prompt:?}"
            );
        }

        let merged = s.path("merged").display().to_string();
        ok(run(&args(&[
            "merge",
            "--model",
            &model,
            "--adapter",
            &out,
            "--out",
            &merged,
        ])));
        let of_merged = eval(&data, &["--model", &merged]);
        let (a, b) = (
            of_merged["loss"].as_f64().unwrap(),
            tuned["loss"].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-4 * b,
            "{name}: merged {a} vs adapter {b}"
        );

        let generate = |extra: &[&str]| {
            let mut g = args(&[
                "generate",
                "--model",
                &model,
                "--quant",
                "f32",
                "--prompt",
                "Hello",
                "--max-new-tokens",
                "6",
            ]);
            g.extend(args(extra));
            ok(run(&g)).stdout
        };
        let tuned_gen = generate(&["--adapter", &out]);
        assert!(String::from_utf8_lossy(&tuned_gen).starts_with("Hello"));
        // The chat template's rendering (the default) and the raw text prompt the base model
        // differently: the greedy continuations of the same prompt differ.
        assert_ne!(
            generate(&[]),
            generate(&["--ignore-chat-template"]),
            "{name}: --ignore-chat-template changes nothing"
        );

        // Training continues from the adapter, which fixes the LoRA settings.
        let more = s.path("more").display().to_string();
        let cont = ok(run(&args(&[
            "train",
            "--model",
            &model,
            "--data",
            &data,
            "--quant",
            "f32",
            "--max-steps",
            "1",
            "--init-adapter",
            &out,
            "--out",
            &more,
        ])));
        assert!(
            String::from_utf8_lossy(&cont.stderr).contains(line),
            "{name}"
        );
    }
}

/// A target of the other family is refused with the valid names, before any GPU work.
#[test]
fn a_gpt2_target_on_a_llama_model_is_refused_by_name() {
    let s = Scratch::new("llama-bad-target");
    let model = s.fixture_model("llama_tiny", "model");
    let out = run(&args(&[
        "train",
        "--model",
        &model,
        "--targets",
        "c_attn",
        "--out",
        &s.path("out").display().to_string(),
    ]));
    let why = super::harness::check_failure(&out, &["c_attn", "Llama", "q_proj, k_proj"]);
    assert!(why.is_none(), "{}", why.unwrap());
    assert!(!s.path("out").exists());
}
