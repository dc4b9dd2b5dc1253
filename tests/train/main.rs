//! LoRA / QLoRA training against PEFT fixtures (tests/reference/make_peft_fixtures.py):
//! gradients of one step, ten AdamW steps, adapters PEFT wrote, adapters we write; the parity
//! fixtures (make_parity_fixtures.py: weight decay, the default QLoRA set-up with dropout,
//! merges); dropout's distribution; runs, jobs and the streamed merge.

#[path = "../kernels/common.rs"]
mod common;
#[path = "../model/fixtures.rs"]
mod fixtures;

mod bind_groups;
mod dropout;
mod inspect;
mod job;
mod llama_peft;
mod merge_stream;
mod parity;
mod peft;
mod run;
