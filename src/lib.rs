//! wgtune: fine-tune GPT-2 with LoRA / QLoRA on your own GPU, through WebGPU in the browser
//! and wgpu natively. This library is the core shared by both targets; it has no CLI or web
//! types (see README "Architecture").

pub mod adapter;
pub mod chat;
pub mod cpu;
pub mod data;
pub mod error;
pub mod gpu;
#[cfg(feature = "test-hooks")]
pub mod hooks;
pub mod inspect;
pub mod kernels;
pub mod lora;
pub mod merge;
pub mod model;
pub mod nf4;
pub mod sample;
pub mod tokenizer;
pub mod train;
