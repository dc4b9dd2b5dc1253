//! GPT-2's byte-level BPE through the `tokenizers` crate, loaded from `tokenizer.json` or,
//! failing that, from `vocab.json` + `merges.txt` (the layout of older checkpoints).

use std::path::Path;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

use crate::err;
use crate::error::Result;

/// GPT-2's end-of-text token.
pub const EOS_TEXT: &str = "<|endoftext|>";

pub struct Tokenizer {
    inner: HfTokenizer,
}

impl Tokenizer {
    /// Load from a model directory: `tokenizer.json`, else `vocab.json` + `merges.txt`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.exists() {
            return Self::from_json_file(&json);
        }
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if vocab.exists() && merges.exists() {
            return Self::from_vocab_merges(&vocab, &merges);
        }
        Err(err!(
            "{}: no tokenizer.json (nor vocab.json + merges.txt)",
            dir.display()
        ))
    }

    pub fn from_json_file(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| err!("{}: cannot read: {e}", path.display()))?;
        Self::from_json_bytes(&bytes, path)
    }

    /// From the bytes of a tokenizer.json (`path` names it in errors).
    pub fn from_json_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let inner = HfTokenizer::from_bytes(bytes)
            .map_err(|e| err!("{}: not a valid tokenizer.json: {e}", path.display()))?;
        Ok(Self { inner })
    }

    /// GPT-2's tokenizer from its vocabulary and merges files.
    pub fn from_vocab_merges(vocab: &Path, merges: &Path) -> Result<Self> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| err!("{}: cannot read: {e}", p.display()));
        Self::from_vocab_merges_bytes(&read(vocab)?, &read(merges)?, vocab, merges)
    }

    /// GPT-2's tokenizer from the bytes of vocab.json and merges.txt, as `GPT2TokenizerFast`
    /// builds it (the paths name them in errors).
    pub fn from_vocab_merges_bytes(
        vocab: &[u8],
        merges: &[u8],
        vocab_path: &Path,
        merges_path: &Path,
    ) -> Result<Self> {
        let map: std::collections::HashMap<String, u32> =
            serde_json::from_slice(vocab).map_err(|e| {
                err!(
                    "{}: not a vocabulary (a JSON object of token -> id): {e}",
                    vocab_path.display()
                )
            })?;
        let text = std::str::from_utf8(merges)
            .map_err(|e| err!("{}: not UTF-8 text: {e}", merges_path.display()))?;
        // As tokenizers' own reader: skip the "#version" header, one "a b" pair per line.
        let mut pairs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with("#version") {
                continue;
            }
            match line.split(' ').collect::<Vec<_>>()[..] {
                [a, b] => pairs.push((a.to_string(), b.to_string())),
                _ => {
                    return Err(err!(
                        "{}:{}: expected two tokens separated by one space",
                        merges_path.display(),
                        i + 1
                    ));
                }
            }
        }
        let vocab: Vocab = map.into_iter().collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, pairs)
            .build()
            .map_err(|e| {
                err!(
                    "{} / {}: cannot build BPE: {e}",
                    vocab_path.display(),
                    merges_path.display()
                )
            })?;
        let mut inner = HfTokenizer::new(bpe);
        inner
            .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
            .with_decoder(Some(ByteLevel::default()))
            .with_post_processor(Some(ByteLevel::new(false, true, true)));
        if inner.token_to_id(EOS_TEXT).is_some() {
            inner.add_special_tokens(&[AddedToken::from(EOS_TEXT, true)]);
        }
        Ok(Self { inner })
    }

    /// Token ids of `text`, without adding special tokens (a literal `<|endoftext|>` in the
    /// text is still recognised, as in transformers).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, false)
    }

    /// Token ids of `text` as transformers' `tokenizer(text)` gives them: with the special
    /// tokens the tokenizer's post-processor adds (Llama 3's `<|begin_of_text|>`; none for
    /// GPT-2, SmolLM2 or Qwen2).
    pub fn encode_for_model(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, true)
    }

    fn encode_with(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, special)
            .map_err(|e| err!("tokenizer failed on {:?}: {e}", truncate(text)))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids` (special tokens included, as transformers' `decode`).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| err!("cannot decode tokens: {e}"))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token's text (`<|im_end|>`), if the vocabulary has it.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    /// The id of `<|endoftext|>`, if the vocabulary has it.
    pub fn eos_id(&self) -> Option<u32> {
        self.inner.token_to_id(EOS_TEXT)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}
