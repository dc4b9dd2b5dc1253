//! Command-line interface: argument parsing and the subcommands.

mod bench;
mod eval;
mod generate;
mod hub;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wgtune",
    version,
    about = "Fine-tune GPT-2 with LoRA / QLoRA on your own GPU (wgpu / WebGPU)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the GPU adapters, and the backend, limits and features in use.
    Info,
    /// Fine-tune with LoRA / QLoRA and write a PEFT adapter.
    Train(Box<train::TrainArgs>),
    /// Mean token loss, perplexity and token count of a model over a JSONL file (JSON).
    Eval(eval::EvalArgs),
    /// Generate text from a prompt, streamed.
    Generate(generate::GenerateArgs),
    /// Fold a LoRA adapter into the base weights: a model directory transformers loads.
    Merge {
        /// Base model: a local directory or a hub id.
        #[arg(long)]
        model: String,
        /// PEFT adapter directory.
        #[arg(long)]
        adapter: std::path::PathBuf,
        /// Output directory for the merged model.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Benchmarks that print figures: `bench --shape gpt2 ...` (same as `bench model`) or
    /// `bench kernels`.
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        what: Option<bench::BenchCommand>,
        #[command(flatten)]
        model: bench::ModelBench,
    },
}

pub fn run() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Command::Info => info(),
        Command::Train(a) => Ok(train::run(*a)?),
        Command::Eval(a) => Ok(eval::run(a)?),
        Command::Generate(a) => Ok(generate::run(a)?),
        Command::Merge {
            model,
            adapter,
            out,
        } => {
            let dir = hub::resolve(&model)?;
            wgtune::merge::merge_dir(&dir, &adapter, &out)?;
            eprintln!(
                "merged {} into {} -> {}",
                adapter.display(),
                model,
                out.display()
            );
            Ok(())
        }
        Command::Bench { what, model } => {
            bench::run(what.unwrap_or(bench::BenchCommand::Model(model)))
        }
    }
}

fn info() -> Result<(), Box<dyn std::error::Error>> {
    let adapters = pollster::block_on(wgtune::gpu::list_adapters());
    println!("adapters found: {}", adapters.len());
    for a in &adapters {
        println!("  - {} ({:?}, {:?})", a.name, a.backend, a.device_type);
    }
    let gpu = wgtune::gpu::Gpu::new_blocking()?;
    println!("in use:");
    println!("{}", wgtune::gpu::describe(&gpu));
    Ok(())
}

/// Resolve `--model`, load it in `quant`, and report where it went and the GPU memory used.
pub(crate) fn load_model(
    gpu: &wgtune::gpu::Gpu,
    model: &str,
    quant: wgtune::model::Quant,
) -> wgtune::error::Result<(wgtune::model::Gpt2, wgtune::tokenizer::Tokenizer)> {
    let dir = hub::resolve(model)?;
    let (m, tok) = wgtune::model::load_dir(gpu, &dir, quant)?;
    let c = &m.config;
    eprintln!(
        "{model}: {} layers, {} embd, {} heads, vocab {}; base {quant}: {:.1} MiB of weights on {} ({:?})",
        c.n_layer,
        c.n_embd,
        c.n_head,
        c.vocab_size,
        m.weight_bytes() as f64 / (1024.0 * 1024.0),
        gpu.adapter_info.name,
        gpu.adapter_info.backend
    );
    Ok((m, tok))
}

/// Load a PEFT adapter directory onto the GPU for eval / generate.
pub(crate) fn load_adapter(
    gpu: &wgtune::gpu::Gpu,
    dir: &std::path::Path,
    model: &wgtune::model::Gpt2,
) -> wgtune::error::Result<wgtune::model::forward::GpuAdapter> {
    let (config, params) = wgtune::adapter::load_dir(dir, &model.config)?;
    eprintln!(
        "adapter {}: r={}, alpha={}, targets {:?}",
        dir.display(),
        config.r,
        config.lora_alpha,
        config.target_modules
    );
    Ok(wgtune::model::forward::GpuAdapter::new(
        gpu,
        &model.config,
        config,
        &params,
    ))
}
