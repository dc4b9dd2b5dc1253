//! `inspect` against numpy (tests/reference/make_inspect_fixtures.py): the singular values of
//! each module's ΔW from the r×r core equal numpy's SVD of the dense matrix, and the norms
//! and effective ranks follow; the base norms and memory figures agree with the loaded model.

use std::path::Path;

use wgtune::inspect::{Inspection, MemoryComparison, base_norms_in, base_norms_of};
use wgtune::model::{Quant, open_dir};

fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn close(got: f64, want: f64, rel: f64, what: &str) {
    assert!(
        (got - want).abs() <= rel * want.abs().max(1e-30),
        "{what}: {got} vs numpy {want} (relative {:.2e})",
        (got - want).abs() / want.abs()
    );
}

#[test]
fn singular_values_norms_and_ranks_match_numpy_on_every_fixture_adapter() {
    let model = open_dir(&fixture("models/tiny")).unwrap();
    for (name, dir) in [
        ("attn_r4", "peft/attn_r4/adapter_final"),
        ("all_r8_rslora", "peft/all_r8_rslora/adapter_final"),
        ("wgtune_written", "peft/wgtune_written/adapter"),
        ("all_linear_nf4", "peft/all_linear_nf4/adapter_final"),
    ] {
        let want: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(&format!("inspect/{name}.json"))).unwrap(),
        )
        .unwrap();
        let got = Inspection::read_dir(&fixture(dir))
            .unwrap()
            .with_base(&model.config, Quant::F32, base_norms_in(&model.weights))
            .unwrap();
        close(
            got.scale as f64,
            want["scale"].as_f64().unwrap(),
            1e-6,
            "scale",
        );
        let want_modules = want["modules"].as_object().unwrap();
        assert_eq!(
            got.modules.len(),
            want_modules.len(),
            "{name}: module count"
        );
        for m in &got.modules {
            let w = &want_modules[&m.name];
            let what = |x: &str| format!("{name} {} {x}", m.name);
            let sv: Vec<f64> = w["singular_values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(m.singular_values.len(), sv.len(), "{}", what("count"));
            for (i, (g, s)) in m.singular_values.iter().zip(&sv).enumerate() {
                close(*g, *s, 1e-5, &what(&format!("σ{i}")));
            }
            close(m.norm, w["norm"].as_f64().unwrap(), 1e-5, &what("‖ΔW‖"));
            close(
                m.base_norm.unwrap(),
                w["base_norm"].as_f64().unwrap(),
                1e-6,
                &what("‖W‖"),
            );
            close(
                m.effective_rank,
                w["effective_rank"].as_f64().unwrap(),
                1e-5,
                &what("effective rank"),
            );
        }
        // Σ r·(in + out) over the modules is the trainable count PEFT prints.
        let expect: usize = got
            .modules
            .iter()
            .map(|m| m.rank * (m.in_features + m.out_features))
            .sum();
        assert_eq!(got.trainable, expect);
    }
}

#[test]
fn an_adapter_for_another_model_is_refused_by_module() {
    // The `odd` model (n_embd 96) against an adapter for the tiny one (n_embd 64).
    let odd = open_dir(&fixture("models/odd")).unwrap();
    let err = Inspection::read_dir(&fixture("peft/attn_r4/adapter_final"))
        .unwrap()
        .with_base(&odd.config, Quant::F32, base_norms_in(&odd.weights))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("transformer.h.0.attn.c_attn is 64x192") && err.contains("another model"),
        "{err}"
    );
}

/// The host's figures for the page (norms kept by the loader, weight bytes without a GPU)
/// equal the file's norms and the uploaded model's bytes, in every base format, for GPT-2
/// (Conv1D, with and without the `transformer.` prefix) and the Llama family (nn.Linear).
#[test]
fn loaded_model_norms_and_weight_bytes_match_the_host_figures() {
    let Some(gpu) = crate::common::gpu() else {
        return;
    };
    for dir in [
        "models/tiny",
        "models/odd",
        "models/llama_tiny",
        "models/qwen2_tiny",
    ] {
        let files = open_dir(&fixture(dir)).unwrap();
        let from_file = base_norms_in(&files.weights);
        for quant in ["f32", "f16", "nf4", "nf4-dq"] {
            let quant: Quant = quant.parse().unwrap();
            let m = files.upload(gpu, quant).unwrap();
            let host = MemoryComparison::of(&files.config, quant, 0).base_weights;
            assert_eq!(
                host,
                m.as_ref().weight_bytes(),
                "{dir} {quant}: weight bytes"
            );
            let from_model = base_norms_of(m.as_ref());
            for l in 0..files.config.n_layer() {
                for module in files.config.modules() {
                    let name = module.full_name(l);
                    let got = from_model(&name);
                    assert!(got.is_some(), "{dir} {name}");
                    assert_eq!(got, from_file(&name), "{dir} {quant} {name}");
                }
            }
        }
    }
}
