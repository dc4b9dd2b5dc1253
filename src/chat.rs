//! Chat templates: a model's `messages` rendering from its `tokenizer_config.json` (or
//! `chat_template.jinja`), as transformers' `apply_chat_template` renders it (Jinja with
//! `trim_blocks` and `lstrip_blocks`, the special tokens as variables, `raise_exception`, and
//! `strftime_now` when the caller gives a date), and the assistant-token mask that
//! assistant-only training uses.
//!
//! The mask comes from rendering the conversation incrementally, as trl and transformers do
//! for templates without `{% generation %}` markers: the tokens that turn `i`'s assistant
//! message adds after the generation prompt of `messages[..i]` are that turn's, up to and
//! including the end-of-turn token (the tokenizer's `eos_token`); what follows it (Qwen's
//! newline) is not.

use minijinja::{Environment, Error, ErrorKind, Value, context};
use serde::Serialize;
use serde_json::Value as Json;

use crate::error::Result;
use crate::tokenizer::Tokenizer;
use crate::{bail, err};

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A civil date for `strftime_now` (the caller's clock: the library reads none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date {
    pub year: i32,
    /// 1 ..= 12
    pub month: u32,
    /// 1 ..= 31
    pub day: u32,
}

/// A model's chat template and the special tokens it renders with.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatTemplate {
    source: String,
    /// `bos_token`, `eos_token`, `unk_token`, `pad_token` as tokenizer_config.json gives them.
    special: Vec<(&'static str, String)>,
    /// Where the file came from, for errors.
    origin: String,
}

/// What one rendering gets besides the messages.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    pub add_generation_prompt: bool,
    /// Defines `strftime_now` (without it, templates such as Llama 3's take their fallback).
    pub today: Option<Date>,
    /// Extra template variables (`date_string`, ...), as apply_chat_template's kwargs.
    pub extra: Vec<(String, Json)>,
}

impl ChatTemplate {
    /// The template of a `tokenizer_config.json` (text; `origin` names it in errors), or
    /// `template_file` (the text of `chat_template.jinja`, which transformers 5 writes beside
    /// it) when given; `None` when the model has none (GPT-2).
    pub fn from_tokenizer_config(
        config: Option<&str>,
        template_file: Option<&str>,
        origin: &str,
    ) -> Result<Option<Self>> {
        let cfg: Json = match config {
            Some(text) => {
                serde_json::from_str(text).map_err(|e| err!("{origin}: not valid JSON: {e}"))?
            }
            None => Json::Null,
        };
        let source = match (template_file, cfg.get("chat_template")) {
            (Some(t), _) => t.to_string(),
            (None, None | Some(Json::Null)) => return Ok(None),
            (None, Some(Json::String(t))) => t.clone(),
            // A list of named templates: the "default" one, as transformers picks.
            (None, Some(Json::Array(items))) => items
                .iter()
                .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Json::as_str)
                .ok_or_else(|| err!("{origin}: chat_template lists no \"default\" template"))?
                .to_string(),
            (None, Some(_)) => bail!("{origin}: chat_template must be a string"),
        };
        let special = ["bos_token", "eos_token", "unk_token", "pad_token"]
            .into_iter()
            .filter_map(|k| token_text(cfg.get(k)?).map(|t| (k, t)))
            .collect();
        let template = Self {
            source,
            special,
            origin: origin.to_string(),
        };
        // Compile once now, so that a broken template is reported when the model loads.
        template.env()?;
        Ok(Some(template))
    }

    /// The model directory's template: chat_template.jinja, else tokenizer_config.json's.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Option<Self>> {
        let read = |name: &str| -> Result<Option<String>> {
            let p = dir.join(name);
            if !p.exists() {
                return Ok(None);
            }
            std::fs::read_to_string(&p)
                .map(Some)
                .map_err(|e| err!("{}: cannot read: {e}", p.display()))
        };
        let (cfg, jinja) = (read("tokenizer_config.json")?, read("chat_template.jinja")?);
        let origin = dir.join("tokenizer_config.json").display().to_string();
        Self::from_tokenizer_config(cfg.as_deref(), jinja.as_deref(), &origin)
    }

    /// The end-of-turn text: the tokenizer's eos_token (`<|im_end|>`, `<|eot_id|>`).
    pub fn eos_token(&self) -> Option<&str> {
        self.special
            .iter()
            .find(|(k, _)| *k == "eos_token")
            .map(|(_, t)| t.as_str())
    }

    fn env(&self) -> Result<Environment<'_>> {
        let mut env = Environment::new();
        // transformers compiles templates with these two on.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template("chat", &self.source)
            .map_err(|e| err!("{}: the chat template does not compile: {e}", self.origin))?;
        Ok(env)
    }

    /// The conversation as text.
    pub fn render(&self, messages: &[ChatMessage], opts: &RenderOptions) -> Result<String> {
        let mut env = self.env()?;
        if let Some(today) = opts.today {
            env.add_function("strftime_now", move |fmt: String| strftime(today, &fmt));
        }
        let mut vars: serde_json::Map<String, Json> = self
            .special
            .iter()
            .map(|(k, v)| (k.to_string(), Json::String(v.clone())))
            .collect();
        for (k, v) in &opts.extra {
            vars.insert(k.clone(), v.clone());
        }
        let ctx = context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => opts.add_generation_prompt,
            ..Value::from_serialize(&vars)
        };
        let template = env.get_template("chat").expect("added above");
        template.render(ctx).map_err(|e| {
            err!(
                "{}: the chat template failed: {}",
                self.origin,
                error_line(&e)
            )
        })
    }

    /// The conversation so far, then the template's generation prompt (the assistant's header):
    /// what a model continues, as `apply_chat_template(..., add_generation_prompt=True)`.
    pub fn render_prompt(&self, messages: &[ChatMessage]) -> Result<String> {
        let opts = RenderOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        self.render(messages, &opts)
    }

    /// Token ids of the conversation (no special tokens added beyond the template's) and,
    /// per id, whether it is an assistant token (see the module's doc).
    pub fn tokenize(
        &self,
        tok: &Tokenizer,
        messages: &[ChatMessage],
        opts: &RenderOptions,
    ) -> Result<(Vec<u32>, Vec<bool>)> {
        let with = |n: usize, gen_prompt: bool| -> Result<Vec<u32>> {
            let opts = RenderOptions {
                add_generation_prompt: gen_prompt,
                ..opts.clone()
            };
            tok.encode(&self.render(&messages[..n], &opts)?)
        };
        let ids = with(messages.len(), false)?;
        let mut mask = vec![false; ids.len()];
        let eot = self.eos_token().and_then(|t| tok.token_id(t));
        for (i, m) in messages.iter().enumerate() {
            if m.role != "assistant" {
                continue;
            }
            let (before, upto) = (with(i, true)?, with(i + 1, false)?);
            if !upto.starts_with(&before) || !ids.starts_with(&upto) {
                bail!(
                    "{}: the chat template does not render messages[{i}] as an extension of the messages before it, so its assistant tokens cannot be told apart",
                    self.origin
                );
            }
            let turn = &upto[before.len()..];
            let end = eot
                .and_then(|e| turn.iter().rposition(|&id| id == e))
                .map_or(turn.len(), |p| p + 1);
            mask[before.len()..before.len() + end].fill(true);
        }
        Ok((ids, mask))
    }
}

/// A special token's text: a string, or an AddedToken object's `content`.
fn token_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// A Jinja error on one line (minijinja's Display may add context lines).
fn error_line(e: &Error) -> String {
    let mut s = e.to_string();
    if let Some(line) = e.line() {
        s = format!("{s} (template line {line})");
    }
    s.replace('\n', " ")
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Python's `strftime` for the date codes chat templates use (`%d %b %Y` in Llama 3's).
fn strftime(d: Date, fmt: &str) -> std::result::Result<String, Error> {
    let month = MONTHS[(d.month.clamp(1, 12) - 1) as usize];
    let weekday = DAYS[weekday(d)];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out += &format!("{:02}", d.day),
            Some('e') => out += &format!("{:2}", d.day),
            Some('m') => out += &format!("{:02}", d.month),
            Some('Y') => out += &d.year.to_string(),
            Some('y') => out += &format!("{:02}", d.year.rem_euclid(100)),
            Some('b') => out += &month[..3],
            Some('B') => out += month,
            Some('a') => out += &weekday[..3],
            Some('A') => out += weekday,
            Some('%') => out.push('%'),
            other => {
                let code = other.map_or(String::new(), String::from);
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: %{code} is not supported"),
                ));
            }
        }
    }
    Ok(out)
}

/// 0 = Monday (days from the civil date, Howard Hinnant's algorithm; 1970-01-01 a Thursday).
fn weekday(d: Date) -> usize {
    let y = d.year as i64 - i64::from(d.month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = d.month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d.day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    (days + 3).rem_euclid(7) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_dates() {
        let d = Date {
            year: 2024,
            month: 7,
            day: 26,
        };
        assert_eq!(strftime(d, "%d %b %Y").unwrap(), "26 Jul 2024");
        assert_eq!(
            strftime(d, "%A %B %e, %y %%").unwrap(),
            "Friday July 26, 24 %"
        );
        assert!(strftime(d, "%H").is_err());
    }
}
