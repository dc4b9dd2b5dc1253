//! Reading `.safetensors` one tensor at a time: natively the file is memory-mapped, so loading
//! touches (and converts) one tensor at a time and peak host memory stays near one tensor.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::Dtype;

use crate::error::Result;
use crate::{bail, err};

enum Bytes {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    start: usize,
    end: usize,
}

pub struct SafetensorsFile {
    path: PathBuf,
    bytes: Bytes,
    tensors: HashMap<String, TensorInfo>,
}

impl SafetensorsFile {
    /// Map a file from disk (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &Path) -> Result<Self> {
        let file =
            std::fs::File::open(path).map_err(|e| err!("{}: cannot open: {e}", path.display()))?;
        // SAFETY: the file is only read; wgtune never writes model files it has open, and a
        // concurrent truncation by another program is reported by the OS, not here.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| err!("{}: cannot map: {e}", path.display()))?;
        Self::parse(path, Bytes::Mapped(map))
    }

    /// Parse a file already in memory (the browser, tests).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(path, Bytes::Owned(bytes))
    }

    fn parse(path: &Path, bytes: Bytes) -> Result<Self> {
        let p = path.display();
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
            err!("{p}: not a valid safetensors file ({e}): truncated or corrupt? download it again")
        })?;
        let data_start = 8 + header_len;
        let mut tensors = HashMap::new();
        for (name, info) in meta.tensors() {
            let (a, b) = info.data_offsets;
            tensors.insert(
                name,
                TensorInfo {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: data_start + a,
                    end: data_start + b,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            tensors,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// The raw little-endian bytes of a tensor.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self
            .info(name)
            .ok_or_else(|| err!("{}: missing tensor {name}", self.path.display()))?;
        Ok(&self.bytes[info.start..info.end])
    }

    /// A tensor converted to f32 (from F32, F16 or BF16), with its shape.
    pub fn f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let info = self
            .info(name)
            .ok_or_else(|| err!("{}: missing tensor {name}", self.path.display()))?;
        let raw = self.bytes(name)?;
        let values = to_f32(raw, info.dtype, &self.path, name)?.into_owned();
        Ok((values, info.shape.clone()))
    }
}

/// The little-endian values of one tensor as f32. F32 data that happens to be 4-byte aligned
/// is borrowed, not copied (a memory map, or a buffer of the streaming loader). A NaN or an
/// infinity is an error naming the tensor and the element (see [`to_f32_at`]).
pub fn to_f32<'b>(raw: &'b [u8], dtype: Dtype, path: &Path, name: &str) -> Result<Cow<'b, [f32]>> {
    to_f32_at(raw, dtype, path, name, 0)
}

/// [`to_f32`] of a part of tensor `name` that starts at its element `first` (the streaming
/// loader converts a large tensor chunk by chunk).
///
/// Every value is checked on the way: a NaN or infinite weight is never a model anyone meant
/// to ship (a corrupt file, or a checkpoint saved after training diverged), and loaded
/// anyway it shows up much later as a NaN loss with the wrong advice (lower the learning
/// rate). The check is one more pass over the converted values: about 80 ms for gpt2's 124 M
/// weights on a 2-core CI machine, against seconds for the upload and quantization.
pub fn to_f32_at<'b>(
    raw: &'b [u8],
    dtype: Dtype,
    path: &Path,
    name: &str,
    first: usize,
) -> Result<Cow<'b, [f32]>> {
    let values = widen(raw, dtype, path, name)?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: tensor {name} holds {} at element {}: the file is damaged or was saved from a run that diverged; use another copy of the weights",
            path.display(),
            values[i],
            first + i
        );
    }
    Ok(values)
}

/// The values as f32, unchecked (callers that word their own error for a non-finite value:
/// adapter tensors).
pub fn widen<'b>(raw: &'b [u8], dtype: Dtype, path: &Path, name: &str) -> Result<Cow<'b, [f32]>> {
    Ok(match dtype {
        Dtype::F32 => match bytemuck::try_cast_slice::<u8, f32>(raw) {
            Ok(v) => Cow::Borrowed(v),
            Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(raw)),
        },
        Dtype::F16 => Cow::Owned(
            bytemuck::pod_collect_to_vec::<u8, half::f16>(raw)
                .into_iter()
                .map(f32::from)
                .collect(),
        ),
        Dtype::BF16 => Cow::Owned(
            bytemuck::pod_collect_to_vec::<u8, half::bf16>(raw)
                .into_iter()
                .map(f32::from)
                .collect(),
        ),
        other => bail!(
            "{}: tensor {name} has dtype {other:?}; expected F32, F16 or BF16",
            path.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each dtype's NaN, +inf and -inf, at the element the caller's offset says.
    #[test]
    fn non_finite_values_name_the_tensor_and_element_in_every_dtype() {
        let path = Path::new("model.safetensors");
        let name = "h.0.attn.c_attn.weight";
        for (bad, what) in [
            (f32::NAN, "NaN"),
            (f32::INFINITY, "inf"),
            (f32::NEG_INFINITY, "-inf"),
        ] {
            let mut v = vec![0.5f32; 200];
            v[123] = bad;
            let f16: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
            let bf16: Vec<half::bf16> = v.iter().map(|&x| half::bf16::from_f32(x)).collect();
            for (dtype, raw) in [
                (Dtype::F32, bytemuck::cast_slice::<f32, u8>(&v).to_vec()),
                (
                    Dtype::F16,
                    bytemuck::cast_slice::<half::f16, u8>(&f16).to_vec(),
                ),
                (
                    Dtype::BF16,
                    bytemuck::cast_slice::<half::bf16, u8>(&bf16).to_vec(),
                ),
            ] {
                let e = to_f32(&raw, dtype, path, name).unwrap_err().0;
                assert_eq!(
                    e,
                    format!(
                        "model.safetensors: tensor {name} holds {what} at element 123: the file is damaged or was saved from a run that diverged; use another copy of the weights"
                    ),
                    "{dtype:?}"
                );
                let e = to_f32_at(&raw, dtype, path, name, 1000).unwrap_err().0;
                assert!(e.contains("at element 1123"), "{dtype:?}: {e}");
                let mut fine = raw.clone();
                let size = raw.len() / 200;
                fine[123 * size..124 * size].copy_from_slice(&raw[..size]);
                assert!(to_f32(&fine, dtype, path, name).is_ok(), "{dtype:?}");
            }
        }
    }
}
