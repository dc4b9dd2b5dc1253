//! The merge as a stream: fed the base `model.safetensors` in chunks (file order), it emits
//! the merged `model.safetensors` in order, holding at most one tensor. The page needs this
//! (wasm32 cannot hold gpt2-large's 3.1 GB, let alone gpt2-xl), and `merge_dir` uses it too,
//! so the CLI and the page write the same bytes.
//!
//! Output: the header first, as soon as the input header is in (every size is known from
//! it): F32 tensors (GPT-2's named `transformer.*`, its attention-mask buffers and tied
//! `lm_head.weight` dropped; the Llama family's under their own names, RoPE buffers and a
//! tied `lm_head.weight` dropped), in the input's data order (safetensors readers sort by
//! offset, so any order is valid). Then each tensor once its input bytes are complete: F32
//! tensors that no adapter touches pass through as they arrive; the others are converted to
//! F32 and, for a targeted weight, get the LoRA delta ([`add_delta`] on GPT-2's Conv1D
//! `(in,out)`, [`add_delta_linear`] on an nn.Linear `(out,in)`).

use std::path::{Path, PathBuf};

use safetensors::Dtype;

use crate::error::Result;
use crate::lora::{Layout, LoraConfig};
use crate::model::ModelConfig;
use crate::model::llama::Llama;
use crate::model::load::{check_tensors, to_f32};
use crate::model::stream_load::{Header, Slot};
use crate::{bail, err};

/// Conv1D `W (in,out) += scale · (B·A)ᵀ`, i.e. `W[k][n] += scale · Σ_j B[n][j]·A[j][k]`, with
/// A `(r,in)` and B `(out,r)` as PEFT stores them; summed in f64 so that the result does not
/// depend on the order of the r products.
pub fn add_delta(w: &mut [f32], a: &[f32], b: &[f32], r: usize, scale: f32) {
    let k_in = a.len() / r.max(1);
    let n_out = b.len() / r.max(1);
    debug_assert_eq!(w.len(), k_in * n_out);
    for k in 0..k_in {
        for n in 0..n_out {
            let d: f64 = (0..r)
                .map(|j| b[n * r + j] as f64 * a[j * k_in + k] as f64)
                .sum();
            w[k * n_out + n] += (scale as f64 * d) as f32;
        }
    }
}

/// nn.Linear `W (out,in) += scale · B·A`, i.e. `W[n][k] += scale · Σ_j B[n][j]·A[j][k]`
/// (the Llama family's layout), summed in f64 as [`add_delta`].
pub fn add_delta_linear(w: &mut [f32], a: &[f32], b: &[f32], r: usize, scale: f32) {
    let k_in = a.len() / r.max(1);
    let n_out = b.len() / r.max(1);
    debug_assert_eq!(w.len(), k_in * n_out);
    for n in 0..n_out {
        for k in 0..k_in {
            let d: f64 = (0..r)
                .map(|j| b[n * r + j] as f64 * a[j * k_in + k] as f64)
                .sum();
            w[n * k_in + k] += (scale as f64 * d) as f32;
        }
    }
}

/// Whether a GPT-2 checkpoint tensor is left out of a merged model, as `save_pretrained` of
/// a `GPT2LMHeadModel` leaves it out: the causal-mask buffers and the head tied to `wte`.
pub fn dropped(name: &str) -> bool {
    name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") || name == "lm_head.weight"
}

/// Whether a Llama-family checkpoint tensor is left out: old checkpoints' RoPE buffers, and
/// an `lm_head.weight` that config.json ties to the embedding (save_pretrained keeps one).
fn dropped_llama(name: &str, tied: bool) -> bool {
    name.ends_with(".rotary_emb.inv_freq") || (tied && name == "lm_head.weight")
}

/// One input tensor and what becomes of it.
struct Out {
    slot: Slot,
    /// `None` when dropped.
    name: Option<String>,
    /// When LoRA targets this weight: the ranges of A `(r,in)` and B `(out,r)` in the adapter
    /// parameters, as (a start, a end, b start, b end).
    lora: Option<(usize, usize, usize, usize)>,
}

/// Feed with [`Self::push`] (chunks of any size, in file order), then [`Self::finish`].
pub struct MergeStream {
    config: ModelConfig,
    layout: Layout,
    r: usize,
    scale: f32,
    params: Vec<f32>,
    path: PathBuf,
    header: Header,
    received: u64,
    /// Set once the input header is in.
    plan: Option<Vec<Out>>,
    next: usize,
    /// The input bytes of `plan[next]` so far, when it is converted or merged.
    buf: Vec<u8>,
    /// Output bytes emitted so far, and the output's size once known.
    emitted: u64,
    out_total: Option<u64>,
}

impl MergeStream {
    /// A merge of the adapter `(lora, params)` (the flat layout of [`Layout::new`]) into the
    /// checkpoint of `config`; `path` names the input in errors.
    pub fn new(config: ModelConfig, lora: &LoraConfig, params: Vec<f32>, path: &Path) -> Self {
        Self {
            layout: Layout::new(&config, lora),
            config,
            r: lora.r,
            scale: lora.scale(),
            params,
            path: path.to_path_buf(),
            header: Header::default(),
            received: 0,
            plan: None,
            next: 0,
            buf: Vec::new(),
            emitted: 0,
            out_total: None,
        }
    }

    /// Input bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Output bytes emitted so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// The merged file's size, once the input header is in.
    pub fn total(&self) -> Option<u64> {
        self.out_total
    }

    /// Take the next input bytes; `emit` gets the output bytes as they become final, in order.
    pub fn push(
        &mut self,
        mut chunk: &[u8],
        emit: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        if self.plan.is_none() {
            let (taken, table) = self.header.take(chunk, &self.path)?;
            self.received += taken as u64;
            chunk = &chunk[taken..];
            let Some((_, table)) = table else {
                return Ok(());
            };
            let head = self.plan(table)?;
            self.put(&head, emit)?;
        }
        // Disjoint borrows: the plan is read while the counters and buffer change.
        let Self {
            plan,
            next,
            buf,
            emitted,
            received,
            params,
            r,
            scale,
            path,
            config,
            ..
        } = self;
        let delta = match config {
            ModelConfig::Gpt2(_) => add_delta,
            ModelConfig::Llama(_) => add_delta_linear,
        };
        let plan = plan.as_ref().expect("plan");
        let merged = |out: &Out, raw: &[u8]| -> Result<Vec<u8>> {
            let mut values = to_f32(raw, out.slot.dtype, path, &out.slot.full)?.into_owned();
            if let Some((a, a_end, b, b_end)) = out.lora {
                delta(
                    &mut values,
                    &params[a..a_end],
                    &params[b..b_end],
                    *r,
                    *scale,
                );
            }
            Ok(bytemuck::cast_slice(&values).to_vec())
        };
        while !chunk.is_empty() {
            let Some(out) = plan.get(*next) else {
                // Bytes after the last tensor belong to no tensor.
                *received += chunk.len() as u64;
                return Ok(());
            };
            let s = &out.slot;
            let len = s.end - s.start;
            let take = chunk.len().min((s.end - *received) as usize);
            let (bytes, rest) = chunk.split_at(take);
            if out.name.is_some() {
                if s.dtype == Dtype::F32 && out.lora.is_none() {
                    emit(bytes)?;
                    *emitted += bytes.len() as u64;
                } else if buf.is_empty() && take as u64 == len {
                    // The whole tensor is inside this chunk: merge it from there.
                    let m = merged(out, bytes)?;
                    emit(&m)?;
                    *emitted += m.len() as u64;
                } else {
                    buf.extend_from_slice(bytes);
                    if buf.len() as u64 == len {
                        let m = merged(out, buf)?;
                        emit(&m)?;
                        *emitted += m.len() as u64;
                        // Release the tensor's bytes before the next one arrives.
                        *buf = Vec::new();
                    }
                }
            }
            *received += take as u64;
            chunk = rest;
            if *received == s.end {
                *next += 1;
            }
        }
        Ok(())
    }

    /// Emit bytes made here rather than taken from the input (the header).
    fn put(&mut self, bytes: &[u8], emit: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        emit(bytes)?;
        self.emitted += bytes.len() as u64;
        Ok(())
    }

    /// Check the input's table against the config and the adapter, decide each tensor's fate,
    /// and return the output's length field and header.
    fn plan(&mut self, table: Vec<Slot>) -> Result<Vec<u8>> {
        let info = |n: &str| {
            table
                .iter()
                .find(|s| s.full == n)
                .map(|s| (s.dtype, s.shape.as_slice()))
        };
        match &self.config {
            ModelConfig::Gpt2(c) => check_tensors(c, &self.path, info)?,
            ModelConfig::Llama(c) => Llama::check_tensors(c, &self.path, info)?,
        }
        let mut json = String::from(r#"{"__metadata__":{"format":"pt"}"#);
        let mut at: u64 = 0;
        let mut plan = Vec::with_capacity(table.len());
        for slot in table {
            // The output name, and the weight's name in the adapter's terms.
            let (name, dropped) = match &self.config {
                ModelConfig::Gpt2(_) => {
                    let short = slot.full.strip_prefix("transformer.").unwrap_or(&slot.full);
                    (format!("transformer.{short}"), dropped(&slot.full))
                }
                ModelConfig::Llama(c) => (
                    slot.full.clone(),
                    dropped_llama(&slot.full, c.tie_word_embeddings),
                ),
            };
            if dropped {
                plan.push(Out {
                    slot,
                    name: None,
                    lora: None,
                });
                continue;
            }
            let lora = self
                .layout
                .slots
                .iter()
                .find(|s| name == format!("{}.weight", s.module.full_name(s.layer)))
                .map(|s| (s.a, s.a + self.r * s.k_in, s.b, s.b + s.n_out * self.r));
            if let Some((_, a_end, _, b_end)) = lora
                && a_end.max(b_end) > self.params.len()
            {
                bail!(
                    "the adapter has {} parameters, too few for tensor {} (its layout needs {})",
                    self.params.len(),
                    slot.full,
                    self.layout.len
                );
            }
            let numel = slot.shape.iter().map(|&d| d as u64).product::<u64>();
            let end = at + 4 * numel;
            json.push_str(&format!(
                r#",{}:{{"dtype":"F32","shape":{},"data_offsets":[{at},{end}]}}"#,
                serde_json::to_string(&name).map_err(|e| err!("{name}: {e}"))?,
                serde_json::to_string(&slot.shape).map_err(|e| err!("{name}: {e}"))?,
            ));
            at = end;
            plan.push(Out {
                slot,
                name: Some(name),
                lora,
            });
        }
        json.push('}');
        // The data starts 8-aligned, as the safetensors crate pads it.
        while json.len() % 8 != 0 {
            json.push(' ');
        }
        let mut head = (json.len() as u64).to_le_bytes().to_vec();
        head.extend_from_slice(json.as_bytes());
        self.out_total = Some(head.len() as u64 + at);
        self.plan = Some(plan);
        Ok(head)
    }

    /// Done: a one-line error when the input ended early, naming the tensor it ended in.
    pub fn finish(self) -> Result<()> {
        let p = self.path.display();
        let Some(plan) = &self.plan else {
            bail!(
                "{p}: truncated: the file ended after {} bytes, inside its header; download it again",
                self.received
            );
        };
        if let Some(out) = plan.get(self.next) {
            let total = plan.last().map_or(0, |o| o.slot.end);
            let s = &out.slot;
            bail!(
                "{p}: truncated: the file ended after {} of {total} bytes, inside tensor {} ({} of its {} bytes); the merged model is incomplete",
                self.received,
                s.full,
                self.received.saturating_sub(s.start),
                s.end - s.start
            );
        }
        Ok(())
    }
}
