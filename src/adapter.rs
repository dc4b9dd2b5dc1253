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

/// Read a PEFT adapter directory (as a write interrupted by a kill left it, the complete
/// adapter it was writing: see [`write_dir`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(dir: &Path, model: &Gpt2Config) -> Result<(LoraConfig, Vec<f32>)> {
    let cpath = current_file(dir, CONFIG_FILE);
    let text = std::fs::read_to_string(&cpath).map_err(|e| {
        err!(
            "{}: cannot read ({e}); a PEFT adapter directory holds {CONFIG_FILE} and {WEIGHTS_FILE}",
            cpath.display()
        )
    })?;
    let cfg = parse_config(&text, &cpath)?;
    cfg.validate_for(model.n_layer)
        .map_err(|e| err!("{}: {e}", cpath.display()))?;
    let wpath = current_file(dir, WEIGHTS_FILE);
    let bytes = std::fs::read(&wpath).map_err(|e| err!("{}: cannot read: {e}", wpath.display()))?;
    let params = params_from_weights(&bytes, &wpath, model, &cfg)?;
    Ok((cfg, params))
}

/// Whether `dir` holds an adapter (a complete one, or one a killed write had committed).
#[cfg(not(target_arch = "wasm32"))]
pub fn holds_adapter(dir: &Path) -> bool {
    current_file(dir, CONFIG_FILE).exists()
}

/// Write a PEFT adapter directory (see [`write_dir`]).
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

/// Inside an adapter directory: where a write builds the new files, and where they wait,
/// complete and synced, until they are in place. Inside, not beside: `--out` may be a mount
/// point, and a rename cannot cross file systems.
#[cfg(not(target_arch = "wasm32"))]
const STAGING_DIR: &str = ".wgtune-adapter.partial";
#[cfg(not(target_arch = "wasm32"))]
const COMMIT_DIR: &str = ".wgtune-adapter.commit";

/// The file `name` of the adapter in `dir` as it stands: the committed new one while a write
/// is (or was killed) in progress, else the one in place.
#[cfg(not(target_arch = "wasm32"))]
fn current_file(dir: &Path, name: &str) -> std::path::PathBuf {
    let committed = dir.join(COMMIT_DIR).join(name);
    if committed.exists() {
        committed
    } else {
        dir.join(name)
    }
}

/// Write an adapter's encoded files (see [`encode`]) into `dir` as one unit: a kill, a full
/// disk or a power cut at any moment leaves either the previous adapter or the new one, never
/// new weights beside an old config.
///
/// Both files go to `STAGING_DIR`, each synced, then the directory is synced and renamed to
/// `COMMIT_DIR`: the commit point, after which the new adapter is the adapter. Then the old
/// config goes first (without a config the directory is no adapter to any loader), the new
/// weights and the new config are renamed into place, and the commit directory is removed,
/// with a sync of the directory after each step. [`load_dir`] reads a committed file in
/// preference to the one in place, and the next write finishes an interrupted one
/// ([`settle`]), so a kill between two renames is invisible to wgtune and never shows a
/// mixed pair to PEFT. A failure before the commit (e.g. no space left) removes the staging
/// files and leaves the previous adapter byte for byte.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_dir(dir: &Path, (weights, config): &(Vec<u8>, Vec<u8>)) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| err!("{}: cannot create: {e}", dir.display()))?;
    settle(dir)?;
    let staging = dir.join(STAGING_DIR);
    let staged = (|| {
        std::fs::create_dir(&staging)?;
        for (name, bytes) in [(WEIGHTS_FILE, weights), (CONFIG_FILE, config)] {
            write_synced(&staging.join(name), bytes)?;
        }
        sync_dir(&staging)
    })();
    if let Err(e) = staged {
        let _ = std::fs::remove_dir_all(&staging);
        let unchanged = if holds_adapter(dir) {
            "; the adapter already there is unchanged"
        } else {
            ""
        };
        bail!(
            "{}: cannot write the adapter ({e}){unchanged}",
            dir.display()
        );
    }
    let io = |what: &str, e: std::io::Error| err!("{}: cannot {what} ({e})", dir.display());
    std::fs::rename(&staging, dir.join(COMMIT_DIR)).map_err(|e| io("commit the adapter", e))?;
    sync_dir(dir).map_err(|e| io("sync", e))?;
    install(dir)
}

/// Move the committed files of `COMMIT_DIR` into place (see [`write_dir`]).
#[cfg(not(target_arch = "wasm32"))]
fn install(dir: &Path) -> Result<()> {
    let commit = dir.join(COMMIT_DIR);
    let io = |what: &str, e: std::io::Error| err!("{}: cannot {what} ({e})", dir.display());
    if commit.join(CONFIG_FILE).exists() {
        match std::fs::remove_file(dir.join(CONFIG_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("replace the adapter", e));
            }
            _ => sync_dir(dir).map_err(|e| io("sync", e))?,
        }
    }
    for name in [WEIGHTS_FILE, CONFIG_FILE] {
        #[cfg(feature = "test-hooks")]
        if name == CONFIG_FILE {
            crate::hooks::abort_at("adapter-between-renames");
        }
        let from = commit.join(name);
        if from.exists() {
            std::fs::rename(&from, dir.join(name)).map_err(|e| io("replace the adapter", e))?;
        }
    }
    sync_dir(dir).map_err(|e| io("sync", e))?;
    std::fs::remove_dir(&commit).map_err(|e| io("finish replacing the adapter", e))?;
    sync_dir(dir).map_err(|e| io("sync", e))
}

/// Finish what a killed [`write_dir`] left: committed files are moved into place, staging
/// files (never committed) are removed.
#[cfg(not(target_arch = "wasm32"))]
fn settle(dir: &Path) -> Result<()> {
    if dir.join(COMMIT_DIR).exists() {
        install(dir)?;
    }
    let staging = dir.join(STAGING_DIR);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .map_err(|e| err!("{}: cannot remove: {e}", staging.display()))?;
    }
    Ok(())
}

/// Create `path` with `bytes`, synced to the disk.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Sync a directory, so that the renames and removals inside it survive a power cut (on
/// Unix; elsewhere there is no portable way, and NTFS journals its metadata).
#[cfg(not(target_arch = "wasm32"))]
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The directory a file is in, for [`sync_dir`] (`.` for a bare name).
#[cfg(not(target_arch = "wasm32"))]
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write `bytes` to `path` through a synced temporary file in the same directory, a rename,
/// and a sync of the directory: the file is the old one or the new one, never a part.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    if let Err(e) = write_synced(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        bail!("{}: cannot write ({e})", path.display());
    }
    std::fs::rename(&tmp, path)
        .and_then(|_| sync_dir(parent(path)))
        .map_err(|e| err!("{}: cannot rename into place: {e}", path.display()))
}

/// `<dir>.<suffix>` beside `dir`.
#[cfg(not(target_arch = "wasm32"))]
pub fn sibling(dir: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

/// Move the complete directory `new` (its files synced) to `dir`, replacing an older one:
/// `dir` goes aside to `<dir>.old`, `new` takes its name, the parent is synced, and the old
/// one is removed. A kill between the two renames leaves no `dir` but both complete sets;
/// [`current_dir`] reads the new one and [`settle_dir`] puts it in place.
#[cfg(not(target_arch = "wasm32"))]
pub fn replace_dir(new: &Path, dir: &Path) -> Result<()> {
    let old = sibling(dir, "old");
    let up = parent(dir);
    let io = |what: &str, p: &Path, e: std::io::Error| err!("{}: cannot {what}: {e}", p.display());
    sync_dir(new).map_err(|e| io("sync", new, e))?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| io("remove", &old, e))?;
        }
        std::fs::rename(dir, &old).map_err(|e| io("move aside", dir, e))?;
        #[cfg(feature = "test-hooks")]
        crate::hooks::abort_at("dir-between-renames");
        std::fs::rename(new, dir).map_err(|e| io("rename into place", new, e))?;
        sync_dir(up).map_err(|e| io("sync", up, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| io("remove", &old, e))?;
    } else {
        std::fs::rename(new, dir).map_err(|e| io("rename into place", new, e))?;
    }
    sync_dir(up).map_err(|e| io("sync", up, e))
}

/// The directory holding `dir`'s files as they stand: `dir`, or, after a kill inside
/// [`replace_dir`], the complete new set (`<dir>.partial`, which is complete once `<dir>.old`
/// exists) or the old one.
#[cfg(not(target_arch = "wasm32"))]
pub fn current_dir(dir: &Path) -> std::path::PathBuf {
    let (partial, old) = (sibling(dir, "partial"), sibling(dir, "old"));
    if dir.exists() || !old.exists() {
        dir.to_path_buf()
    } else if partial.exists() {
        partial
    } else {
        old
    }
}

/// Finish what a kill inside [`replace_dir`] left around `dir`: the complete set goes in
/// place, and stale `<dir>.old` / `<dir>.partial` directories are removed.
#[cfg(not(target_arch = "wasm32"))]
pub fn settle_dir(dir: &Path) -> Result<()> {
    let current = current_dir(dir);
    if current != dir {
        std::fs::rename(&current, dir)
            .map_err(|e| err!("{}: cannot rename into place: {e}", current.display()))?;
    }
    for stale in [sibling(dir, "old"), sibling(dir, "partial")] {
        if stale.exists() {
            std::fs::remove_dir_all(&stale)
                .map_err(|e| err!("{}: cannot remove: {e}", stale.display()))?;
        }
    }
    sync_dir(parent(dir)).map_err(|e| err!("{}: cannot sync: {e}", parent(dir).display()))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::lora::init_params;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("wgtune-adapter-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// Two adapters of different ranks for the same model: mixing their files is detectable.
    fn two_adapters() -> (Gpt2Config, [(LoraConfig, Vec<f32>, (Vec<u8>, Vec<u8>)); 2]) {
        let model = Gpt2Config::preset_shape("distilgpt2").unwrap();
        let make = |r: usize, seed: u64| {
            let lora = LoraConfig {
                r,
                lora_alpha: 8.0,
                lora_dropout: 0.0,
                target_modules: vec!["c_attn".into()],
                use_rslora: false,
            };
            let layout = Layout::new(&model, &lora);
            let params = init_params(&layout, r, seed);
            let files = encode(&lora, &layout, &params, "m", model.n_layer, false).unwrap();
            (lora, params, files)
        };
        (model.clone(), [make(2, 1), make(4, 2)])
    }

    /// The state a kill between the two renames of [`install`] leaves (the old config gone,
    /// the new weights in place, the new config still in the commit directory) reads as the
    /// new adapter, and the next write finishes it and then writes its own.
    #[test]
    fn a_write_killed_between_its_renames_reads_as_the_new_adapter() {
        let dir = scratch("killed");
        let (model, [(_, _, old), (new_lora, new_params, new)]) = two_adapters();
        write_dir(&dir, &old).unwrap();
        std::fs::remove_file(dir.join(CONFIG_FILE)).unwrap();
        std::fs::write(dir.join(WEIGHTS_FILE), &new.0).unwrap();
        std::fs::create_dir(dir.join(COMMIT_DIR)).unwrap();
        std::fs::write(dir.join(COMMIT_DIR).join(CONFIG_FILE), &new.1).unwrap();
        assert!(holds_adapter(&dir));
        let (lora, params) = load_dir(&dir, &model).unwrap();
        assert_eq!((lora, params), (new_lora, new_params));

        write_dir(&dir, &old).unwrap();
        assert_eq!(names(&dir), [CONFIG_FILE, WEIGHTS_FILE]);
        assert_eq!(std::fs::read(dir.join(WEIGHTS_FILE)).unwrap(), old.0);
        assert_eq!(std::fs::read(dir.join(CONFIG_FILE)).unwrap(), old.1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Staging files of a write that never committed are dropped; the adapter in place stays.
    #[test]
    fn an_uncommitted_write_is_dropped() {
        let dir = scratch("uncommitted");
        let (model, [(old_lora, old_params, old), (_, _, new)]) = two_adapters();
        write_dir(&dir, &old).unwrap();
        std::fs::create_dir(dir.join(STAGING_DIR)).unwrap();
        std::fs::write(dir.join(STAGING_DIR).join(WEIGHTS_FILE), &new.0).unwrap();
        assert_eq!(load_dir(&dir, &model).unwrap(), (old_lora, old_params));
        write_dir(&dir, &new).unwrap();
        assert_eq!(names(&dir), [CONFIG_FILE, WEIGHTS_FILE]);
        assert_eq!(std::fs::read(dir.join(CONFIG_FILE)).unwrap(), new.1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A kill between the two renames of [`replace_dir`] leaves no directory under its name
    /// but the old set aside and the complete new one: the new one is read, and settling puts
    /// it in place and removes the rest.
    #[test]
    fn a_directory_swap_killed_between_its_renames_reads_as_the_new_set() {
        let root = scratch("swap");
        let dir = root.join("checkpoint-3");
        for (d, bytes) in [
            (sibling(&dir, "old"), b"old"),
            (sibling(&dir, "partial"), b"new"),
        ] {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("f"), bytes).unwrap();
        }
        assert_eq!(std::fs::read(current_dir(&dir).join("f")).unwrap(), b"new");
        settle_dir(&dir).unwrap();
        assert_eq!(names(&root), ["checkpoint-3"]);
        assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"new");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
