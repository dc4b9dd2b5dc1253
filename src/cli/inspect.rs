//! `wgtune inspect`: what an adapter learned, module by module (norms, singular values,
//! effective rank), the trainable share and the memory of a full fine-tune against it.

use std::path::PathBuf;

use clap::Args;
use wgtune::error::Result;
use wgtune::inspect::{Inspection, base_norms_in};
use wgtune::lora::trainable_line;
use wgtune::model::Quant;

#[derive(Args)]
pub struct InspectArgs {
    /// PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    pub adapter: PathBuf,
    /// The base model (a local directory or a hub id): adds ‖ΔW‖/‖W‖, the share of all
    /// parameters and the memory comparison.
    #[arg(long)]
    pub model: Option<String>,
    /// The base format of the run the memory comparison assumes: nf4, nf4-dq, f16 or f32.
    #[arg(long, default_value = "nf4")]
    pub quant: Quant,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: InspectArgs) -> Result<()> {
    let mut inspection = Inspection::read_dir(&a.adapter)?;
    if let Some(model) = &a.model {
        let files = super::open_model(model)?;
        inspection = inspection
            .with_base(&files.config, a.quant, base_norms_in(&files.weights))
            .map_err(|e| wgtune::err!("{}: {e}", a.adapter.display()))?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&inspection).expect("an inspection serializes")
        );
    } else {
        print!("{}", table(&inspection, &a.adapter.display().to_string()));
    }
    Ok(())
}

/// The singular values shown per row (all are in --json).
const SHOWN_SV: usize = 8;

fn table(i: &Inspection, name: &str) -> String {
    let mut out = format!(
        "adapter {name}: r={}, lora_alpha={}, {}scale {:.4}, {} modules ({})\n",
        i.r,
        i.lora_alpha,
        if i.use_rslora { "rsLoRA, " } else { "" },
        i.scale,
        i.modules.len(),
        i.target_modules.join(", ")
    );
    let width = i
        .modules
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    out += &format!(
        "{:<width$}  {:>11}  {:>10}  {:>9}  {:>8}  singular values of ΔW\n",
        "module", "out x in", "‖ΔW‖_F", "‖ΔW‖/‖W‖", "eff.rank"
    );
    for m in &i.modules {
        let rel = m
            .relative_norm()
            .map_or("-".to_string(), |r| format!("{r:.3e}"));
        let mut sv: Vec<String> = m
            .singular_values
            .iter()
            .take(SHOWN_SV)
            .map(|s| format!("{s:.3e}"))
            .collect();
        if m.singular_values.len() > SHOWN_SV {
            sv.push("…".into());
        }
        out += &format!(
            "{:<width$}  {:>11}  {:>10.3e}  {:>9}  {:>8.2}  {}\n",
            m.name,
            format!("{}x{}", m.out_features, m.in_features),
            m.norm,
            rel,
            m.effective_rank,
            sv.join(" ")
        );
    }
    match &i.base {
        Some(b) => {
            let mib = |x: u64| x as f64 / (1024.0 * 1024.0);
            let mem = &b.memory;
            out += &trainable_line(i.trainable, b.base_params);
            out += "\n";
            out += &format!(
                "weights + gradients + AdamW moments: full fine-tune (f32) {:.1} MiB; this adapter on the {} base {:.1} MiB (base {:.1} + LoRA {:.1}), {:.1}x less\n",
                mib(mem.full_finetune),
                mem.quant,
                mib(mem.lora_total()),
                mib(mem.base_weights),
                mib(mem.adapter_state),
                mem.full_finetune as f64 / mem.lora_total().max(1) as f64
            );
        }
        None => {
            out += &format!(
                "trainable params: {} (pass --model for ‖ΔW‖/‖W‖, the share of all parameters and the memory comparison)\n",
                i.trainable
            )
        }
    }
    out
}
