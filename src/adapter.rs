//! LoRA adapters in Hugging Face PEFT's format: `adapter_config.json` +
//! `adapter_model.safetensors` (keys `base_model.model.transformer.h.{i}.{module}.lora_A.weight`,
//! `base_model.model.model.layers.{i}.{module}.lora_A.weight` (r,in) and `.lora_B.weight`
//! (out,r), F32, metadata {"format":"pt"}), so that
//! `PeftModel.from_pretrained` loads what we write and we load what PEFT writes.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::Result;
use crate::lora::{Layout, LoraConfig, peft_prefix};
use crate::model::ModelConfig;
use crate::model::config::{Gpt2Config, MAX_LAYERS};
use crate::model::llama_config::LlamaConfig;
use crate::model::safetensors_file::widen;
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

/// `adapter_config.json` exactly as PEFT 0.21 writes it for a LoRA of `model` (same fields,
/// same JSON types; serde_json sorts keys as PEFT's `sort_keys=True`), with our settings.
/// `fan_in_fan_out` is true for GPT-2's Conv1D layers of a float base only: on an NF4 base
/// PEFT adapts bitsandbytes Linear4bit layers, and the Llama family's are nn.Linear.
pub fn config_json(
    cfg: &LoraConfig,
    base_model: &str,
    model: &ModelConfig,
    nf4_base: bool,
) -> Value {
    let fan_in_fan_out = matches!(model, ModelConfig::Gpt2(_)) && !nf4_base;
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
        "fan_in_fan_out": fan_in_fan_out,
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
        "target_modules": target_modules_json(cfg, model),
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

fn target_modules_json(cfg: &LoraConfig, model: &ModelConfig) -> Value {
    // PEFT saves all-linear expanded to the full names of the adapted modules; other targets
    // as given (its order is a Python set's; ours is sorted).
    if cfg.target_modules.iter().any(|t| t == "all-linear") {
        json!(cfg.full_target_names(model))
    } else {
        let mut v = cfg.target_modules.clone();
        v.sort();
        v.dedup();
        json!(v)
    }
}

/// Parse a PEFT `adapter_config.json` for `model`, checking that its targets are in the
/// model. Unknown fields from newer PEFT versions are ignored; every field that changes the
/// adapter's math is honoured as PEFT 0.21 does, or refused naming it.
pub fn parse_config_for(text: &str, path: &Path, model: &ModelConfig) -> Result<LoraConfig> {
    let cfg = parse(text, path, model)?;
    cfg.validate_for(model)
        .map_err(|e| err!("{}: {e}", path.display()))?;
    Ok(cfg)
}

/// [`parse_config_for`] without a model: PEFT's target rules (a regular expression, layer
/// indexes, exclusions) are resolved for the largest GPT-2 wgtune accepts, or, where they
/// select none of its modules, the largest Llama; the targets are not checked against a
/// model.
pub fn parse_config(text: &str, path: &Path) -> Result<LoraConfig> {
    let gpt2 = Gpt2Config::preset_shape("gpt2").expect("a preset");
    let gpt2 = ModelConfig::Gpt2(Gpt2Config {
        n_layer: MAX_LAYERS,
        ..gpt2
    });
    parse(text, path, &gpt2).or_else(|e| {
        let llama = LlamaConfig::preset_shape("smollm2-135m").expect("a preset");
        let llama = ModelConfig::Llama(LlamaConfig {
            num_hidden_layers: MAX_LAYERS,
            ..llama
        });
        parse(text, path, &llama).map_err(|_| e)
    })
}

/// Whether a JSON value leaves a PEFT option off: null, false, 0-length string, list or map.
fn unset(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Number(_)) | Some(Value::Bool(true)) => false,
    }
}

/// A JSON value for a one-line message: cut after 60 characters.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// LoraConfig fields (PEFT 0.21) that change what the adapter computes and that wgtune does not
/// implement: any value but null / false / empty is refused, with why.
const REFUSED_FIELDS: [(&str, &str); 13] = [
    ("use_dora", "DoRA adapters are not supported"),
    ("use_qalora", "QA-LoRA adapters are not supported"),
    ("lora_bias", "lora_bias adapters are not supported"),
    (
        "rank_pattern",
        "rank_pattern (per-module ranks) is not supported",
    ),
    (
        "alpha_pattern",
        "alpha_pattern (per-module alphas) is not supported",
    ),
    (
        "modules_to_save",
        "modules_to_save (whole modules trained and saved beside the LoRA weights) is not supported",
    ),
    (
        "layer_replication",
        "layer_replication (a model with repeated layers) is not supported",
    ),
    (
        "target_parameters",
        "target_parameters (LoRA on parameters rather than modules) is not supported",
    ),
    (
        "trainable_token_indices",
        "trainable_token_indices (trained embedding rows) is not supported",
    ),
    (
        "alora_invocation_tokens",
        "alora_invocation_tokens (activated LoRA) is not supported",
    ),
    (
        "arrow_config",
        "arrow_config (Arrow routing) is not supported",
    ),
    (
        "use_bdlora",
        "use_bdlora (block-diagonal LoRA) is not supported",
    ),
    (
        "monteclora_config",
        "monteclora_config (Monte Carlo LoRA) is not supported",
    ),
];

/// `init_lora_weights` values that change the base weights when PEFT creates the adapter
/// (PiSSA, OLoRA and CorDA subtract the adapter's start from them; LoftQ and LoRA-GA replace
/// them): such an adapter belongs to modified base weights, not to the model files wgtune
/// loads. Values that only choose A and B's start (true, false, "gaussian", "eva",
/// "orthogonal") do not matter once the weights are trained and saved.
fn init_changes_the_base(v: &Value) -> bool {
    match v {
        Value::Bool(_) | Value::Null => false,
        Value::String(s) => !matches!(s.as_str(), "gaussian" | "eva" | "orthogonal"),
        _ => true,
    }
}

/// Parse `adapter_config.json`, resolving PEFT's target rules on `model`'s module names.
fn parse(text: &str, path: &Path, model: &ModelConfig) -> Result<LoraConfig> {
    let p = path.display();
    let v: Value = serde_json::from_str(text).map_err(|e| err!("{p}: invalid JSON: {e}"))?;
    let Value::Object(o) = v else {
        bail!("{p}: expected a JSON object");
    };
    let peft_type = o.get("peft_type").and_then(Value::as_str).unwrap_or("LORA");
    if peft_type != "LORA" {
        bail!("{p}: peft_type {peft_type:?} is not LORA");
    }
    for (field, why) in REFUSED_FIELDS {
        if !unset(o.get(field)) {
            bail!("{p}: {field} is {}: {why}", short(&o[field]));
        }
    }
    if let Some(b) = o.get("bias").and_then(Value::as_str)
        && b != "none"
    {
        bail!(
            "{p}: bias {b:?} is not supported (only \"none\": trained biases are not saved as LoRA weights)"
        );
    }
    if let Some(init) = o.get("init_lora_weights")
        && init_changes_the_base(init)
    {
        bail!(
            "{p}: init_lora_weights {init} changes the base weights when PEFT creates the adapter, so this adapter does not apply to the original model: save it with PEFT's path_initial_model_for_weight_conversion to make a plain LoRA adapter"
        );
    }
    // fan_in_fan_out (true for GPT-2's Conv1D, which PEFT forces; false on a bitsandbytes
    // base), megatron_config (only for Megatron layers) and the init-only *_config fields
    // do not change the saved A and B or how they apply to this model.
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
    let targets = Targets::parse(&o, &p.to_string())?;
    let cfg = LoraConfig {
        r,
        lora_alpha,
        lora_dropout,
        target_modules: targets.resolve(model, &p.to_string())?,
        use_rslora,
    };
    cfg.validate().map_err(|e| err!("{p}: {e}"))?;
    Ok(cfg)
}

/// PEFT's rules for which modules an adapter adapts (`check_target_module_exists` in peft
/// 0.21's tuners_utils.py), on the module names of the transformers model.
struct Targets {
    /// A string `target_modules`: a regular expression the whole name must match
    /// (`re.fullmatch`). "all-linear" is PEFT's shorthand instead, kept as the name
    /// `all-linear`, which matches every adaptable Linear of the model.
    regex: Option<(String, regex::Regex)>,
    /// A list: names that match exactly, or as the last dot-separated parts of a name.
    names: Vec<String>,
    /// `exclude_modules`: a regular expression (string) or names (list), checked first.
    exclude: Option<Exclude>,
    /// `layers_to_transform` (an index or a list): only modules of these blocks, for names
    /// matched by their end; with the block index read by `layers_pattern`'s expressions.
    layers: Option<Vec<u64>>,
    layer_patterns: Vec<regex::Regex>,
}

enum Exclude {
    Regex(regex::Regex),
    Names(Vec<String>),
}

/// A Python `re` pattern for Rust's `regex` (the same syntax for what PEFT configs use; no
/// look-around or back-references), anchored as `re.fullmatch` (`full`) or `re.match`.
fn python_regex(pattern: &str, full: bool, field: &str, p: &str) -> Result<regex::Regex> {
    let anchored = if full {
        format!(r"\A(?:{pattern})\z")
    } else {
        format!(r"\A(?:{pattern})")
    };
    regex::Regex::new(&anchored).map_err(|e| {
        let why = e.to_string();
        let why = why
            .lines()
            .last()
            .unwrap_or("")
            .trim_start_matches("error: ");
        err!("{p}: {field} {pattern:?} is not a regular expression wgtune can use ({why})")
    })
}

fn strings(v: &Value, field: &str, p: &str) -> Result<Vec<String>> {
    let Value::Array(a) = v else {
        bail!("{p}: {field} must be a string or a list of strings");
    };
    a.iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .ok_or_else(|| err!("{p}: {field} must be a string or a list of strings"))
        })
        .collect()
}

impl Targets {
    fn parse(o: &serde_json::Map<String, Value>, p: &str) -> Result<Self> {
        let (regex, names) = match o.get("target_modules") {
            Some(Value::String(s)) if s.eq_ignore_ascii_case("all-linear") => {
                // PEFT replaces it with every Linear / Conv1D but the output layer before
                // matching: the blocks' Linears.
                (None, vec!["all-linear".to_string()])
            }
            Some(Value::String(s)) => (
                Some((s.clone(), python_regex(s, true, "target_modules", p)?)),
                Vec::new(),
            ),
            Some(v @ Value::Array(_)) => (None, strings(v, "target_modules", p)?),
            _ => bail!("{p}: missing \"target_modules\""),
        };
        let set = |field: &str| o.get(field).filter(|v| !unset(Some(v)));
        let exclude = match set("exclude_modules") {
            None => None,
            Some(Value::String(s)) => {
                Some(Exclude::Regex(python_regex(s, true, "exclude_modules", p)?))
            }
            Some(v) => Some(Exclude::Names(strings(v, "exclude_modules", p)?)),
        };
        let layers = match set("layers_to_transform") {
            None => None,
            Some(Value::Number(n)) => Some(vec![n.as_u64().ok_or_else(|| {
                err!("{p}: layers_to_transform must be a block index or a list of them")
            })?]),
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|x| {
                        x.as_u64().ok_or_else(|| {
                            err!("{p}: layers_to_transform must be a block index or a list of them")
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
            Some(_) => bail!("{p}: layers_to_transform must be a block index or a list of them"),
        };
        let patterns = match set("layers_pattern") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(v) => strings(v, "layers_pattern", p)?,
        };
        let layer_patterns = if patterns.is_empty() {
            vec![python_regex(
                r".*\.[^.]*\.(\d+)\.",
                false,
                "layers_pattern",
                p,
            )?]
        } else {
            patterns
                .iter()
                .map(|pat| {
                    python_regex(&format!(r".*\.{pat}\.(\d+)\."), false, "layers_pattern", p)
                })
                .collect::<Result<_>>()?
        };
        Ok(Self {
            regex,
            names,
            exclude,
            layers,
            layer_patterns,
        })
    }

    /// PEFT's decision for the module named `key` of `model`.
    fn targets(&self, key: &str, model: &ModelConfig) -> bool {
        let linear = model.linear_of(key).is_some();
        let ends = |n: &String| {
            key == n || key.ends_with(&format!(".{n}")) || (n == "all-linear" && linear)
        };
        match &self.exclude {
            Some(Exclude::Regex(r)) if r.is_match(key) => return false,
            Some(Exclude::Names(n)) if n.iter().any(ends) => return false,
            _ => {}
        }
        if let Some((_, r)) = &self.regex {
            return r.is_match(key);
        }
        if self.names.iter().any(|n| n == key) {
            // Named in full: no layer restriction.
            return true;
        }
        if !self.names.iter().any(ends) {
            return false;
        }
        let Some(layers) = &self.layers else {
            return true;
        };
        let index = self.layer_patterns.iter().find_map(|r| {
            r.captures(key)
                .and_then(|c| c.get(1))
                .and_then(|m| m.as_str().parse::<u64>().ok())
        });
        index.is_some_and(|i| layers.contains(&i))
    }

    /// The `target_modules` of the config in wgtune's terms: the list as it is when PEFT
    /// would match it the same way (names, with no exclusion or layer restriction), otherwise
    /// the full names of the adapted modules. A rule that selects a module other than a
    /// block's Linear (the embeddings, the LM head, a norm) or none is refused, naming the
    /// field.
    fn resolve(&self, model: &ModelConfig, p: &str) -> Result<Vec<String>> {
        if self.regex.is_none() && self.exclude.is_none() && self.layers.is_none() {
            return Ok(self.names.clone());
        }
        let field = match (&self.regex, &self.exclude, &self.layers) {
            (Some(_), _, _) => "target_modules",
            (_, Some(_), _) => "exclude_modules",
            _ => "layers_to_transform",
        };
        let mut out = Vec::new();
        for key in model.module_names() {
            if !self.targets(&key, model) {
                continue;
            }
            match model.linear_of(&key) {
                Some(_) => out.push(key),
                None => {
                    let names = model.target_names();
                    bail!(
                        "{p}: {field} selects {key}, which wgtune cannot adapt (only the blocks' {})",
                        names[..names.len() - 1].join(", ")
                    )
                }
            }
        }
        if out.is_empty() {
            let what = match &self.regex {
                Some((s, _)) => format!("target_modules {s:?}"),
                None => format!("target_modules {:?} with {field}", self.names),
            };
            let example = model.modules()[0].full_name(0);
            bail!(
                "{p}: {what} selects no module of {} (PEFT matches a string target_modules against whole names such as {example})",
                model.family()
            );
        }
        out.sort();
        Ok(out)
    }
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
    model: &ModelConfig,
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
            let values = lora_values(&t, path, &key)?;
            params[off..off + values.len()].copy_from_slice(&values);
            expected.insert(key);
        }
    }
    if let Some(extra) = st.names().into_iter().find(|n| !expected.contains(*n)) {
        bail!("{p}: unexpected tensor {extra} (not a LoRA weight of the configured targets)");
    }
    Ok(params)
}

/// An adapter tensor's values as f32 (from F32, F16 or BF16), refused with one line when one is
/// NaN or infinite: it would give a NaN loss (`eval` a "loss": null) far from here.
pub fn lora_values(
    t: &safetensors::tensor::TensorView<'_>,
    path: &Path,
    key: &str,
) -> Result<Vec<f32>> {
    let values = widen(t.data(), t.dtype(), path, key)?.into_owned();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: tensor {key} holds {} at element {i}: the adapter is damaged or was saved from a run that diverged",
            path.display(),
            values[i]
        );
    }
    Ok(values)
}

/// Read a PEFT adapter directory (as a write interrupted by a kill left it, the complete
/// adapter it was writing: see [`write_dir`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(dir: &Path, model: &ModelConfig) -> Result<(LoraConfig, Vec<f32>)> {
    let cpath = current_file(dir, CONFIG_FILE);
    let text = std::fs::read_to_string(&cpath).map_err(|e| {
        err!(
            "{}: cannot read ({e}); a PEFT adapter directory holds {CONFIG_FILE} and {WEIGHTS_FILE}",
            cpath.display()
        )
    })?;
    let cfg = parse_config_for(&text, &cpath, model)?;
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
    model: &ModelConfig,
    nf4_base: bool,
) -> Result<()> {
    write_dir(
        dir,
        &encode(cfg, layout, params, base_model, model, nf4_base)?,
    )
}

/// The bytes of [`WEIGHTS_FILE`] and [`CONFIG_FILE`] for an adapter: what the CLI writes and
/// the web app offers for download, identical for the same adapter.
pub fn encode(
    cfg: &LoraConfig,
    layout: &Layout,
    params: &[f32],
    base_model: &str,
    model: &ModelConfig,
    nf4_base: bool,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let weights = weights_bytes(layout, cfg.r, params)?;
    let config = serde_json::to_string_pretty(&config_json(cfg, base_model, model, nf4_base))
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
    let stale = [sibling(dir, "old"), sibling(dir, "partial")];
    if !stale.iter().any(|d| d.exists()) {
        return Ok(());
    }
    let current = current_dir(dir);
    if current != dir {
        std::fs::rename(&current, dir)
            .map_err(|e| err!("{}: cannot rename into place: {e}", current.display()))?;
    }
    for d in stale.iter().filter(|d| d.exists()) {
        std::fs::remove_dir_all(d).map_err(|e| err!("{}: cannot remove: {e}", d.display()))?;
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

    /// An adapter: its config, parameters and encoded files.
    type Adapter = (LoraConfig, Vec<f32>, (Vec<u8>, Vec<u8>));

    /// Two adapters of different ranks for the same model: mixing their files is detectable.
    fn two_adapters() -> (ModelConfig, [Adapter; 2]) {
        let model = ModelConfig::from(Gpt2Config::preset_shape("distilgpt2").unwrap());
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
            let files = encode(&lora, &layout, &params, "m", &model, false).unwrap();
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

/// Each PEFT field that changes which modules are adapted or how: honoured as PEFT 0.21's
/// `check_target_module_exists` decides, or refused naming the field.
#[cfg(test)]
mod peft_fields {
    use super::*;

    const P: &str = "adapter_config.json";

    /// A config of r=4 on `target_modules`, plus `extra` fields.
    fn config(target_modules: Value, extra: Value) -> String {
        let mut v =
            json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": target_modules});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v.to_string()
    }

    /// The full names of the modules a config adapts in a 3-block model.
    /// A GPT-2 of three blocks.
    fn gpt2_3() -> ModelConfig {
        let c = Gpt2Config::preset_shape("distilgpt2").unwrap();
        ModelConfig::from(Gpt2Config { n_layer: 3, ..c })
    }

    fn adapted(target_modules: Value, extra: Value) -> Vec<String> {
        let cfg = parse_config_for(&config(target_modules, extra), Path::new(P), &gpt2_3())
            .unwrap_or_else(|e| panic!("{e}"));
        cfg.full_target_names(&gpt2_3())
    }

    fn refused(target_modules: Value, extra: Value) -> String {
        match parse_config_for(&config(target_modules, extra), Path::new(P), &gpt2_3()) {
            Ok(c) => panic!("accepted: {:?}", c.target_modules),
            Err(e) => {
                assert!(
                    e.0.starts_with("adapter_config.json: ") && !e.0.contains('\n'),
                    "{e}"
                );
                e.0
            }
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|m| format!("transformer.h.{m}")).collect();
        v.sort();
        v
    }

    #[test]
    fn a_string_target_modules_is_a_regex_over_whole_module_names() {
        assert_eq!(
            adapted(json!(r".*\.h\.[01]\.attn\.c_attn"), json!({})),
            names(&["0.attn.c_attn", "1.attn.c_attn"])
        );
        assert_eq!(
            adapted(json!(r"transformer\.h\.2\.(attn|mlp)\.c_proj"), json!({})),
            names(&["2.attn.c_proj", "2.mlp.c_proj"])
        );
        // re.fullmatch: a bare name matches no whole module name (PEFT finds no target).
        let e = refused(json!("c_attn"), json!({}));
        assert!(
            e.contains("target_modules \"c_attn\" selects no module"),
            "{e}"
        );
        // Modules wgtune has no LoRA for (PEFT would adapt the embedding and the head).
        let e = refused(json!(r".*(c_fc|lm_head)"), json!({}));
        assert!(
            e.contains("target_modules selects lm_head, which wgtune cannot adapt"),
            "{e}"
        );
        let e = refused(json!(r"transformer\.wte"), json!({}));
        assert!(e.contains("selects transformer.wte"), "{e}");
        let e = refused(json!(r"(?!x).*c_attn"), json!({}));
        assert!(
            e.contains("is not a regular expression wgtune can use (look-around"),
            "{e}"
        );
        // PEFT's shorthand, in any case, is every Linear / Conv1D but the output layer.
        assert_eq!(
            adapted(json!("ALL-LINEAR"), json!({})),
            adapted(json!(["all-linear"]), json!({}))
        );
        // A regular expression ignores layers_to_transform (PEFT applies it to lists only).
        assert_eq!(
            adapted(json!(r".*c_fc"), json!({"layers_to_transform": [0]})),
            names(&["0.mlp.c_fc", "1.mlp.c_fc", "2.mlp.c_fc"])
        );
    }

    #[test]
    fn layers_to_transform_and_layers_pattern_restrict_the_blocks() {
        assert_eq!(
            adapted(json!(["c_attn"]), json!({"layers_to_transform": [0, 2]})),
            names(&["0.attn.c_attn", "2.attn.c_attn"])
        );
        assert_eq!(
            adapted(
                json!(["c_fc"]),
                json!({"layers_to_transform": 1, "layers_pattern": "h"})
            ),
            names(&["1.mlp.c_fc"])
        );
        assert_eq!(
            adapted(
                json!(["c_fc"]),
                json!({"layers_to_transform": [1], "layers_pattern": ["blocks", "h"]})
            ),
            names(&["1.mlp.c_fc"])
        );
        // A module named in full is not restricted (PEFT's `key in target_modules`).
        assert_eq!(
            adapted(
                json!(["c_attn", "transformer.h.1.mlp.c_fc"]),
                json!({"layers_to_transform": [0]})
            ),
            names(&["0.attn.c_attn", "1.mlp.c_fc"])
        );
        // GPT-2's blocks are `h`: another pattern finds no block index, so nothing.
        let e = refused(
            json!(["c_attn"]),
            json!({"layers_to_transform": [0], "layers_pattern": "layers"}),
        );
        assert!(
            e.contains("with layers_to_transform selects no module"),
            "{e}"
        );
        // Off: null, an empty list, an empty pattern.
        for off in [
            json!({"layers_to_transform": null}),
            json!({"layers_to_transform": []}),
            json!({"layers_pattern": ""}),
        ] {
            let cfg =
                parse_config_for(&config(json!(["c_attn"]), off), Path::new(P), &gpt2_3()).unwrap();
            assert_eq!(cfg.target_modules, ["c_attn"]);
        }
        let e = refused(json!(["c_attn"]), json!({"layers_to_transform": "0"}));
        assert!(
            e.contains("layers_to_transform must be a block index or a list of them"),
            "{e}"
        );
    }

    #[test]
    fn exclude_modules_removes_modules_by_name_suffix_or_regex() {
        assert_eq!(
            adapted(
                json!(["c_attn"]),
                json!({"exclude_modules": ["transformer.h.1.attn.c_attn"]})
            ),
            names(&["0.attn.c_attn", "2.attn.c_attn"])
        );
        assert_eq!(
            adapted(json!(["all-linear"]).clone(), json!({}))
                .into_iter()
                .filter(|n| !n.ends_with("c_proj"))
                .collect::<Vec<_>>(),
            adapted(json!("all-linear"), json!({"exclude_modules": ["c_proj"]}))
        );
        assert_eq!(
            adapted(json!(["c_fc"]), json!({"exclude_modules": r".*\.h\.0\..*"})),
            names(&["1.mlp.c_fc", "2.mlp.c_fc"])
        );
        for off in [json!(null), json!([]), json!("")] {
            let cfg = parse_config_for(
                &config(json!(["c_fc"]), json!({"exclude_modules": off})),
                Path::new(P),
                &gpt2_3(),
            )
            .unwrap();
            assert_eq!(cfg.target_modules, ["c_fc"]);
        }
    }

    #[test]
    fn per_module_ranks_and_saved_modules_are_refused_unless_empty() {
        for field in ["rank_pattern", "alpha_pattern"] {
            for off in [json!(null), json!({})] {
                assert!(
                    parse_config_for(
                        &config(json!(["c_attn"]), json!({field: off})),
                        Path::new(P),
                        &gpt2_3()
                    )
                    .is_ok()
                );
            }
            let e = refused(
                json!(["c_attn"]),
                json!({field: {"transformer.h.0.attn.c_attn": 2}}),
            );
            assert!(
                e.contains(&format!("{field} is {{")) && e.contains("not supported"),
                "{e}"
            );
        }
        for off in [json!(null), json!([])] {
            assert!(
                parse_config_for(
                    &config(json!(["c_attn"]), json!({"modules_to_save": off})),
                    Path::new(P),
                    &gpt2_3()
                )
                .is_ok()
            );
        }
        let e = refused(json!(["c_attn"]), json!({"modules_to_save": ["lm_head"]}));
        assert!(e.contains("modules_to_save is [\"lm_head\"]"), "{e}");
    }

    #[test]
    fn other_fields_that_change_the_math_are_refused_and_harmless_ones_accepted() {
        for (field, value) in [
            ("use_dora", json!(true)),
            ("use_qalora", json!(true)),
            ("lora_bias", json!(true)),
            ("layer_replication", json!([[0, 2], [1, 3]])),
            ("target_parameters", json!(["mlp.experts.gate_up_proj"])),
            ("trainable_token_indices", json!([1, 2])),
            ("alora_invocation_tokens", json!([50256])),
            ("arrow_config", json!({"top_k": 2})),
            ("use_bdlora", json!({"block": 2})),
            ("monteclora_config", json!({"n": 4})),
        ] {
            let e = refused(json!(["c_attn"]), json!({field: value}));
            assert!(e.contains(&format!("{field} is ")), "{field}: {e}");
        }
        let e = refused(json!(["c_attn"]), json!({"bias": "lora_only"}));
        assert!(e.contains("bias \"lora_only\" is not supported"), "{e}");
        for init in [
            "pissa",
            "pissa_niter_4",
            "olora",
            "corda",
            "loftq",
            "lora_ga",
        ] {
            let e = refused(json!(["c_attn"]), json!({"init_lora_weights": init}));
            assert!(e.contains("changes the base weights"), "{init}: {e}");
        }
        // Values that change nothing wgtune computes, including PEFT's fan_in_fan_out (true
        // for GPT-2's Conv1D, false on a bitsandbytes base: the saved A and B are the same).
        let plain = parse_config_for(
            &config(json!(["c_attn"]), json!({})),
            Path::new(P),
            &gpt2_3(),
        )
        .unwrap();
        for (field, value) in [
            ("fan_in_fan_out", json!(true)),
            ("fan_in_fan_out", json!(false)),
            ("init_lora_weights", json!(true)),
            ("init_lora_weights", json!(false)),
            ("init_lora_weights", json!("gaussian")),
            ("init_lora_weights", json!("eva")),
            ("megatron_config", json!({"tensor_model_parallel_size": 1})),
            ("use_dora", json!(false)),
            ("bias", json!("none")),
            ("layer_replication", json!(null)),
        ] {
            let cfg = parse_config_for(
                &config(json!(["c_attn"]), json!({field: value})),
                Path::new(P),
                &gpt2_3(),
            )
            .unwrap_or_else(|e| panic!("{field}: {e}"));
            assert_eq!(cfg, plain, "{field}");
        }
        let rs = parse_config_for(
            &config(json!(["c_attn"]), json!({"use_rslora": true})),
            Path::new(P),
            &gpt2_3(),
        )
        .unwrap();
        assert_eq!(rs.scale(), 8.0 / 2.0);
        assert_eq!(plain.scale(), 8.0 / 4.0);
    }

    /// What wgtune writes (every field PEFT 0.21 writes, at its default) reads back the same.
    #[test]
    fn our_own_config_reads_back_unchanged() {
        let cfg = parse_config_for(
            &config(json!(["c_proj", "c_attn"]), json!({})),
            Path::new(P),
            &gpt2_3(),
        )
        .unwrap();
        let written = config_json(&cfg, "base", &gpt2_3(), false).to_string();
        let back = parse_config_for(&written, Path::new(P), &gpt2_3()).unwrap();
        assert_eq!(
            back.full_target_names(&gpt2_3()),
            cfg.full_target_names(&gpt2_3())
        );
        assert_eq!(
            (back.r, back.lora_alpha, back.use_rslora),
            (cfg.r, cfg.lora_alpha, cfg.use_rslora)
        );
    }
}
