//! The streaming loader (what the page feeds from a download or a picked file): the fixture
//! models fed in chunks of any size give bit-identical logits to `Gpt2::load` (and the Llama
//! and Qwen2 fixtures to `Llama::load`); file order does not matter; truncated and corrupt
//! files give one-line errors naming file and tensor.

use std::path::{Path, PathBuf};

use crate::fixtures::{Reference, dir};
use crate::gpu_or_skip;
use wgtune::gpu::Gpu;
use wgtune::model::safetensors_file::SafetensorsFile;
use wgtune::model::stream_load::StreamLoader;
use wgtune::model::{Gpt2, Gpt2Config, Model, ModelConfig, Quant};

const NF4: Quant = Quant::Nf4 {
    double_quant: false,
};

fn config(model: &str) -> Gpt2Config {
    Gpt2Config::from_file(&dir(&format!("models/{model}/config.json"))).unwrap()
}

fn weights_path(model: &str) -> PathBuf {
    dir(&format!("models/{model}/model.safetensors"))
}

/// Feed `bytes` to a streaming loader in chunks of `chunk` bytes.
fn stream(
    gpu: &Gpu,
    model: &str,
    bytes: &[u8],
    chunk: usize,
    quant: Quant,
) -> wgtune::error::Result<Gpt2> {
    stream_any(gpu, model, bytes, chunk, quant).map(|m| match m {
        Model::Gpt2(m) => m,
        Model::Llama(_) => panic!("{model} streamed as a Llama"),
    })
}

/// [`stream`] for a model of either family (its config.json decides).
fn stream_any(
    gpu: &Gpu,
    model: &str,
    bytes: &[u8],
    chunk: usize,
    quant: Quant,
) -> wgtune::error::Result<Model> {
    let cfg = ModelConfig::from_file(&dir(&format!("models/{model}/config.json"))).unwrap();
    let mut loader = StreamLoader::new(gpu, cfg, quant, &weights_path(model));
    for piece in bytes.chunks(chunk) {
        loader.push(piece)?;
    }
    assert_eq!(loader.received(), bytes.len() as u64);
    loader.finish()
}

/// Logits of the fixture batch.
fn logits(gpu: &Gpu, m: &Gpt2, model: &str) -> Vec<f32> {
    let r = Reference::of(model);
    let shape = r.shape("input_ids");
    pollster::block_on(m.logits(
        gpu,
        &r.ids("input_ids"),
        &r.ids("attention_mask"),
        shape[0],
        shape[1],
        None,
    ))
    .unwrap()
}

fn loaded(gpu: &Gpu, model: &str, quant: Quant) -> Gpt2 {
    let file = SafetensorsFile::open(&weights_path(model)).unwrap();
    Gpt2::load(gpu, config(model), &file, quant).unwrap()
}

/// Every fixture (F32 with the `transformer.` prefix, F16, BF16 with extra `.attn.bias`
/// tensors), f32 and NF4, through 1-byte, odd-sized and 1 MiB chunks: the same logits bit
/// for bit as loading the whole file.
#[test]
fn chunked_stream_gives_the_logits_of_a_whole_file_load() {
    let gpu = gpu_or_skip!();
    for model in ["tiny", "odd", "hubstyle"] {
        let bytes = std::fs::read(weights_path(model)).unwrap();
        for quant in [Quant::F32, NF4] {
            let want = logits(gpu, &loaded(gpu, model, quant), model);
            for chunk in [1, 7, 4093, 65_537, 1 << 20] {
                let m = stream(gpu, model, &bytes, chunk, quant).unwrap();
                assert_eq!(m.weight_bytes(), loaded(gpu, model, quant).weight_bytes());
                let got = logits(gpu, &m, model);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{model} {quant} in chunks of {chunk}: logits differ from Gpt2::load"
                );
            }
        }
    }
}

/// Rewrite a safetensors file with its tensors' data in a shuffled order (the header lists
/// the offsets; readers must not assume the order `safetensors.serialize` writes).
fn shuffled(bytes: &[u8], seed: u64) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut names: Vec<&String> = header.keys().filter(|k| *k != "__metadata__").collect();
    names.sort();
    let mut state = seed;
    for i in (1..names.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        names.swap(i, (state >> 33) as usize % (i + 1));
    }
    let (mut out_header, mut out_data) = (serde_json::Map::new(), Vec::new());
    for name in names {
        let mut info = header[name].clone();
        let offsets = info["data_offsets"].as_array().unwrap();
        let (a, b) = (
            offsets[0].as_u64().unwrap() as usize,
            offsets[1].as_u64().unwrap() as usize,
        );
        let start = out_data.len();
        out_data.extend_from_slice(&data[a..b]);
        info["data_offsets"] = serde_json::json!([start, out_data.len()]);
        out_header.insert(name.clone(), info);
    }
    let mut head = serde_json::to_vec(&out_header).unwrap();
    while head.len() % 8 != 0 {
        head.push(b' ');
    }
    let mut out = (head.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&head);
    out.extend_from_slice(&out_data);
    out
}

#[test]
fn tensors_in_any_file_order_load_the_same_model() {
    let gpu = gpu_or_skip!();
    for model in ["tiny", "hubstyle"] {
        let bytes = std::fs::read(weights_path(model)).unwrap();
        let want = logits(gpu, &loaded(gpu, model, NF4), model);
        for seed in [1, 2] {
            let file = shuffled(&bytes, seed);
            assert_ne!(file, bytes, "the shuffle changed nothing");
            for chunk in [13, 1 << 20] {
                let got = logits(gpu, &stream(gpu, model, &file, chunk, NF4).unwrap(), model);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{model} shuffled with seed {seed}, chunks of {chunk}: logits differ"
                );
            }
        }
    }
}

fn error_of(gpu: &Gpu, model: &str, bytes: &[u8]) -> String {
    match stream(gpu, model, bytes, 4096, NF4) {
        Ok(_) => panic!("{model}: a bad stream loaded"),
        Err(e) => e.to_string(),
    }
}

fn assert_one_line(msg: &str, path: &Path) {
    assert!(!msg.contains('\n'), "not one line: {msg}");
    assert!(
        msg.starts_with(&path.display().to_string()),
        "does not name the file: {msg}"
    );
}

/// A stream that ends early names the first weight that did not arrive completely.
#[test]
fn truncated_stream_names_the_incomplete_tensor() {
    let gpu = gpu_or_skip!();
    let bytes = std::fs::read(weights_path("tiny")).unwrap();
    let file = SafetensorsFile::open(&weights_path("tiny")).unwrap();
    // Cut in the middle of the last tensor in file order.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let meta: safetensors::tensor::Metadata = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let last = meta.offset_keys().pop().unwrap();
    let info = file.info(&last).unwrap();
    let size = info.shape.iter().product::<usize>() * 4;
    let cut = bytes.len() - size / 2;
    let msg = error_of(gpu, "tiny", &bytes[..cut]);
    assert_one_line(&msg, &weights_path("tiny"));
    assert!(
        msg.contains("truncated")
            && msg.contains(&format!(
                "tensor {last} has {} of its {size} bytes",
                size - size / 2
            )),
        "{msg}"
    );
    // Cut inside the header.
    let msg = error_of(gpu, "tiny", &bytes[..100]);
    assert_one_line(&msg, &weights_path("tiny"));
    assert!(
        msg.contains("truncated") && msg.contains("inside its header"),
        "{msg}"
    );
}

/// A corrupt header, an absurd header length and a checkpoint of another shape are refused
/// before any tensor is uploaded, with the reason.
#[test]
fn bad_header_is_refused_with_the_reason() {
    let gpu = gpu_or_skip!();
    let bytes = std::fs::read(weights_path("tiny")).unwrap();
    let path = weights_path("tiny");
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;

    let mut corrupt = bytes.clone();
    corrupt[8] = b'[';
    let msg = error_of(gpu, "tiny", &corrupt);
    assert_one_line(&msg, &path);
    assert!(msg.contains("not a valid safetensors file"), "{msg}");

    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let msg = error_of(gpu, "tiny", &huge);
    assert_one_line(&msg, &path);
    assert!(msg.contains("not a valid safetensors file"), "{msg}");

    // Offsets that leave a gap between tensors.
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let first = header
        .keys()
        .find(|k| *k != "__metadata__")
        .unwrap()
        .clone();
    let offsets = header[&first]["data_offsets"].clone();
    let (a, b) = (offsets[0].as_u64().unwrap(), offsets[1].as_u64().unwrap());
    header[&first]["data_offsets"] = serde_json::json!([a + 1, b + 1]);
    let mut head = serde_json::to_vec(&header).unwrap();
    head.resize(n, b' ');
    let mut gap = (n as u64).to_le_bytes().to_vec();
    gap.extend_from_slice(&head);
    gap.extend_from_slice(&bytes[8 + n..]);
    let msg = error_of(gpu, "tiny", &gap);
    assert_one_line(&msg, &path);
    assert!(
        msg.contains("not a valid safetensors file") && msg.contains("data offsets"),
        "{msg}"
    );

    // The tiny checkpoint read with the `odd` model's config: wrong shapes, by name.
    let mut loader = StreamLoader::new(gpu, config("odd"), NF4, &path);
    let msg = loader
        .push(&bytes[..8 + n])
        .expect_err("a checkpoint of another model passed the header check")
        .to_string();
    assert_one_line(&msg, &path);
    assert!(
        msg.contains("has shape") || msg.contains("missing tensor"),
        "{msg}"
    );
}

/// Set element `element` of the tensor whose name ends with `suffix` to `value`, in the
/// file's own dtype. Returns the tensor's full name.
fn poison(bytes: &mut [u8], suffix: &str, element: usize, value: f32) -> String {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let (name, info) = header
        .iter()
        .find(|(k, _)| k.ends_with(suffix))
        .unwrap_or_else(|| panic!("no tensor {suffix}"));
    let start = 8 + n + info["data_offsets"][0].as_u64().unwrap() as usize;
    let encoded: Vec<u8> = match info["dtype"].as_str().unwrap() {
        "F32" => value.to_le_bytes().to_vec(),
        "F16" => half::f16::from_f32(value).to_le_bytes().to_vec(),
        "BF16" => half::bf16::from_f32(value).to_le_bytes().to_vec(),
        d => panic!("dtype {d}"),
    };
    let at = start + element * encoded.len();
    bytes[at..at + encoded.len()].copy_from_slice(&encoded);
    name.clone()
}

/// A NaN or infinite weight is refused while the model loads, in every dtype (tiny: F32,
/// odd: F16, hubstyle: BF16) and on every path: `Gpt2::load`, and the streaming loader's
/// f16 token table (converted chunk by chunk: the element index counts from the tensor's
/// start), a tensor split across chunks, and one inside a chunk.
#[test]
fn non_finite_weights_are_refused_naming_the_tensor_and_element() {
    let gpu = gpu_or_skip!();
    for model in ["tiny", "odd", "hubstyle"] {
        let path = weights_path(model);
        let clean = std::fs::read(&path).unwrap();
        for (suffix, element, value, what) in [
            ("wte.weight", 1000, f32::NAN, "NaN"),
            ("h.0.mlp.c_fc.weight", 77, f32::INFINITY, "inf"),
            ("ln_f.bias", 3, f32::NEG_INFINITY, "-inf"),
        ] {
            let mut bytes = clean.clone();
            let name = poison(&mut bytes, suffix, element, value);
            let want = format!("tensor {name} holds {what} at element {element}");
            let file = SafetensorsFile::from_bytes(&path, bytes.clone()).unwrap();
            let whole = match Gpt2::load(gpu, config(model), &file, NF4) {
                Ok(_) => panic!("{model}: Gpt2::load took a {what} in {name}"),
                Err(e) => e.to_string(),
            };
            assert_one_line(&whole, &path);
            assert!(whole.contains(&want), "{model} Gpt2::load: {whole}");
            for chunk in [7, 4093, 1 << 20] {
                let msg = match stream(gpu, model, &bytes, chunk, NF4) {
                    Ok(_) => panic!("{model}: the stream took a {what} in {name}"),
                    Err(e) => e.to_string(),
                };
                assert_one_line(&msg, &path);
                assert!(msg.contains(&want), "{model} in chunks of {chunk}: {msg}");
            }
        }
    }
}

/// The Llama and Qwen2 fixtures (an untied and a tied head) streamed in 1-byte, odd and
/// large chunks give `Llama::load`'s logits bit for bit, f32 and NF4 (f16 embedding).
#[test]
fn llama_family_streams_give_the_logits_of_a_whole_file_load() {
    use wgtune::model::llama::Llama;
    use wgtune::model::llama_config::LlamaConfig;
    let gpu = gpu_or_skip!();
    for model in ["llama_tiny", "qwen2_tiny"] {
        let bytes = std::fs::read(weights_path(model)).unwrap();
        let r = Reference::of(model);
        let shape = r.shape("input_ids");
        let (ids, mask) = (r.ids("input_ids"), r.ids("attention_mask"));
        let logits = |m: &Llama| {
            pollster::block_on(m.logits(gpu, &ids, &mask, (shape[0], shape[1]), None)).unwrap()
        };
        for quant in [Quant::F32, NF4] {
            let cfg = LlamaConfig::from_file(&dir(&format!("models/{model}/config.json"))).unwrap();
            let file = SafetensorsFile::open(&weights_path(model)).unwrap();
            let whole = Llama::load(gpu, cfg, &file, quant).unwrap();
            let want = logits(&whole);
            for chunk in [1, 4093, 1 << 20] {
                let Model::Llama(m) = stream_any(gpu, model, &bytes, chunk, quant).unwrap() else {
                    panic!("{model}: not streamed as a Llama");
                };
                assert_eq!(m.weight_bytes(), whole.weight_bytes(), "{model} {quant}");
                let got = logits(&m);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{model} {quant} in chunks of {chunk}: logits differ from Llama::load"
                );
            }
        }
        // A truncated file names the tensor it ended in.
        let cut = &bytes[..bytes.len() - 100];
        let e = stream_any(gpu, model, cut, 4096, NF4)
            .err()
            .expect("a truncated file");
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
