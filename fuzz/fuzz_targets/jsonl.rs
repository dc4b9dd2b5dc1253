//! JSONL training data: format detection (auto and each forced format), the bytes path that
//! reports invalid UTF-8, and tokenization of the parsed lines with the tiny fixture tokenizer.
//!
//! Beyond "no panic": forced parsing of the detected format gives the same rows, segments
//! have the shape of their format (the alpaca prompt is its template with the fields put in
//! exactly once), labels are as long as ids, at most `max_len`, either −100 or the id,
//! ids within the vocabulary, EOS last unless truncated, and truncation keeps a prefix.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wgtune::data::{Dataset, Format, Segments, parse_jsonl, parse_jsonl_bytes, tokenize};
use wgtune::data::IGNORE_INDEX;
use wgtune::tokenizer::Tokenizer;

const FORMATS: [Format; 4] = [
    Format::Text,
    Format::PromptCompletion,
    Format::Messages,
    Format::Alpaca,
];

/// Lengths of the alpaca prompt with empty fields: (without input, with an input).
fn alpaca_template_lens() -> (usize, usize) {
    static LENS: OnceLock<(usize, usize)> = OnceLock::new();
    *LENS.get_or_init(|| {
        let prompt_len = |line: &str| parse_jsonl(line, "t", None).unwrap().rows[0].1[0].0.len();
        (
            prompt_len(r#"{"instruction":"","output":""}"#),
            prompt_len(r#"{"instruction":"","input":"x","output":""}"#) - 1,
        )
    })
}

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let bytes = include_bytes!("../../tests/fixtures/models/tiny/tokenizer.json");
        Tokenizer::from_json_bytes(bytes, Path::new("tiny/tokenizer.json")).unwrap()
    })
}

fn check_rows(d: &Dataset, text: &str) {
    let n_lines = text.lines().count();
    let mut prev = 0;
    for (line, segs) in &d.rows {
        assert!(*line > prev && *line <= n_lines, "line {line} after {prev}");
        prev = *line;
        check_segments(d.format, segs);
    }
}

fn check_segments(f: Format, segs: &Segments) {
    let trained: Vec<bool> = segs.iter().map(|s| s.1).collect();
    match f {
        Format::Text => assert_eq!(trained, [true]),
        Format::PromptCompletion => assert_eq!(trained, [false, true]),
        Format::Alpaca => {
            assert_eq!(trained, [false, true]);
            let prompt = &segs[0].0;
            assert!(prompt.starts_with("Below is an instruction"));
            assert!(prompt.ends_with("### Response:\n"));
        }
        Format::Messages => {
            assert!(!segs.is_empty() && segs.len().is_multiple_of(2));
            for pair in segs.chunks(2) {
                assert!(!pair[0].1, "a role is never trained");
                assert!(pair[0].0.ends_with(": ") && pair[1].0.ends_with('\n'));
                assert_eq!(pair[1].1, pair[0].0 == "assistant: ");
            }
        }
    }
}

/// The alpaca prompt is its template with each field put in once (a field's text that looks
/// like a placeholder stays as it is, as Python's `str.format` does).
fn check_alpaca(text: &str, d: &Dataset) {
    let lines: Vec<&str> = text.lines().collect();
    for (line, segs) in &d.rows {
        let Ok(serde_json::Value::Object(o)) = serde_json::from_str(lines[line - 1]) else {
            panic!("row {line} is not an object");
        };
        let field = |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let (instruction, input) = (field("instruction"), field("input"));
        let (no_input, with_input) = alpaca_template_lens();
        let want = if input.is_empty() {
            no_input + instruction.len()
        } else {
            with_input + instruction.len() + input.len()
        };
        assert_eq!(segs[0].0.len(), want, "alpaca prompt of line {line}");
    }
}

fn check_tokens(d: &Dataset) {
    let tok = tokenizer();
    let vocab = tok.vocab_size() as u32;
    let eos = tok.eos_id().unwrap();
    for (line, segs) in d.rows.iter().take(8) {
        let full = match tokenize(tok, segs, eos, false, usize::MAX, *line) {
            Ok(e) => e,
            Err(e) => panic!("tokenize failed: {}", e.0),
        };
        assert_eq!(full.ids.len(), full.labels.len());
        assert_eq!(full.line, *line);
        assert_eq!(*full.ids.last().unwrap(), eos);
        let mut n = 0;
        for (text, trained) in segs {
            let ids = tok.encode(text).unwrap();
            assert_eq!(ids, full.ids[n..n + ids.len()]);
            for (&id, &label) in ids.iter().zip(&full.labels[n..n + ids.len()]) {
                assert!(id < vocab, "id {id} outside the vocabulary of {vocab}");
                assert_eq!(label, if *trained { id as i32 } else { IGNORE_INDEX });
            }
            n += ids.len();
        }
        assert_eq!(n + 1, full.ids.len());
        let eos_trained = segs.last().is_some_and(|s| s.1);
        assert_eq!(
            *full.labels.last().unwrap(),
            if eos_trained {
                eos as i32
            } else {
                IGNORE_INDEX
            }
        );
        // Byte-level BPE loses nothing: the ids decode to the segments' text.
        let text: String = segs.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(tok.decode(&full.ids[..n]).unwrap(), text);
        // With train_on_prompt every label is its id; truncation keeps a prefix.
        let max_len = full.ids.len() / 2 + (line % 3);
        let cut = tokenize(tok, segs, eos, true, max_len, *line).unwrap();
        assert_eq!(cut.ids.len(), cut.labels.len());
        assert_eq!(cut.ids.len(), max_len.min(full.ids.len()));
        assert_eq!(cut.ids, full.ids[..cut.ids.len()]);
        assert!(
            cut.ids
                .iter()
                .zip(&cut.labels)
                .all(|(&i, &l)| l == i as i32)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    // The bytes path: invalid UTF-8 is an error naming the line of the first bad byte.
    let from_bytes = parse_jsonl_bytes(data, "f.jsonl", None);
    let Ok(text) = std::str::from_utf8(data) else {
        let e = from_bytes.expect_err("invalid UTF-8 must be an error").0;
        let bad = std::str::from_utf8(data).unwrap_err().valid_up_to();
        let line = 1 + data[..bad].iter().filter(|&&b| b == b'\n').count();
        assert_eq!(e, format!("f.jsonl:{line}: not valid UTF-8"));
        return;
    };
    let auto = parse_jsonl(text, "f.jsonl", None);
    match (&auto, &from_bytes) {
        (Ok(a), Ok(b)) => assert_eq!((a.format, &a.rows), (b.format, &b.rows)),
        (Err(a), Err(b)) => assert_eq!(a.0, b.0),
        _ => panic!("parse_jsonl and parse_jsonl_bytes disagree"),
    }
    for f in FORMATS {
        let forced = parse_jsonl(text, "f.jsonl", Some(f));
        if let Ok(d) = &forced {
            assert_eq!(d.format, f);
            check_rows(d, text);
            if f == Format::Alpaca {
                check_alpaca(text, d);
            }
        }
        if let Ok(a) = &auto
            && a.format == f
        {
            // Forcing the detected format accepts the same file, with the same rows.
            let d = forced.expect("forcing the detected format must succeed");
            assert_eq!(d.rows, a.rows);
        }
    }
    match &auto {
        Ok(d) => check_tokens(d),
        Err(e) => assert!(
            e.0.starts_with("f.jsonl") && !e.0.contains('\n'),
            "a one-line error naming the file: {:?}",
            e.0
        ),
    }
});
