//! Reading the reference fixtures (shared by several test crates, each using a subset).
#![allow(dead_code)]

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};

pub fn dir(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// `models/<name>/reference.safetensors` as owned bytes.
pub struct Reference(Vec<u8>);

impl Reference {
    pub fn of(model: &str) -> Self {
        Self(
            std::fs::read(dir(&format!("models/{model}/reference.safetensors")))
                .expect("reference fixture"),
        )
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.0).unwrap()
    }

    pub fn has(&self, name: &str) -> bool {
        self.st().tensor(name).is_ok()
    }

    pub fn shape(&self, name: &str) -> Vec<usize> {
        self.st().tensor(name).unwrap().shape().to_vec()
    }

    pub fn f32(&self, name: &str) -> Vec<f32> {
        let st = self.st();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("fixture tensor {name}"));
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        bytemuck::pod_collect_to_vec(t.data())
    }

    pub fn u8(&self, name: &str) -> Vec<u8> {
        self.st().tensor(name).unwrap().data().to_vec()
    }

    /// An I64 tensor as u32 ids / mask values.
    pub fn ids(&self, name: &str) -> Vec<u32> {
        let st = self.st();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::I64, "{name}");
        bytemuck::pod_collect_to_vec::<u8, i64>(t.data())
            .into_iter()
            .map(|v| v as u32)
            .collect()
    }
}

/// The fixture model `models/<name>` loaded with `quant`, its token embedding kept in f32 as
/// the PyTorch references keep it (bitsandbytes + PEFT with an f32 compute dtype). wgtune's
/// default stores wte in f16 with NF4 / f16 bases; on the tiny model that moves logits by up
/// to 1.1e-3 and grad norms by ~2e-3 relative, which would swamp these tests' 1e-4 bounds.
pub fn load_like_reference(
    gpu: &wgtune::gpu::Gpu,
    name: &str,
    quant: wgtune::model::Quant,
) -> wgtune::model::Gpt2 {
    let path = dir(&format!("models/{name}"));
    let (mut m, _) = wgtune::model::load_dir(gpu, &path, quant).unwrap();
    let file =
        wgtune::model::safetensors_file::SafetensorsFile::open(&path.join("model.safetensors"))
            .unwrap();
    m.use_f32_wte(gpu, &file).unwrap();
    m
}
