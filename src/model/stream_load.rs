//! Building a model (GPT-2, or the Llama family) from a `model.safetensors` that arrives in
//! chunks, in file order: a download read chunk by chunk, or a picked file read in slices.
//!
//! The page cannot hold a whole checkpoint (wasm32 addresses 4 GiB; gpt2-large is 3.1 GB in
//! f32, gpt2-xl 6.4 GB), so [`StreamLoader`] keeps at most one tensor on the host: once the
//! header is in, every expected weight is checked (name, dtype, shape) before anything is
//! uploaded; then each tensor is converted and uploaded as soon as its last byte arrives, and
//! tensors the model does not use (`.attn.bias` masks, a tied `lm_head.weight`) are skipped
//! without being buffered. Conversion, upload and assembly are [`super::load`]'s, shared with
//! `Gpt2::load` and `Llama::load`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::Dtype;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::family::Model;
use crate::model::gpt2::Quant;
use crate::model::llama::Llama;
use crate::model::load::{Parts, check_tensors, expected_weights, name_prefix, to_f32};
use crate::model::model_config::ModelConfig;
use crate::model::safetensors_file::to_f32_at;
use crate::{bail, err};

/// The largest header accepted (the safetensors crate's own limit): a corrupt length field
/// must not make the loader buffer gigabytes before it can tell the file is bad.
const MAX_HEADER: u64 = 100_000_000;

/// One tensor of the file, in file order.
pub(crate) struct Slot {
    /// The name in the file (with any prefix).
    pub full: String,
    /// The model's name for it (no prefix), or `None` when the model does not use it.
    pub wanted: Option<String>,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file (relative to the data until [`Header::take`] shifts
    /// it).
    pub start: u64,
    pub end: u64,
}

/// The file's layout, known once the header is in.
struct Plan {
    /// Where tensor data begins (after the length field and header).
    data_start: u64,
    slots: Vec<Slot>,
    /// The slot whose bytes arrive next.
    next: usize,
    /// Bytes of `slots[next]` so far (when wanted and split across chunks), in u32 words so
    /// that an F32 tensor is converted in place.
    buf: Vec<u32>,
    filled: usize,
    /// The token embedding, when it is kept in f16: converted as its bytes arrive.
    table: Option<F16Table>,
}

/// The f16 token-embedding table, converted from the file's dtype chunk by chunk: `wte` is the
/// largest tensor, and this way the host never holds it in f32 (half the memory).
struct F16Table {
    /// Two f16 per word, as the upload wants them.
    words: Vec<u32>,
    /// Elements converted so far.
    done: usize,
    /// The start of an element split across chunks.
    carry: Vec<u8>,
}

impl F16Table {
    fn new(elements: usize) -> Self {
        Self {
            words: vec![0; elements.div_ceil(2)],
            done: 0,
            carry: Vec::new(),
        }
    }

    fn push(&mut self, mut bytes: &[u8], slot: &Slot, path: &Path) -> Result<()> {
        let size = slot.dtype.bitsize() / 8;
        if !self.carry.is_empty() {
            let more = (size - self.carry.len()).min(bytes.len());
            self.carry.extend_from_slice(&bytes[..more]);
            bytes = &bytes[more..];
            if self.carry.len() < size {
                return Ok(());
            }
            let element = std::mem::take(&mut self.carry);
            self.convert(&element, slot, path)?;
        }
        let whole = bytes.len() / size * size;
        self.convert(&bytes[..whole], slot, path)?;
        self.carry.extend_from_slice(&bytes[whole..]);
        Ok(())
    }

    fn convert(&mut self, raw: &[u8], slot: &Slot, path: &Path) -> Result<()> {
        let values = to_f32_at(raw, slot.dtype, path, &slot.full, self.done)?;
        let table = bytemuck::cast_slice_mut::<u32, half::f16>(&mut self.words);
        for (h, &v) in table[self.done..self.done + values.len()]
            .iter_mut()
            .zip(values.iter())
        {
            *h = half::f16::from_f32(v);
        }
        self.done += values.len();
        Ok(())
    }
}

/// One header entry. Offsets are u64: on wasm32 `usize` is 32 bits, and the safetensors
/// crate's own header type cannot describe a file past 4 GiB (gpt2-xl is 6.4 GB).
#[derive(serde::Deserialize)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// The tensors of a safetensors header in file order, with offsets relative to the data,
/// checked as the format requires: contiguous from 0, each as long as its dtype and shape say.
pub(crate) fn parse_header(json: &[u8], path: &Path) -> Result<Vec<Slot>> {
    let p = path.display();
    let bad = |why: String| {
        err!("{p}: not a valid safetensors file ({why}): truncated or corrupt? download it again")
    };
    let map: HashMap<String, serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let mut slots = Vec::with_capacity(map.len());
    for (full, value) in map {
        if full == "__metadata__" {
            continue;
        }
        let e: Entry =
            serde_json::from_value(value).map_err(|e| bad(format!("tensor {full}: {e}")))?;
        slots.push(Slot {
            wanted: None,
            dtype: e.dtype,
            start: e.data_offsets.0,
            end: e.data_offsets.1,
            shape: e.shape,
            full,
        });
    }
    slots.sort_by_key(|s| (s.start, s.end));
    let mut at = 0;
    for s in &slots {
        let bits = s
            .shape
            .iter()
            .try_fold(s.dtype.bitsize() as u64, |n, &d| n.checked_mul(d as u64));
        if s.start != at || bits != s.end.checked_sub(s.start).and_then(|b| b.checked_mul(8)) {
            return Err(bad(format!(
                "tensor {} has data offsets [{}, {}] that do not follow the previous tensor at {at} or do not fit its {:?} {:?}",
                s.full, s.start, s.end, s.dtype, s.shape
            )));
        }
        at = s.end;
    }
    Ok(slots)
}

/// A complete header: where the data begins, and the tensors in file order.
pub(crate) type Table = (u64, Vec<Slot>);

/// The length field and JSON header at the start of a streamed safetensors file, collected
/// across chunks: shared by [`StreamLoader`] and `merge::MergeStream`, so both read the
/// format through one parser ([`parse_header`]).
#[derive(Default)]
pub(crate) struct Header {
    head: Vec<u8>,
}

impl Header {
    /// Take the header's bytes from the front of `chunk`: how many were taken, and, once the
    /// header is complete, its tensors in file order with absolute byte ranges, and where the
    /// data begins.
    pub(crate) fn take(&mut self, chunk: &[u8], path: &Path) -> Result<(usize, Option<Table>)> {
        let mut taken = 0;
        if self.head.len() < 8 {
            taken = chunk.len().min(8 - self.head.len());
            self.head.extend_from_slice(&chunk[..taken]);
            if self.head.len() < 8 {
                return Ok((taken, None));
            }
        }
        let n = u64::from_le_bytes(self.head[..8].try_into().expect("8 bytes"));
        if n > MAX_HEADER {
            bail!(
                "{}: not a valid safetensors file (its header claims {n} bytes): truncated or corrupt? download it again",
                path.display()
            );
        }
        let want = (8 + n - self.head.len() as u64) as usize;
        let more = want.min(chunk.len() - taken);
        self.head.extend_from_slice(&chunk[taken..taken + more]);
        taken += more;
        if self.head.len() as u64 != 8 + n {
            return Ok((taken, None));
        }
        let data_start = self.head.len() as u64;
        let mut slots = parse_header(&self.head[8..], path)?;
        for s in &mut slots {
            s.start += data_start;
            s.end += data_start;
        }
        self.head = Vec::new();
        Ok((taken, Some((data_start, slots))))
    }
}

/// Feed with [`Self::push`] (chunks of any size, in file order), then [`Self::finish`].
pub struct StreamLoader<'g> {
    gpu: &'g Gpu,
    config: ModelConfig,
    path: PathBuf,
    /// Bytes of the file received so far.
    received: u64,
    /// The length field and header, while incomplete.
    head: Header,
    plan: Option<Plan>,
    parts: Parts,
}

impl<'g> StreamLoader<'g> {
    /// A loader for the checkpoint of `config`; `path` (a file name or URL) names it in errors.
    pub fn new(gpu: &'g Gpu, config: impl Into<ModelConfig>, quant: Quant, path: &Path) -> Self {
        let config = config.into();
        Self {
            gpu,
            config,
            path: path.to_path_buf(),
            received: 0,
            head: Header::default(),
            plan: None,
            parts: Parts::new(quant),
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The file's length, once the header is in.
    pub fn total(&self) -> Option<u64> {
        self.plan
            .as_ref()
            .map(|p| p.slots.last().map_or(p.data_start, |s| s.end))
    }

    /// Bytes of the file whose tensors are uploaded (or skipped): the header and every
    /// complete tensor.
    pub fn built(&self) -> u64 {
        match &self.plan {
            None => 0,
            Some(p) => p
                .slots
                .get(p.next)
                .map_or(self.received, |s| s.start.min(self.received)),
        }
    }

    /// Take the next bytes of the file: check the header when it completes, upload every
    /// tensor that completes.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<()> {
        if self.plan.is_none() {
            let taken = self.take_header(chunk)?;
            chunk = &chunk[taken..];
        }
        let Some(plan) = self.plan.as_mut() else {
            return Ok(());
        };
        while !chunk.is_empty() {
            let Some(slot) = plan.slots.get(plan.next) else {
                // Bytes after the last tensor are not part of any tensor: ignore them.
                self.received += chunk.len() as u64;
                return Ok(());
            };
            let len = (slot.end - slot.start) as usize;
            let take = chunk.len().min((slot.end - self.received) as usize);
            let (bytes, rest) = chunk.split_at(take);
            if let Some(name) = &slot.wanted {
                if self.parts.f16_table(name, &slot.shape) {
                    let elements = slot.shape.iter().product();
                    let table = plan.table.get_or_insert_with(|| F16Table::new(elements));
                    table.push(bytes, slot, &self.path)?;
                    plan.filled += take;
                    if plan.filled == len {
                        let table = plan.table.take().expect("the table being converted");
                        self.parts.insert_f16_table(self.gpu, name, &table.words);
                        plan.filled = 0;
                    }
                } else if plan.filled == 0 && take == len {
                    // The whole tensor is inside this chunk: convert it from there.
                    let values = to_f32(bytes, slot.dtype, &self.path, &slot.full)?;
                    self.parts.upload(self.gpu, name, &slot.shape, &values);
                } else {
                    if plan.filled == 0 {
                        plan.buf = vec![0; len.div_ceil(4)];
                    }
                    let words: &mut [u8] = bytemuck::cast_slice_mut(&mut plan.buf);
                    words[plan.filled..plan.filled + take].copy_from_slice(bytes);
                    plan.filled += take;
                    if plan.filled == len {
                        let raw = &bytemuck::cast_slice::<u32, u8>(&plan.buf)[..len];
                        let values = to_f32(raw, slot.dtype, &self.path, &slot.full)?;
                        self.parts.upload(self.gpu, name, &slot.shape, &values);
                        // Release the tensor's bytes before the next one arrives.
                        plan.buf = Vec::new();
                        plan.filled = 0;
                    }
                }
            }
            self.received += take as u64;
            chunk = rest;
            if self.received == slot.end {
                plan.next += 1;
            }
        }
        Ok(())
    }

    /// Collect the length field and header from `chunk`; once complete, parse and check it.
    /// Returns how many bytes of `chunk` belonged to the header.
    fn take_header(&mut self, chunk: &[u8]) -> Result<usize> {
        let (taken, table) = self.head.take(chunk, &self.path)?;
        self.received += taken as u64;
        if let Some((data_start, table)) = table {
            self.plan = Some(self.plan_from_header(data_start, table)?);
        }
        Ok(taken)
    }

    /// Check the complete header against the config: the file order of the tensors, and
    /// which of them the model takes.
    fn plan_from_header(&mut self, data_start: u64, mut table: Vec<Slot>) -> Result<Plan> {
        let info = |n: &str| {
            table
                .iter()
                .find(|s| s.full == n)
                .map(|s| (s.dtype, s.shape.as_slice()))
        };
        let (prefix, expected) = match &self.config {
            ModelConfig::Gpt2(c) => {
                check_tensors(c, &self.path, info)?;
                let prefix = name_prefix(|n| table.iter().any(|s| s.full == n));
                (prefix, expected_weights(c))
            }
            ModelConfig::Llama(c) => {
                Llama::check_tensors(c, &self.path, info)?;
                ("", Llama::expected_weights(c))
            }
        };
        let expected: HashMap<String, Vec<usize>> = expected.into_iter().collect();
        for slot in &mut table {
            slot.wanted = slot
                .full
                .strip_prefix(prefix)
                .filter(|n| expected.contains_key(*n))
                .map(str::to_string);
        }
        Ok(Plan {
            data_start,
            slots: table,
            next: 0,
            buf: Vec::new(),
            filled: 0,
            table: None,
        })
    }

    /// The model, once every byte of the file arrived; otherwise a one-line error naming the
    /// first weight that is missing or incomplete.
    pub fn finish(self) -> Result<Model> {
        let p = self.path.display();
        let Some(plan) = &self.plan else {
            bail!(
                "{p}: truncated: the file ended after {} bytes, inside its header; download it again",
                self.received
            );
        };
        let total = self.total().unwrap_or(0);
        if let Some(slot) = plan.slots[plan.next.min(plan.slots.len())..]
            .iter()
            .find(|s| s.wanted.is_some())
        {
            let got = self
                .received
                .saturating_sub(slot.start)
                .min(slot.end - slot.start);
            bail!(
                "{p}: truncated: the file ended after {} of {total} bytes; tensor {} has {got} of its {} bytes; download it again",
                self.received,
                slot.full,
                slot.end - slot.start
            );
        }
        Ok(match self.config {
            ModelConfig::Gpt2(c) => Model::Gpt2(self.parts.build(c, &self.path)?),
            ModelConfig::Llama(c) => {
                Model::Llama(Llama::from_parts(self.gpu, self.parts, c, &self.path)?)
            }
        })
    }
}
