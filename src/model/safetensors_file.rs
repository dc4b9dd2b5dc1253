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
/// is borrowed, not copied (a memory map, or a buffer of the streaming loader).
pub fn to_f32<'b>(raw: &'b [u8], dtype: Dtype, path: &Path, name: &str) -> Result<Cow<'b, [f32]>> {
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
