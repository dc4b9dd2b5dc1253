//! LoRA adapters in Hugging Face PEFT's format: `adapter_config.json` +
//! `adapter_model.safetensors` (keys `base_model.model.transformer.h.{i}.{module}.lora_A.weight`
//! (r,in) and `.lora_B.weight` (out,r), F32, metadata {"format":"pt"}), so that
//! `PeftModel.from_pretrained` loads what we write and we load what PEFT writes.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::Result;
use crate::lora::{Layout, LoraConfig, peft_prefix};
use crate::model::Gpt2Config;
use crate::{bail, err};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// An f32 as the JSON number a Python float of the same decimal would be (0.05, not
/// 0.05000000074505806); integral values as integers when `int_if_integral` (up to 2^53,
/// beyond which `as i64` would saturate and a reader's float would lose digits).
fn json_number(v: f32, int_if_integral: bool) -> Value {
    if int_if_integral && v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0 {
        json!(v as i64)
    } else {
        json!(v.to_string().parse::<f64>().unwrap_or(v as f64))
    }
}

/// `adapter_config.json` exactly as PEFT 0.21 writes it for a GPT-2 LoRA (same fields,
/// same JSON types; serde_json sorts keys as PEFT's `sort_keys=True`), with our settings.
/// `nf4_base`: PEFT adapts bitsandbytes Linear4bit layers there, and writes
/// `fan_in_fan_out: false` (true for the Conv1D layers of a float base).
pub fn config_json(cfg: &LoraConfig, base_model: &str, n_layer: usize, nf4_base: bool) -> Value {
    let alpha = json_number(cfg.lora_alpha, true);
    json!({
        "alora_invocation_tokens": null,
        "alpha_pattern": {},
        "arrow_config": null,
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "bias": "none",
        "corda_config": null,
        "ensure_weight_tying": false,
        "eva_config": null,
        "exclude_modules": null,
        "fan_in_fan_out": !nf4_base,
        "inference_mode": true,
        "init_lora_weights": true,
        "kasa_config": null,
        "layer_replication": null,
        "layers_pattern": null,
        "layers_to_transform": null,
        "loftq_config": {},
        "lora_alpha": alpha,
        "lora_bias": false,
        "lora_dropout": json_number(cfg.lora_dropout, false),
        "lora_ga_config": null,
        "megatron_config": null,
        "megatron_core": "megatron.core",
        "modules_to_save": null,
        "monteclora_config": null,
        "peft_type": "LORA",
        "peft_version": "0.21.2",
        "qalora_group_size": 16,
        "r": cfg.r,
        "rank_pattern": {},
        "revision": null,
        "target_modules": target_modules_json(cfg, n_layer),
        "target_parameters": null,
        "task_type": "CAUSAL_LM",
        "trainable_token_indices": null,
        "use_bdlora": null,
        "use_dora": false,
        "use_qalora": false,
        "use_rslora": cfg.use_rslora,
        "velora_config": null
    })
}

fn target_modules_json(cfg: &LoraConfig, n_layer: usize) -> Value {
    // PEFT saves all-linear expanded to the full names of the adapted modules; other targets
    // as given (its order is a Python set's; ours is sorted).
    if cfg.target_modules.iter().any(|t| t == "all-linear") {
        json!(cfg.full_target_names(n_layer))
    } else {
        let mut v = cfg.target_modules.clone();
        v.sort();
        v.dedup();
        json!(v)
    }
}

/// Parse a PEFT `adapter_config.json` (unknown fields from newer PEFT versions are ignored;
/// features wgtune does not implement are errors).
pub fn parse_config(text: &str, path: &Path) -> Result<LoraConfig> {
    let p = path.display();
    let v: Value = serde_json::from_str(text).map_err(|e| err!("{p}: invalid JSON: {e}"))?;
    let Value::Object(o) = v else {
        bail!("{p}: expected a JSON object");
    };
    let peft_type = o.get("peft_type").and_then(Value::as_str).unwrap_or("LORA");
    if peft_type != "LORA" {
        bail!("{p}: peft_type {peft_type:?} is not LORA");
    }
    for (flag, what) in [
        ("use_dora", "DoRA"),
        ("use_qalora", "QA-LoRA"),
        ("lora_bias", "lora_bias"),
    ] {
        if o.get(flag).and_then(Value::as_bool) == Some(true) {
            bail!("{p}: {what} adapters are not supported");
        }
    }
    if let Some(b) = o.get("bias").and_then(Value::as_str)
        && b != "none"
    {
        bail!("{p}: bias {b:?} is not supported (only \"none\")");
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if o.get(key)
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
        {
            bail!("{p}: {key} (per-module ranks/alphas) is not supported");
        }
    }
    let r = o
        .get("r")
        .and_then(Value::as_u64)
        .ok_or_else(|| err!("{p}: missing or invalid \"r\""))? as usize;
    let lora_alpha = o
        .get("lora_alpha")
        .and_then(Value::as_f64)
        .ok_or_else(|| err!("{p}: missing or invalid \"lora_alpha\""))? as f32;
    let lora_dropout = o.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0) as f32;
    let use_rslora = o
        .get("use_rslora")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let target_modules = match o.get("target_modules") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| err!("{p}: target_modules must be strings"))
            })
            .collect::<Result<Vec<_>>>()?,
        _ => bail!("{p}: missing \"target_modules\""),
    };
    let cfg = LoraConfig {
        r,
        lora_alpha,
        lora_dropout,
        target_modules,
        use_rslora,
    };
    cfg.validate().map_err(|e| err!("{p}: {e}"))?;
    Ok(cfg)
}

/// The safetensors bytes of the adapter weights held in the flat `params`.
pub fn weights_bytes(layout: &Layout, r: usize, params: &[f32]) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for s in &layout.slots {
        let a = &params[s.a..s.a + r * s.k_in];
        let b = &params[s.b..s.b + s.n_out * r];
        let prefix = peft_prefix(s);
        tensors.push((
            format!("{prefix}.lora_A.weight"),
            vec![r, s.k_in],
            bytemuck::cast_slice(a).to_vec(),
        ));
        tensors.push((
            format!("{prefix}.lora_B.weight"),
            vec![s.n_out, r],
            bytemuck::cast_slice(b).to_vec(),
        ));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| err!("adapter tensor {name}: {e}"))
        })
        .collect::<Result<_>>()?;
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize(views, Some(meta)).map_err(|e| err!("cannot serialize the adapter: {e}"))
}

/// Flat parameters from PEFT adapter weights, checked against the model and config.
pub fn params_from_weights(
    bytes: &[u8],
    path: &Path,
    model: &Gpt2Config,
    cfg: &LoraConfig,
) -> Result<Vec<f32>> {
    let p = path.display();
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| err!("{p}: not a valid safetensors file ({e}): truncated or corrupt?"))?;
    let layout = Layout::new(model, cfg);
    let mut params = vec![0.0f32; layout.len];
    let mut expected = std::collections::HashSet::new();
    for s in &layout.slots {
        let prefix = peft_prefix(s);
        for (suffix, off, shape) in [
            ("lora_A", s.a, [cfg.r, s.k_in]),
            ("lora_B", s.b, [s.n_out, cfg.r]),
        ] {
            // PEFT may also write the adapter name (".default") into keys of older versions.
            let name = format!("{prefix}.{suffix}.weight");
            let alt = format!("{prefix}.{suffix}.default.weight");
            let key = if st.tensor(&name).is_ok() { name } else { alt };
            let t = st
                .tensor(&key)
                .map_err(|_| err!("{p}: missing tensor {prefix}.{suffix}.weight (adapter for another model or target set?)"))?;
            if t.shape() != shape {
                bail!(
                    "{p}: tensor {key} has shape {:?}, this model and r={} need {shape:?} (adapter for another base model?)",
                    t.shape(),
                    cfg.r
                );
            }
            let values: Vec<f32> = match t.dtype() {
                safetensors::Dtype::F32 => bytemuck::pod_collect_to_vec(t.data()),
                safetensors::Dtype::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(t.data())
                    .into_iter()
                    .map(f32::from)
                    .collect(),
                safetensors::Dtype::BF16 => {
                    bytemuck::pod_collect_to_vec::<u8, half::bf16>(t.data())
                        .into_iter()
                        .map(f32::from)
                        .collect()
                }
                d => bail!("{p}: tensor {key} has dtype {d:?}; expected F32, F16 or BF16"),
            };
            params[off..off + values.len()].copy_from_slice(&values);
            expected.insert(key);
        }
    }
    if let Some(extra) = st.names().into_iter().find(|n| !expected.contains(*n)) {
        bail!("{p}: unexpected tensor {extra} (not a LoRA weight of the configured targets)");
    }
    Ok(params)
}

/// Read a PEFT adapter directory.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(dir: &Path, model: &Gpt2Config) -> Result<(LoraConfig, Vec<f32>)> {
    let cpath = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cpath).map_err(|e| {
        err!(
            "{}: cannot read ({e}); a PEFT adapter directory holds {CONFIG_FILE} and {WEIGHTS_FILE}",
            cpath.display()
        )
    })?;
    let cfg = parse_config(&text, &cpath)?;
    cfg.validate_for(model.n_layer)
        .map_err(|e| err!("{}: {e}", cpath.display()))?;
    let wpath = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&wpath).map_err(|e| err!("{}: cannot read: {e}", wpath.display()))?;
    let params = params_from_weights(&bytes, &wpath, model, &cfg)?;
    Ok((cfg, params))
}

/// Write a PEFT adapter directory: both files are written in full under temporary names
/// before either is renamed into place, so an interruption (even `kill -9`) never leaves a
/// half-written file, and the previous adapter stays until the new one is complete.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_dir(
    dir: &Path,
    cfg: &LoraConfig,
    layout: &Layout,
    params: &[f32],
    base_model: &str,
    n_layer: usize,
    nf4_base: bool,
) -> Result<()> {
    write_dir(
        dir,
        &encode(cfg, layout, params, base_model, n_layer, nf4_base)?,
    )
}

/// Write an adapter's encoded files (see [`encode`]) into `dir`, as [`save_dir`] does.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_dir(dir: &Path, (weights, config): &(Vec<u8>, Vec<u8>)) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| err!("{}: cannot create: {e}", dir.display()))?;
    write_all_atomic(&[
        (&dir.join(WEIGHTS_FILE), weights),
        (&dir.join(CONFIG_FILE), config),
    ])
}

/// The bytes of [`WEIGHTS_FILE`] and [`CONFIG_FILE`] for an adapter: what the CLI writes and
/// the web app offers for download, identical for the same adapter.
pub fn encode(
    cfg: &LoraConfig,
    layout: &Layout,
    params: &[f32],
    base_model: &str,
    n_layer: usize,
    nf4_base: bool,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let weights = weights_bytes(layout, cfg.r, params)?;
    let config = serde_json::to_string_pretty(&config_json(cfg, base_model, n_layer, nf4_base))
        .map_err(|e| err!("cannot write adapter_config.json: {e}"))?;
    Ok((weights, config.into_bytes()))
}

/// Write `bytes` to `path` through a temporary file in the same directory and a rename.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_all_atomic(&[(path, bytes)])
}

/// Write several files: all go to synced temporary files first, then each is renamed into
/// place (a rename within a directory is atomic).
#[cfg(not(target_arch = "wasm32"))]
pub fn write_all_atomic(files: &[(&Path, &[u8])]) -> Result<()> {
    use std::io::Write;
    let mut temps = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let tmp = path.with_extension(format!(
            "{}.tmp",
            path.extension().and_then(|e| e.to_str()).unwrap_or("")
        ));
        let mut f = std::fs::File::create(&tmp)
            .map_err(|e| err!("{}: cannot create: {e}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| err!("{}: cannot write: {e}", tmp.display()))?;
        temps.push(tmp);
    }
    for (tmp, (path, _)) in temps.iter().zip(files) {
        std::fs::rename(tmp, path)
            .map_err(|e| err!("{}: cannot rename into place: {e}", path.display()))?;
    }
    Ok(())
}

/// `<dir>.<suffix>` beside `dir`.
#[cfg(not(target_arch = "wasm32"))]
pub fn sibling(dir: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

/// Move the complete `new` directory to `dir`, replacing an older one (kept as `<dir>.old`
/// until the new one is in place).
#[cfg(not(target_arch = "wasm32"))]
pub fn replace_dir(new: &Path, dir: &Path) -> Result<()> {
    let old = sibling(dir, "old");
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to)
            .map_err(|e| err!("{}: cannot rename to {}: {e}", from.display(), to.display()))
    };
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old)
                .map_err(|e| err!("{}: cannot remove: {e}", old.display()))?;
        }
        rename(dir, &old)?;
        rename(new, dir)?;
        std::fs::remove_dir_all(&old).map_err(|e| err!("{}: cannot remove: {e}", old.display()))
    } else {
        rename(new, dir)
    }
}
