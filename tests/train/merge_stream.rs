//! The streaming merge (`merge::MergeStream`: what the page's "Download merged model" runs,
//! and what `merge_dir` writes through): fed the base checkpoint in chunks of any size it
//! writes the same bytes as `merge_dir`, every tensor bit-identical to a plain reference merge
//! computed here from the whole file; F16/BF16 and unprefixed checkpoints come out as F32
//! `transformer.*`; a truncated or mismatched input gives a one-line error.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use wgtune::adapter;
use wgtune::lora::{Layout, LoraConfig};
use wgtune::merge::{MergeStream, dropped, merge_dir};
use wgtune::model::Gpt2Config;
use wgtune::model::ModelConfig;
use wgtune::model::load::to_f32;

use crate::fixtures::dir;

fn config(model: &str) -> Gpt2Config {
    Gpt2Config::from_file(&dir(&format!("models/{model}/config.json"))).unwrap()
}

fn weights(model: &str) -> Vec<u8> {
    std::fs::read(dir(&format!("models/{model}/model.safetensors"))).unwrap()
}

/// Feed `input` to a merge in chunks of `chunk` bytes; the output, or the first error.
fn stream(
    input: &[u8],
    chunk: usize,
    config: Gpt2Config,
    lora: &LoraConfig,
    params: &[f32],
) -> wgtune::error::Result<Vec<u8>> {
    let mut merge = MergeStream::new(
        ModelConfig::from(config),
        lora,
        params.to_vec(),
        Path::new("model.safetensors"),
    );
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        merge.push(piece, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })?;
        assert_eq!(merge.emitted(), out.len() as u64);
    }
    assert_eq!(merge.received(), input.len() as u64);
    let total = merge.total();
    merge.finish()?;
    assert_eq!(total, Some(out.len() as u64), "announced size");
    Ok(out)
}

/// The merge computed plainly from the whole checkpoint: name -> (shape, f32 bits).
fn reference(
    input: &[u8],
    config: &Gpt2Config,
    lora: &LoraConfig,
    params: &[f32],
) -> BTreeMap<String, (Vec<usize>, Vec<u32>)> {
    let st = SafeTensors::deserialize(input).unwrap();
    let layout = Layout::new(&ModelConfig::from(config.clone()), lora);
    let (r, scale) = (lora.r, lora.scale());
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if dropped(&name) {
            continue;
        }
        let short = name
            .strip_prefix("transformer.")
            .unwrap_or(&name)
            .to_string();
        let mut w = to_f32(view.data(), view.dtype(), Path::new("in"), &name)
            .unwrap()
            .into_owned();
        for s in &layout.slots {
            if short != format!("h.{}.{}.weight", s.layer, s.module.path()) {
                continue;
            }
            let a = &params[s.a..s.a + r * s.k_in];
            let b = &params[s.b..s.b + s.n_out * r];
            for k in 0..s.k_in {
                for n in 0..s.n_out {
                    let d: f64 = (0..r)
                        .map(|j| b[n * r + j] as f64 * a[j * s.k_in + k] as f64)
                        .sum();
                    w[k * s.n_out + n] += (scale as f64 * d) as f32;
                }
            }
        }
        let bits = w.iter().map(|v| v.to_bits()).collect();
        out.insert(
            format!("transformer.{short}"),
            (view.shape().to_vec(), bits),
        );
    }
    out
}

/// `merged` parses as safetensors (metadata format=pt, all F32) and equals `want` bit for bit.
fn assert_merged(what: &str, merged: &[u8], want: &BTreeMap<String, (Vec<usize>, Vec<u32>)>) {
    let st = SafeTensors::deserialize(merged).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (_, meta) = SafeTensors::read_metadata(merged).unwrap();
    assert_eq!(
        meta.metadata()
            .as_ref()
            .and_then(|m| m.get("format"))
            .map(String::as_str),
        Some("pt"),
        "{what}: metadata"
    );
    let mut names = st.names();
    names.sort();
    assert_eq!(
        names,
        want.keys().map(String::as_str).collect::<Vec<_>>(),
        "{what}: tensor names"
    );
    for (name, (shape, bits)) in want {
        let t = st.tensor(name).unwrap();
        assert_eq!(
            (t.dtype(), t.shape()),
            (Dtype::F32, shape.as_slice()),
            "{what}: {name}"
        );
        let got: Vec<u32> = bytemuck::pod_collect_to_vec(t.data());
        assert!(
            got == *bits,
            "{what}: tensor {name} differs from the reference merge"
        );
    }
}

/// A PEFT adapter directory of the fixtures, for the tiny model.
fn peft(case: &str) -> (LoraConfig, Vec<f32>) {
    adapter::load_dir(
        &dir(&format!("peft/{case}/adapter_final")),
        &ModelConfig::from(config("tiny").clone()),
    )
    .unwrap()
}

/// An adapter with every module of `config` targeted and non-zero A and B.
fn random_adapter(config: &Gpt2Config) -> (LoraConfig, Vec<f32>) {
    let lora = LoraConfig {
        r: 3,
        lora_alpha: 5.0,
        lora_dropout: 0.0,
        target_modules: vec!["all-linear".into()],
        use_rslora: false,
    };
    let n = Layout::new(&ModelConfig::from(config.clone()), &lora).len;
    let mut x = 0x2545_f491_u32;
    let params = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32 - 0.5) * 0.2
        })
        .collect();
    (lora, params)
}

#[test]
fn streamed_merge_is_byte_identical_to_merge_dir_in_any_chunking() {
    let case = dir("peft/attn_r4/adapter_final");
    let out = std::env::temp_dir().join(format!("wgtune-merge-stream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    merge_dir(&dir("models/tiny"), &case, &out).unwrap();
    let written = std::fs::read(out.join("model.safetensors")).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    let input = weights("tiny");
    let (lora, params) = peft("attn_r4");
    assert_merged(
        "merge_dir",
        &written,
        &reference(&input, &config("tiny"), &lora, &params),
    );
    for chunk in [1, 7, 4093, 1 << 20] {
        let got = stream(&input, chunk, config("tiny"), &lora, &params).unwrap();
        assert!(
            got == written,
            "chunks of {chunk}: differs from merge_dir's file"
        );
    }
}

#[test]
fn every_module_rslora_adapter_merges_like_the_reference() {
    let input = weights("tiny");
    let (lora, params) = peft("all_r8_rslora");
    let want = reference(&input, &config("tiny"), &lora, &params);
    for chunk in [7, 4093] {
        let got = stream(&input, chunk, config("tiny"), &lora, &params).unwrap();
        assert_merged(&format!("all_r8_rslora, chunks of {chunk}"), &got, &want);
    }
}

/// hubstyle: BF16, names without `transformer.`, `.attn.bias` buffers; odd: F16, 3 layers,
/// width 96. Both come out F32, prefixed, buffers dropped.
#[test]
fn half_precision_and_unprefixed_checkpoints_come_out_f32_transformer() {
    for model in ["hubstyle", "odd"] {
        let input = weights(model);
        let (lora, params) = random_adapter(&config(model));
        let want = reference(&input, &config(model), &lora, &params);
        assert!(
            want.keys()
                .all(|n| n.starts_with("transformer.h.") || !n.contains(".h."))
        );
        for chunk in [1, 4093] {
            let got = stream(&input, chunk, config(model), &lora, &params).unwrap();
            assert_merged(&format!("{model}, chunks of {chunk}"), &got, &want);
        }
    }
}

#[test]
fn truncated_input_gives_a_one_line_error() {
    let input = weights("tiny");
    let (lora, params) = peft("attn_r4");
    let head = 8 + u64::from_le_bytes(input[..8].try_into().unwrap()) as usize;
    for cut in [0, 5, 100, head, head + 10, input.len() / 2, input.len() - 1] {
        let e = stream(&input[..cut], 4093, config("tiny"), &lora, &params)
            .expect_err("a truncated file must not merge")
            .to_string();
        assert!(
            e.contains("model.safetensors: truncated"),
            "cut at {cut}: {e}"
        );
        assert!(!e.contains('\n'), "cut at {cut}: {e}");
    }
}

#[test]
fn checkpoint_of_another_model_is_refused_by_tensor_name() {
    let (lora, params) = random_adapter(&config("odd"));
    let e = stream(&weights("tiny"), 1 << 20, config("odd"), &lora, &params)
        .expect_err("the tiny checkpoint is not the odd model")
        .to_string();
    assert!(
        e.contains("model.safetensors: ") && e.contains("transformer."),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

/// `merge_dir` on a truncated checkpoint: a one-line error, and no `--out` (nor the
/// `.partial` directory it is built in) left behind.
#[test]
fn merge_dir_of_a_truncated_checkpoint_leaves_nothing() {
    let root = std::env::temp_dir().join(format!("wgtune-merge-cut-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let model = root.join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(dir("models/tiny/config.json"), model.join("config.json")).unwrap();
    let input = weights("tiny");
    std::fs::write(model.join("model.safetensors"), &input[..input.len() / 2]).unwrap();
    let out = root.join("merged");
    let e = merge_dir(&model, &dir("peft/attn_r4/adapter_final"), &out)
        .expect_err("a truncated checkpoint must not merge")
        .to_string();
    assert!(
        e.contains("model.safetensors: truncated") && !e.contains('\n'),
        "{e}"
    );
    let mut left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["model"], "left behind");
    std::fs::remove_dir_all(&root).unwrap();
}
