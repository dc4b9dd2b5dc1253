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
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
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
        Command::Bench { what } => bench::run(what),
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

/// A PEFT adapter loaded onto the GPU for eval / generate.
pub(crate) struct LoadedAdapter {
    pub layout: wgtune::lora::Layout,
    pub params: wgtune::gpu::Tensor,
    pub config: wgtune::lora::LoraConfig,
}

impl LoadedAdapter {
    pub fn load(
        gpu: &wgtune::gpu::Gpu,
        dir: &std::path::Path,
        model: &wgtune::model::Gpt2,
    ) -> wgtune::error::Result<Self> {
        let (config, params) = wgtune::adapter::load_dir(dir, &model.config)?;
        let layout = wgtune::lora::Layout::new(&model.config, &config);
        eprintln!(
            "adapter {}: r={}, alpha={}, targets {:?}",
            dir.display(),
            config.r,
            config.lora_alpha,
            config.target_modules
        );
        Ok(Self {
            params: gpu.upload_f32(&params),
            layout,
            config,
        })
    }

    pub fn as_ref(&self) -> wgtune::model::forward::AdapterRef<'_> {
        wgtune::model::forward::AdapterRef {
            layout: &self.layout,
            params: &self.params,
            rank: self.config.r,
            scale: self.config.scale(),
            p_drop: 0.0,
            seed: 0,
        }
    }
}
