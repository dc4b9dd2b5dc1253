//! GPT-2 against transformers / bitsandbytes fixtures (tests/reference/make_fixtures.py):
//! logits, losses, greedy generation with the KV cache, NF4 models, tokenizers, eval data.

#[path = "../kernels/common.rs"]
mod common;

mod chat_template;
mod fixtures;
mod forward;
mod llama_forward;
mod llama_reference;
mod stream_load;
mod tokenizer_and_data;
