//! LoRA / QLoRA training against PEFT fixtures (tests/reference/make_peft_fixtures.py):
//! gradients of one step, ten AdamW steps, adapters PEFT wrote, adapters we write.

#[path = "../kernels/common.rs"]
mod common;
#[path = "../model/fixtures.rs"]
mod fixtures;

mod dropout;
mod job;
mod merge_stream;
mod parity;
mod peft;
mod run;
