//! Chat templates against transformers' `apply_chat_template` (tests/fixtures/chat/cases.json,
//! made by tests/reference/make_llama_fixtures.py): Llama 3.2's and Qwen 2.5's templates on
//! multi-turn conversations, with and without a system message and a generation prompt, give
//! the same text and token ids, and the assistant mask marks each assistant turn's content and
//! its end-of-turn token.

use serde_json::Value;
use wgtune::chat::{ChatMessage, ChatTemplate, Date, RenderOptions};
use wgtune::tokenizer::Tokenizer;

use crate::fixtures::dir;

fn messages(v: &Value) -> Vec<ChatMessage> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage {
            role: m["role"].as_str().unwrap().into(),
            content: m["content"].as_str().unwrap().into(),
        })
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn templates_render_and_tokenize_as_transformers() {
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(dir("chat/cases.json")).unwrap()).unwrap();
    for (model, spec) in cases.as_object().unwrap() {
        let mdir = dir(&format!("models/{model}"));
        let template = ChatTemplate::from_dir(&mdir)
            .unwrap()
            .expect("a chat template");
        let tok = Tokenizer::from_dir(&mdir).unwrap();
        assert_eq!(
            template.eos_token().and_then(|t| tok.token_id(t)),
            spec["eot_id"].as_u64().map(|v| v as u32),
            "{model}: end-of-turn token"
        );
        let extra: Vec<(String, Value)> = spec["template_kwargs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let opts = |prompt: bool| RenderOptions {
            add_generation_prompt: prompt,
            today: None,
            extra: extra.clone(),
        };
        for case in spec["cases"].as_array().unwrap() {
            let name = format!("{model}/{}", case["name"].as_str().unwrap());
            let msgs = messages(&case["messages"]);
            let text = template.render(&msgs, &opts(false)).unwrap();
            assert_eq!(text, case["text"].as_str().unwrap(), "{name}: text");
            let (got, mask) = template.tokenize(&tok, &msgs, &opts(false)).unwrap();
            assert_eq!(got, ids(&case["ids"]), "{name}: ids");
            let want_mask: Vec<bool> = ids(&case["assistant_mask"])
                .iter()
                .map(|&m| m == 1)
                .collect();
            assert_eq!(mask, want_mask, "{name}: assistant mask");
            assert!(mask.iter().any(|&m| m), "{name}: some assistant tokens");
            let prompt = template
                .render(&msgs[..msgs.len() - 1], &opts(true))
                .unwrap();
            assert_eq!(
                prompt,
                case["gen_prompt_text"].as_str().unwrap(),
                "{name}: prompt"
            );
            assert_eq!(
                tok.encode(&prompt).unwrap(),
                ids(&case["gen_prompt_ids"]),
                "{name}"
            );
        }
    }
}

/// Llama 3's template asks `strftime_now` for today's date when no `date_string` is given,
/// and falls back to its own when the function is undefined.
#[test]
fn strftime_now_gives_the_callers_date() {
    let template = ChatTemplate::from_dir(&dir("models/llama_tiny"))
        .unwrap()
        .unwrap();
    let msgs = [ChatMessage {
        role: "user".into(),
        content: "hi".into(),
    }];
    let today = Date {
        year: 2026,
        month: 12,
        day: 2,
    };
    let with = |today| RenderOptions {
        today,
        ..Default::default()
    };
    let text = template.render(&msgs, &with(Some(today))).unwrap();
    assert!(text.contains("Today Date: 02 Dec 2026\n"), "{text}");
    let text = template.render(&msgs, &with(None)).unwrap();
    assert!(text.contains("Today Date: 26 Jul 2024\n"), "{text}");
}

/// GPT-2 has no template; a broken template and raise_exception are one-line errors.
#[test]
fn missing_and_broken_templates() {
    assert!(
        ChatTemplate::from_dir(&dir("models/tiny"))
            .unwrap()
            .is_none()
    );
    let e = ChatTemplate::from_tokenizer_config(
        Some(r#"{"chat_template": "{% if %}"}"#),
        None,
        "x/tokenizer_config.json",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("x/tokenizer_config.json: the chat template does not compile"),
        "{e}"
    );
    let t = ChatTemplate::from_tokenizer_config(
        Some(r#"{"chat_template": "{{ raise_exception('no system role') }}"}"#),
        None,
        "x/tokenizer_config.json",
    )
    .unwrap()
    .unwrap();
    let e = t
        .render(&[], &RenderOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no system role") && !e.contains('\n'), "{e}");
}

/// A `messages` JSONL file prepared for training a Llama-family model (as `wgtune train`
/// prepares it): each line is the conversation rendered with the model's template (given no
/// date, Llama 3's template takes its own, 26 Jul 2024, which the fixtures pass too), with
/// labels on the assistant tokens only; `--train-on-prompt` labels every token.
#[test]
fn messages_lines_train_on_the_assistant_tokens_of_the_template() {
    use wgtune::train::prepare::{PrepareConfig, prepare};
    use wgtune::train::settings::TrainSettings;
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(dir("chat/cases.json")).unwrap()).unwrap();
    for (model, spec) in cases.as_object().unwrap() {
        let mdir = dir(&format!("models/{model}"));
        let template = ChatTemplate::from_dir(&mdir).unwrap();
        let tok = Tokenizer::from_dir(&mdir).unwrap();
        let cases = spec["cases"].as_array().unwrap();
        let jsonl: String = cases
            .iter()
            .map(|c| serde_json::json!({"messages": c["messages"]}).to_string() + "\n")
            .collect();
        let ds = wgtune::data::parse_jsonl(&jsonl, "chat.jsonl", None).unwrap();
        for train_on_prompt in [false, true] {
            let s = TrainSettings {
                train_on_prompt,
                ..Default::default()
            };
            let cfg = PrepareConfig::for_model(&s, 4096, 1, &tok, template.clone()).unwrap();
            let prepared = prepare(&ds, &tok, &cfg, &mut |_, _| {}).unwrap();
            assert_eq!(prepared.examples.len(), cases.len(), "{model}");
            for (e, c) in prepared.examples.iter().zip(cases) {
                let name = format!("{model} {} (train_on_prompt {train_on_prompt})", c["name"]);
                let want_ids = ids(&c["ids"]);
                assert_eq!(e.ids, want_ids, "{name}: ids");
                let mask: Vec<bool> = c["assistant_mask"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_u64() == Some(1) || m.as_bool() == Some(true))
                    .collect();
                let want: Vec<i32> = want_ids
                    .iter()
                    .zip(&mask)
                    .map(|(&id, &m)| {
                        if m || train_on_prompt {
                            id as i32
                        } else {
                            -100
                        }
                    })
                    .collect();
                assert_eq!(e.labels, want, "{name}: labels");
            }
        }
    }
}
