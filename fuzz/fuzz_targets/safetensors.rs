//! `.safetensors` bytes: the model reader (`SafetensorsFile`: every tensor's bytes and its f32
//! conversion) and PEFT adapter weights (`params_from_weights`) for the tiny fixture model
//! with each fixture adapter's LoRA config.
//!
//! Beyond "no panic": a tensor's bytes are its shape times its dtype's size (a header that
//! claims a huge shape is rejected, never allocated), f32 conversion gives one value per
//! element (and fails only for non-float dtypes), and accepted adapter weights fill exactly
//! the layout's A and B ranges, leaving the alignment padding zero.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wgtune::adapter::{params_from_weights, parse_config};
use wgtune::lora::{Layout, LoraConfig};
use wgtune::model::Gpt2Config;
use wgtune::model::safetensors_file::SafetensorsFile;

struct Fixtures {
    model: Gpt2Config,
    /// Each LoRA config with its layout for the tiny model.
    loras: Vec<(LoraConfig, Layout)>,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let model = Gpt2Config::from_json(
            include_str!("../../tests/fixtures/models/tiny/config.json"),
            Path::new("tiny/config.json"),
        )
        .unwrap();
        let loras = [
            include_str!("../../tests/fixtures/peft/attn_r4/adapter_final/adapter_config.json"),
            include_str!(
                "../../tests/fixtures/peft/all_r8_rslora/adapter_final/adapter_config.json"
            ),
            include_str!(
                "../../tests/fixtures/peft/all_linear_nf4/adapter_final/adapter_config.json"
            ),
            include_str!("../../tests/fixtures/peft/wgtune_written/adapter/adapter_config.json"),
        ]
        .iter()
        .map(|text| {
            let cfg = parse_config(text, Path::new("adapter_config.json")).unwrap();
            let layout = Layout::new(&model, &cfg);
            (cfg, layout)
        })
        .collect();
        Fixtures { model, loras }
    })
}

fn dtype_bytes(d: safetensors::Dtype) -> Option<usize> {
    use safetensors::Dtype::*;
    Some(match d {
        BOOL | U8 | I8 | F8_E4M3 | F8_E5M2 => 1,
        U16 | I16 | F16 | BF16 => 2,
        U32 | I32 | F32 => 4,
        U64 | I64 | F64 => 8,
        _ => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("model.safetensors");
    if let Ok(file) = SafetensorsFile::from_bytes(path, data.to_vec()) {
        let names: Vec<String> = file.names().map(str::to_string).collect();
        let mut total = 0;
        for name in &names {
            let info = file.info(name).unwrap().clone();
            let bytes = file.bytes(name).unwrap();
            let elements: usize = info.shape.iter().product();
            if let Some(size) = dtype_bytes(info.dtype) {
                assert_eq!(bytes.len(), elements * size, "{name}");
            }
            total += bytes.len();
            match file.f32(name) {
                Ok((values, shape)) => {
                    assert_eq!(shape, info.shape);
                    assert_eq!(values.len(), elements);
                }
                Err(e) => {
                    assert!(
                        !matches!(
                            info.dtype,
                            safetensors::Dtype::F32
                                | safetensors::Dtype::F16
                                | safetensors::Dtype::BF16
                        ),
                        "{name}: {}",
                        e.0
                    );
                }
            }
        }
        assert!(total <= data.len());
        assert!(file.bytes("no such tensor").is_err());
    }

    let fx = fixtures();
    for (cfg, layout) in &fx.loras {
        let Ok(params) = params_from_weights(data, Path::new("adapter"), &fx.model, cfg) else {
            continue;
        };
        assert_eq!(params.len(), layout.len);
        // Only the A and B ranges may hold values; the padding between them stays zero.
        let mut used = vec![false; layout.len];
        for s in &layout.slots {
            used[s.a..s.a + cfg.r * s.k_in].fill(true);
            used[s.b..s.b + s.n_out * cfg.r].fill(true);
        }
        assert!(
            params
                .iter()
                .zip(&used)
                .all(|(v, &u)| u || v.to_bits() == 0)
        );
    }
});
