//! Text generation with a KV cache: the prompt is run once (prefill), then each new token
//! runs only its own position, attending to the cached q/k/v rows of the earlier ones.

use crate::bail;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::AdapterRef;
use crate::model::acts::Keep;
use crate::model::family::ModelRef;
pub use crate::model::forward::KvCache;
use crate::model::forward::{AttnSource, Pass};
use crate::model::gpt2::Gpt2;

impl Gpt2 {
    /// Run `ids` at the next positions of `cache`, with `adapter` applied if given (no
    /// dropout), and return the logits (V) of the last one.
    pub async fn step(
        &self,
        gpu: &Gpu,
        cache: &mut KvCache,
        ids: &[u32],
        adapter: Option<&AdapterRef<'_>>,
    ) -> Result<Vec<f32>> {
        let (c, n) = (self.config.n_embd, ids.len());
        cache.check_room(n)?;
        self.check_input(ids, cache.len() + n)?;
        let ids_t = gpu.upload_u32(ids);
        let last = gpu.tensor(c);
        let logits = gpu.tensor(self.config.vocab_size);
        let mut cmd = gpu.commands();
        let pass = Pass {
            b: 1,
            t: n,
            src: AttnSource::Cache(cache),
            adapter,
        };
        let acts = self.record_forward(&mut cmd, &ids_t, &pass, Keep::Nothing);
        // The last row's hidden state, copied: its offset need not be binding-aligned.
        cmd.copy(&acts.lnf.slice((n - 1) * c, c), &last);
        self.record_logits(&mut cmd, &logits, &last, 1);
        cmd.submit();
        cache.advance(n);
        Ok(gpu.read_f32(&logits).await?)
    }
}

/// What to generate: how many tokens and how to pick them.
#[derive(Clone, Copy, Debug)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    pub sampling: crate::sample::Sampling,
    pub seed: u64,
}

/// Continue `prompt` token by token through a KV cache, stopping at an end-of-sequence id,
/// `max_new_tokens` or the model's context. The prompt is tokenized as transformers'
/// `tokenizer(prompt)` does (with the special tokens its post-processor adds: Llama 3's
/// `<|begin_of_text|>`). `on_text` receives each newly completed piece of text (never half a
/// UTF-8 character) as it is decoded; the whole continuation is returned.
pub async fn generate(
    gpu: &Gpu,
    model: ModelRef<'_>,
    tok: &crate::tokenizer::Tokenizer,
    adapter: Option<&AdapterRef<'_>>,
    prompt: &str,
    cfg: &GenerateConfig,
    on_text: impl FnMut(&str),
) -> Result<String> {
    let ids = tok.encode_for_model(prompt)?;
    generate_ids(gpu, model, tok, adapter, ids, cfg, on_text).await
}

/// The ids a prompt is generated from: with the model's chat template (`chat`), the prompt as
/// one user message rendered with the generation prompt (mlx-lm's default, and
/// `apply_chat_template(..., add_generation_prompt=True)`; the template writes its own
/// special tokens); without, tokenized as transformers' `tokenizer(prompt)`.
pub fn prompt_ids(
    tok: &crate::tokenizer::Tokenizer,
    chat: Option<&crate::chat::ChatTemplate>,
    prompt: &str,
) -> Result<Vec<u32>> {
    let Some(template) = chat else {
        return tok.encode_for_model(prompt);
    };
    let user = crate::chat::ChatMessage {
        role: "user".into(),
        content: prompt.into(),
    };
    tok.encode(&template.render_prompt(&[user])?)
}

/// [`generate`] from prompt ids already tokenized (a chat template's rendering, say).
pub async fn generate_ids(
    gpu: &Gpu,
    model: ModelRef<'_>,
    tok: &crate::tokenizer::Tokenizer,
    adapter: Option<&AdapterRef<'_>>,
    mut ids: Vec<u32>,
    cfg: &GenerateConfig,
    mut on_text: impl FnMut(&str),
) -> Result<String> {
    let config = model.config();
    let stop = config.stop_ids(tok);
    if ids.is_empty() {
        ids.push(stop[0]); // GPT-2 starts unconditioned text from <|endoftext|>
    }
    let positions = model.positions();
    if ids.len() >= positions {
        bail!(
            "the prompt has {} tokens; the model sees at most {positions}",
            ids.len()
        );
    }
    let mut rng = crate::sample::Rng::new(cfg.seed);
    let mut cache = model.kv_cache(gpu, (ids.len() + cfg.max_new_tokens).min(positions));
    let prompt_len = ids.len();
    let mut next = ids.clone();
    let mut shown = 0;
    let mut text = String::new();
    for _ in 0..cfg.max_new_tokens {
        if cache.len() + next.len() > cache.capacity() {
            break;
        }
        let logits = model.step(gpu, &mut cache, &next, adapter).await?;
        let id = crate::sample::sample(&logits, &cfg.sampling, &mut rng);
        if stop.contains(&id) {
            break;
        }
        ids.push(id);
        // Decode all new tokens together and emit what is new, so multi-token characters
        // appear whole.
        text = tok.decode(&ids[prompt_len..])?;
        if text.len() > shown && !text.ends_with('\u{FFFD}') {
            on_text(&text[shown..]);
            shown = text.len();
        }
        next = vec![id];
    }
    if text.len() > shown {
        on_text(&text[shown..]);
    }
    Ok(text)
}
