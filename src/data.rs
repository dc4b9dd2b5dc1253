//! Training and evaluation data: JSONL in four formats, turned into token ids and labels.
//!
//! | format | line | trained tokens |
//! |---|---|---|
//! | text | `{"text"}` | all |
//! | prompt-completion | `{"prompt","completion"}` | the completion |
//! | messages | `{"messages":[{"role","content"}]}` | assistant contents |
//! | alpaca | `{"instruction","input"?,"output"}` | the output |
//!
//! Each line becomes segments, tokenized separately and concatenated, each trained or not;
//! EOS is appended (trained when the last segment is). A label is the token id where
//! trained and −100 elsewhere; with `train_on_prompt` every token is trained.
//! Messages render as `"{role}: "` (never trained) then `content + "\n"`; alpaca renders the
//! Stanford Alpaca prompt. `tests/reference/make_fixtures.py` implements the same rules.

use std::path::Path;

use serde_json::Value;

use crate::error::Result;
use crate::tokenizer::Tokenizer;
use crate::{bail, err};

/// The label of a token that is not trained: it contributes neither loss nor gradient
/// (torch's default `ignore_index`, which the cross-entropy kernel skips).
pub const IGNORE_INDEX: i32 = -100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    PromptCompletion,
    Messages,
    Alpaca,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "text" => Ok(Format::Text),
            "prompt-completion" => Ok(Format::PromptCompletion),
            "messages" => Ok(Format::Messages),
            "alpaca" => Ok(Format::Alpaca),
            _ => Err(format!(
                "unknown format {s:?}: use auto, text, prompt-completion, messages or alpaca"
            )),
        }
    }
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::PromptCompletion => "prompt-completion",
            Format::Messages => "messages",
            Format::Alpaca => "alpaca",
        }
    }

    /// The format a JSON object's keys indicate.
    fn detect(obj: &serde_json::Map<String, Value>) -> Option<Format> {
        if obj.contains_key("messages") {
            Some(Format::Messages)
        } else if obj.contains_key("prompt") && obj.contains_key("completion") {
            Some(Format::PromptCompletion)
        } else if obj.contains_key("instruction") && obj.contains_key("output") {
            Some(Format::Alpaca)
        } else if obj.contains_key("text") {
            Some(Format::Text)
        } else {
            None
        }
    }
}

const ALPACA_WITH_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
const ALPACA_NO_INPUT: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

/// One line of text as (segment, trained) pairs.
pub type Segments = Vec<(String, bool)>;

/// One example: token ids and their labels (−100 where not trained).
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub ids: Vec<u32>,
    pub labels: Vec<i32>,
    /// 1-based line in the source file.
    pub line: usize,
}

/// A parsed JSONL file: its format and each line's segments.
#[derive(Debug)]
pub struct Dataset {
    pub format: Format,
    pub rows: Vec<(usize, Segments)>,
}

/// The longest line accepted. Only the first `--seq-len` tokens (at most 1024 for GPT-2,
/// a few KiB of text) of a line are used, and tokenizing a huge line would take minutes.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// Parse JSONL text; `format` None detects it from the first line. `name` labels errors.
pub fn parse_jsonl(text: &str, name: &str, format: Option<Format>) -> Result<Dataset> {
    let mut fmt = format;
    let mut rows = Vec::new();
    for (n, line) in numbered_lines(text) {
        rows.push((n, parse_line(line, name, n, format, &mut fmt)?));
    }
    finish(name, fmt, rows)
}

/// Every bad line of JSONL text, not only the first (at most `limit` messages), as
/// [`parse_jsonl`] words them: what the web app lists under the file.
pub fn jsonl_errors(text: &str, name: &str, format: Option<Format>, limit: usize) -> Vec<String> {
    let mut fmt = format;
    let mut errors = Vec::new();
    let mut any = false;
    for (n, line) in numbered_lines(text) {
        any = true;
        if let Err(e) = parse_line(line, name, n, format, &mut fmt) {
            errors.push(e.to_string());
            if errors.len() == limit {
                break;
            }
        }
    }
    if !any && let Err(e) = finish(name, fmt, Vec::new()) {
        errors.push(e.to_string());
    }
    errors
}

/// The non-blank lines with their 1-based numbers (a leading byte-order mark, which editors
/// on Windows may write, is skipped).
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim().is_empty())
}

/// One line's segments. `forced` is the format the user chose; `fmt` the one in force
/// (detected from the first good line when none was forced).
fn parse_line(
    line: &str,
    name: &str,
    n: usize,
    forced: Option<Format>,
    fmt: &mut Option<Format>,
) -> Result<Segments> {
    if line.len() > MAX_LINE_BYTES {
        bail!(
            "{name}:{n}: the line is {:.1} MiB, more than the {} MiB wgtune reads (only the first --seq-len tokens are used): split or shorten it",
            line.len() as f64 / (1024.0 * 1024.0),
            MAX_LINE_BYTES >> 20
        );
    }
    let value: Value = serde_json::from_str(line).map_err(|e| {
        // serde's own position is "line 1" of the one line it was given: keep the column.
        let text = e.to_string();
        let what = text.split(" at line ").next().unwrap_or(&text);
        err!(
            "{name}:{n}: invalid JSON at column {}: {what}; each line must be one JSON object",
            e.column()
        )
    })?;
    let Value::Object(obj) = value else {
        bail!("{name}:{n}: expected a JSON object, found {}", kind(&value));
    };
    let found = Format::detect(&obj);
    let f = match (*fmt, found) {
        (Some(f), _) => f,
        (None, Some(f)) => {
            *fmt = Some(f);
            f
        }
        (None, None) => bail!(
            "{name}:{n}: cannot tell the format: expected \"text\", \"prompt\"+\"completion\", \"messages\" or \"instruction\"+\"output\" keys"
        ),
    };
    if forced.is_none() && found.is_some_and(|g| g != f) {
        bail!(
            "{name}:{n}: this line is {} but the file started as {} (mixed formats); pass --format to choose",
            found.unwrap().name(),
            f.name()
        );
    }
    segments(&obj, f).map_err(|e| err!("{name}:{n}: {e}"))
}

fn finish(name: &str, fmt: Option<Format>, rows: Vec<(usize, Segments)>) -> Result<Dataset> {
    let Some(format) = fmt else {
        bail!(
            "{name}: no data (the file is empty or only blank lines); put one JSON object per line, e.g. {{\"text\": \"...\"}}"
        );
    };
    Ok(Dataset { format, rows })
}

/// Read and parse a JSONL file (native).
pub fn read_jsonl(path: &Path, format: Option<Format>) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| err!("{}: cannot read: {e}", path.display()))?;
    parse_jsonl_bytes(&bytes, &path.display().to_string(), format)
}

/// Parse JSONL bytes, reporting the line of the first invalid UTF-8 sequence.
pub fn parse_jsonl_bytes(bytes: &[u8], name: &str, format: Option<Format>) -> Result<Dataset> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        err!("{name}:{line}: not valid UTF-8")
    })?;
    parse_jsonl(text, name, format)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field<'a>(
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
) -> std::result::Result<&'a str, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "field \"{key}\" must be a string, found {}",
            kind(other)
        )),
        None => Err(format!("missing field \"{key}\"")),
    }
}

fn segments(
    obj: &serde_json::Map<String, Value>,
    f: Format,
) -> std::result::Result<Segments, String> {
    Ok(match f {
        Format::Text => vec![(string_field(obj, "text")?.to_string(), true)],
        Format::PromptCompletion => vec![
            (string_field(obj, "prompt")?.to_string(), false),
            (string_field(obj, "completion")?.to_string(), true),
        ],
        Format::Alpaca => {
            let instruction = string_field(obj, "instruction")?;
            let input = match obj.get("input") {
                None | Some(Value::Null) => "",
                Some(Value::String(s)) => s,
                Some(other) => {
                    return Err(format!(
                        "field \"input\" must be a string, found {}",
                        kind(other)
                    ));
                }
            };
            // Fill the template once, as Python's str.format: an instruction that contains
            // "{input}" keeps it as written.
            let (head, tail) = if input.is_empty() {
                ALPACA_NO_INPUT
            } else {
                ALPACA_WITH_INPUT
            }
            .split_once("{instruction}")
            .expect("the template has {instruction}");
            let prompt = match tail.split_once("{input}") {
                Some((mid, end)) => format!("{head}{instruction}{mid}{input}{end}"),
                None => format!("{head}{instruction}{tail}"),
            };
            vec![
                (prompt, false),
                (string_field(obj, "output")?.to_string(), true),
            ]
        }
        Format::Messages => {
            let Some(Value::Array(msgs)) = obj.get("messages") else {
                return Err(
                    "field \"messages\" must be an array of {\"role\",\"content\"} objects".into(),
                );
            };
            if msgs.is_empty() {
                return Err("\"messages\" is empty".into());
            }
            let mut segs = Vec::new();
            for (j, m) in msgs.iter().enumerate() {
                let Value::Object(m) = m else {
                    return Err(format!(
                        "messages[{j}] must be an object, found {}",
                        kind(m)
                    ));
                };
                let role = string_field(m, "role").map_err(|e| format!("messages[{j}]: {e}"))?;
                let content =
                    string_field(m, "content").map_err(|e| format!("messages[{j}]: {e}"))?;
                segs.push((format!("{role}: "), false));
                segs.push((format!("{content}\n"), role == "assistant"));
            }
            segs
        }
    })
}

/// A `messages` line's (role, content) pairs, from its segments: the inverse of how
/// [`parse_jsonl`] lays a message out (`"{role}: "`, then `"{content}\n"`), so that a model
/// with a chat template renders the conversation itself.
pub fn chat_messages(segs: &Segments) -> Vec<(String, String)> {
    segs.chunks(2)
        .map(|pair| {
            let role = pair[0].0.strip_suffix(": ").unwrap_or(&pair[0].0);
            let content = pair
                .get(1)
                .map_or("", |c| c.0.strip_suffix('\n').unwrap_or(&c.0));
            (role.to_string(), content.to_string())
        })
        .collect()
}

/// Tokenize one line's segments: ids, labels, EOS appended (trained like the last segment,
/// or always with `train_on_prompt`), truncated to `max_len` tokens.
pub fn tokenize(
    tok: &Tokenizer,
    segs: &Segments,
    eos: u32,
    train_on_prompt: bool,
    max_len: usize,
    line: usize,
) -> Result<Example> {
    let mut ids = Vec::new();
    let mut labels = Vec::new();
    for (text, trained) in segs {
        for id in tok.encode(text)? {
            ids.push(id);
            labels.push(if *trained || train_on_prompt {
                id as i32
            } else {
                IGNORE_INDEX
            });
        }
    }
    let last_trained = segs.last().is_some_and(|s| s.1);
    ids.push(eos);
    labels.push(if last_trained || train_on_prompt {
        eos as i32
    } else {
        IGNORE_INDEX
    });
    ids.truncate(max_len);
    labels.truncate(max_len);
    Ok(Example { ids, labels, line })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_format_and_reports_bad_lines_with_their_numbers() {
        let d = parse_jsonl("{\"text\":\"a\"}\n\n{\"text\":\"b\"}\n", "f.jsonl", None).unwrap();
        assert_eq!(d.format, Format::Text);
        assert_eq!(d.rows.len(), 2);
        assert_eq!(d.rows[1].0, 3);
        let d = parse_jsonl("{\"prompt\":\"p\",\"completion\":\"c\"}", "f", None).unwrap();
        assert_eq!(d.rows[0].1, vec![("p".into(), false), ("c".into(), true)]);
        let d = parse_jsonl("{\"instruction\":\"i\",\"output\":\"o\"}", "f", None).unwrap();
        assert_eq!(d.format, Format::Alpaca);
        let d = parse_jsonl("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}", "f", None).unwrap();
        assert_eq!(d.rows[0].1[3], ("yo\n".into(), true));
        assert_eq!(
            chat_messages(&d.rows[0].1),
            [
                ("user".into(), "hi".into()),
                ("assistant".into(), "yo".into())
            ]
        );

        let e = |t: &str| parse_jsonl(t, "f.jsonl", None).unwrap_err().0;
        assert_eq!(
            e("{\"text\":\"a\"}\n[1]"),
            "f.jsonl:2: expected a JSON object, found an array"
        );
        assert!(e("{\"text\":\"a\"}\n{oops").starts_with("f.jsonl:2: invalid JSON"));
        assert_eq!(
            e("{\"text\":5}"),
            "f.jsonl:1: field \"text\" must be a string, found a number"
        );
        assert!(
            e("{\"text\":\"a\"}\n{\"prompt\":\"p\",\"completion\":\"c\"}")
                .contains("mixed formats")
        );
        assert!(e("\n\n").contains("no data"));
        assert!(e("{\"foo\":1}").contains("cannot tell the format"));
    }

    #[test]
    fn jsonl_errors_lists_every_bad_line_as_parse_jsonl_words_it() {
        let text = "{\"text\":\"a\"}\n[1]\n{\"text\":\"b\"}\n{oops\n{\"text\":5}\n";
        let all = jsonl_errors(text, "f.jsonl", None, 10);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], "f.jsonl:2: expected a JSON object, found an array");
        assert!(all[1].starts_with("f.jsonl:4: invalid JSON"));
        assert_eq!(
            all[2],
            "f.jsonl:5: field \"text\" must be a string, found a number"
        );
        assert_eq!(
            all[0],
            parse_jsonl(text, "f.jsonl", None).unwrap_err().0,
            "the first listed error is the one parse_jsonl stops at"
        );
        assert_eq!(jsonl_errors(text, "f.jsonl", None, 2).len(), 2);
        assert!(jsonl_errors("{\"text\":\"a\"}", "f", None, 10).is_empty());
        assert!(jsonl_errors("\n\n", "f", None, 10)[0].contains("no data"));
    }
}
