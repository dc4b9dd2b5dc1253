//! Command-line interface: argument parsing and the subcommands.

mod bench;
mod compare;
mod eval;
mod generate;
mod hub;
mod inspect;
mod interrupt;
mod selftest;
mod train;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use wgtune::train::settings::{Given, TrainSettings};

#[derive(Parser)]
#[command(
    name = "wgtune",
    version,
    about = "Fine-tune GPT-2 and the Llama family (SmolLM2, Qwen2.5, Llama 3.2) with LoRA / QLoRA on your own GPU (wgpu / WebGPU)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the GPU adapters, and the backend, limits and features in use.
    Info,
    /// Check every GPU kernel, in every variant this adapter runs, against its CPU reference
    /// on this adapter (GPT-2-sized cases and throughput unless --quick).
    Selftest(selftest::SelftestArgs),
    /// Fine-tune with LoRA / QLoRA and write a PEFT adapter.
    Train(Box<train::TrainArgs>),
    /// Mean token loss, perplexity and token count of a model over a JSONL file (JSON).
    Eval(eval::EvalArgs),
    /// Generate text from a prompt, streamed.
    Generate(generate::GenerateArgs),
    /// What an adapter learned: per module ‖ΔW‖, ‖ΔW‖/‖W‖, singular values and effective
    /// rank; trainable share and memory against a full fine-tune.
    Inspect(inspect::InspectArgs),
    /// The base model against base + adapter on examples of a JSONL file: losses of the
    /// reference answers and both greedy generations, side by side.
    Compare(compare::CompareArgs),
    /// Fold a LoRA adapter into the base model's original weights (for a QLoRA adapter too:
    /// the checkpoint's weights, not their NF4 quantization), as PEFT's merge_and_unload() on
    /// the base loaded unquantized: an f32 model directory transformers loads.
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

/// Run the command; Ok holds the exit status (non-zero after an interrupted training run).
pub fn run() -> Result<i32, Box<dyn std::error::Error>> {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation => {
            return Err(Box::new(bad_value(&e)));
        }
        Err(e) => e.exit(),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // A typo in WGTUNE_KERNELS is an error here, before any work (the library only warns).
    wgtune::kernels::check_env()?;
    match cli.command {
        Command::Info => info().map(|_| 0),
        Command::Train(a) => {
            let given = given_settings(matches.subcommand_matches("train").expect("train"));
            Ok(train::run(*a, given)?)
        }
        Command::Selftest(a) => Ok(selftest::run(a).map(|_| 0)?),
        Command::Eval(a) => Ok(eval::run(a).map(|_| 0)?),
        Command::Generate(a) => Ok(generate::run(a).map(|_| 0)?),
        Command::Inspect(a) => Ok(inspect::run(a).map(|_| 0)?),
        Command::Compare(a) => Ok(compare::run(a).map(|_| 0)?),
        Command::Merge {
            model,
            adapter,
            out,
        } => {
            let dir = hub::resolve(&model)?;
            wgtune::merge::merge_dir(&dir, &adapter, &out)?;
            eprintln!(
                "merged {} into the original weights of {} -> {} (f32)",
                adapter.display(),
                model,
                out.display()
            );
            Ok(0)
        }
        Command::Bench { what, model } => {
            bench::run(what.unwrap_or(bench::BenchCommand::Model(model))).map(|_| 0)
        }
    }
}

/// A flag's value refused by its parser, as the one line every input mistake gets (exit status
/// 1): the flag's own range error when the parser gave one (it names the flag), else the flag,
/// the value and why (clap's own report spans three lines and exits with 2).
fn bad_value(e: &clap::Error) -> wgtune::error::Error {
    use clap::error::{ContextKind, ContextValue};
    let why = std::error::Error::source(e).map_or_else(|| e.kind().to_string(), |s| s.to_string());
    if why.starts_with("--") {
        return wgtune::error::Error::new(why);
    }
    let text = |k| match e.get(k) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let arg = text(ContextKind::InvalidArg);
    let flag = arg.split_whitespace().next().unwrap_or("");
    wgtune::error::Error::new(format!("{flag} {}: {why}", text(ContextKind::InvalidValue)))
}

/// clap's parser for a whole-number flag of eval / generate: a value below the minimum (a
/// negative one included) gets the flag's range error ([`TrainSettings`]' words).
fn count(name: &'static str) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| {
        let v = wgtune::train::settings::parse_count(name, text)?;
        usize::try_from(v).map_err(|_| format!("--{} {v} is too large", name.replace('_', "-")))
    }
}

/// The training settings given on the command line (the others hold their defaults, which an
/// adapter or checkpoint to continue from may replace).
fn given_settings(m: &clap::ArgMatches) -> Given {
    let names = match serde_json::to_value(TrainSettings::default()) {
        Ok(serde_json::Value::Object(o)) => o.keys().cloned().collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    Given::Only(
        names
            .into_iter()
            .filter(|n| m.value_source(n) == Some(clap::parser::ValueSource::CommandLine))
            .collect(),
    )
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
    println!("  kernels: {}", wgtune::kernels::tuning(&gpu));
    let tuned = wgtune::kernels::state(&gpu).tuned.lock().unwrap();
    println!("  autotune: {}", tuned.summary());
    for (class, c) in &tuned.choices {
        println!("    {class}: {}", c.kernel);
    }
    if tuned.enabled
        && let Some(path) = wgtune::kernels::autotune::cache_path(&gpu)
    {
        println!("  kernel cache: {}", path.display());
    }
    Ok(())
}

/// What the CLI adds to an error of this kind: the flags that help (the library's messages
/// say what happened, not which flag to change).
pub fn advice(kind: wgtune::error::Kind) -> &'static str {
    use wgtune::error::Kind;
    match kind {
        Kind::OutOfMemory => {
            "; lower --batch-size or --seq-len, or use --grad-checkpoint or --quant nf4"
        }
        Kind::DeviceLost => ", with a smaller --batch-size if it recurs",
        Kind::Other => "",
    }
}

/// `--format`: `auto` (detected from the first line) or a format's name.
pub(crate) fn data_format(name: &str) -> wgtune::error::Result<Option<wgtune::data::Format>> {
    match name {
        "auto" => Ok(None),
        f => Ok(Some(f.parse().map_err(wgtune::error::Error::new)?)),
    }
}

/// `--seq-len` for eval and compare: the model's context length unless given, at most that.
pub(crate) fn seq_len(
    given: Option<usize>,
    config: &wgtune::model::ModelConfig,
) -> wgtune::error::Result<usize> {
    let n_pos = config.n_positions();
    let seq_len = given.unwrap_or(n_pos);
    if seq_len == 0 || seq_len > n_pos {
        wgtune::bail!(
            "--seq-len {seq_len} must be between 1 and the model's context of {n_pos} positions"
        );
    }
    Ok(seq_len)
}

/// Resolve `--model` and check its files on the host (no GPU yet).
pub(crate) fn open_model(model: &str) -> wgtune::error::Result<wgtune::model::ModelFiles> {
    wgtune::model::open_dir(&hub::resolve(model)?)
}

/// How a model's lines become examples: its EOS, its tokenizer's prefix and, for the Llama
/// family, its chat template (GPT-2 keeps plain `role: content` lines).
pub(crate) fn prepare_config(
    files: &wgtune::model::ModelFiles,
    s: &TrainSettings,
    seq_len: usize,
) -> wgtune::error::Result<wgtune::train::prepare::PrepareConfig> {
    use wgtune::model::ModelConfig;
    use wgtune::train::prepare::PrepareConfig;
    let eos = files.config.eos_with(&files.tokenizer);
    match files.config {
        ModelConfig::Gpt2(_) => Ok(PrepareConfig::new(s, seq_len, eos)),
        ModelConfig::Llama(_) => {
            let chat = wgtune::chat::ChatTemplate::from_dir(&files.dir)?;
            PrepareConfig::for_model(s, seq_len, eos, &files.tokenizer, chat)
        }
    }
}

/// Upload checked model files in `quant`, and report where they went and the GPU memory used.
pub(crate) fn upload_model(
    gpu: &wgtune::gpu::Gpu,
    model: &str,
    files: &wgtune::model::ModelFiles,
    quant: wgtune::model::Quant,
) -> wgtune::error::Result<wgtune::model::Model> {
    let m = files.upload(gpu, quant)?;
    gpu.check_healthy()?;
    let shape = match &files.config {
        wgtune::model::ModelConfig::Gpt2(c) => format!(
            "GPT-2, {} layers, {} embd, {} heads, vocab {}",
            c.n_layer, c.n_embd, c.n_head, c.vocab_size
        ),
        wgtune::model::ModelConfig::Llama(c) => format!(
            "{}, {} layers, hidden {}, {} heads ({} KV), vocab {}",
            files.config.family(),
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.vocab_size
        ),
    };
    eprintln!(
        "{model}: {shape}; base {quant}: {:.1} MiB of weights on {} ({:?})",
        m.as_ref().weight_bytes() as f64 / (1024.0 * 1024.0),
        gpu.adapter_info.name,
        gpu.adapter_info.backend
    );
    Ok(m)
}

/// What eval and generate run on: the GPU, the uploaded model and the optional adapter.
pub(crate) struct Inference {
    pub gpu: wgtune::gpu::Gpu,
    pub model: wgtune::model::Model,
    pub adapter: Option<wgtune::lora::GpuAdapter>,
}

/// Read the `--adapter` directory (checked on the host first), then open the GPU and upload
/// the model and the adapter.
pub(crate) fn open_inference(
    model: &str,
    files: &wgtune::model::ModelFiles,
    adapter: Option<&std::path::Path>,
    quant: wgtune::model::Quant,
) -> wgtune::error::Result<Inference> {
    let host_adapter = adapter
        .map(|d| read_adapter(d, &files.config))
        .transpose()?;
    let gpu = wgtune::gpu::Gpu::new_blocking()?;
    let m = upload_model(&gpu, model, files, quant)?;
    let adapter = host_adapter
        .map(|(lora, params)| wgtune::lora::GpuAdapter::new(&gpu, &files.config, lora, &params));
    Ok(Inference {
        gpu,
        model: m,
        adapter,
    })
}

/// Read a PEFT adapter directory for eval / generate, checked against the model's shapes.
pub(crate) fn read_adapter(
    dir: &std::path::Path,
    config: &wgtune::model::ModelConfig,
) -> wgtune::error::Result<(wgtune::lora::LoraConfig, Vec<f32>)> {
    let (lora, params) = wgtune::adapter::load_dir(dir, config)?;
    eprintln!(
        "adapter {}: r={}, alpha={}, targets {:?}",
        dir.display(),
        lora.r,
        lora.lora_alpha,
        lora.target_modules
    );
    Ok((lora, params))
}
