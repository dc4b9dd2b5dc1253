//! `config.json` (`Gpt2Config::from_json`) and `adapter_config.json` (`adapter::parse_config`)
//! on the same text, then what uses their numbers: head size, parameter count, EOS id, LoRA
//! layouts, `validate_for`, and the adapter config written back.
//!
//! Beyond "no panic" (which includes arithmetic overflow: fuzz builds check it): an accepted
//! model config has a head size that divides n_embd and fits the attention kernel, a
//! parameter count at least its embeddings, an EOS id inside the vocabulary; a LoRA layout
//! has aligned, disjoint, increasing slots; an accepted adapter config survives
//! `config_json` → `parse_config` unchanged (targets compared by what they select).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wgtune::adapter::{config_json, parse_config};
use wgtune::kernels::attention::MAX_HEAD_DIM;
use wgtune::lora::{Layout, LoraConfig};
use wgtune::model::Module;
use wgtune::model::Gpt2Config;

fn lora(r: usize, targets: &[&str]) -> LoraConfig {
    LoraConfig {
        r,
        lora_alpha: 16.0,
        lora_dropout: 0.0,
        target_modules: targets.iter().map(|t| t.to_string()).collect(),
        use_rslora: false,
    }
}

fn check_layout(model: &Gpt2Config, cfg: &LoraConfig) {
    let layout = Layout::new(model, cfg);
    let mut end = 0;
    let mut trainable = 0;
    for s in &layout.slots {
        assert!(s.layer < model.n_layer);
        assert_eq!((s.k_in, s.n_out), s.module.dims(model.n_embd));
        assert!(s.a >= end && s.a.is_multiple_of(64) && s.b.is_multiple_of(64));
        assert!(s.b >= s.a + cfg.r * s.k_in);
        end = s.b + s.n_out * cfg.r;
        trainable += cfg.r * (s.k_in + s.n_out);
    }
    assert!(layout.len >= end && layout.len.is_multiple_of(64));
    assert_eq!(layout.trainable, trainable);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(model) = Gpt2Config::from_json(text, Path::new("config.json")) {
        let hd = model.head_dim();
        assert!((1..=MAX_HEAD_DIM).contains(&hd));
        assert_eq!(hd * model.n_head, model.n_embd);
        assert!(model.num_params() >= model.vocab_size * model.n_embd);
        assert!((model.eos() as usize) < model.vocab_size);
        for cfg in [
            lora(1, &["c_attn"]),
            lora(8, &["all-linear"]),
            lora(4, &["c_proj", "c_fc"]),
            lora(2, &["transformer.h.1.mlp.c_fc"]),
        ] {
            if cfg.validate_for(model.n_layer).is_ok() {
                check_layout(&model, &cfg);
            }
        }
    }

    if let Ok(cfg) = parse_config(text, Path::new("adapter_config.json")) {
        assert!(cfg.r >= 1);
        assert!(cfg.lora_alpha.is_finite() && cfg.lora_alpha > 0.0);
        assert!(cfg.scale().is_finite());
        for name in ["gpt2", "gpt2-xl"] {
            let model = Gpt2Config::preset_shape(name).unwrap();
            if cfg.validate_for(model.n_layer).is_ok() {
                check_layout(&model, &cfg);
            }
            // What we write, we read back.
            let written = config_json(&cfg, "base", model.n_layer, false).to_string();
            let back = match parse_config(&written, Path::new("written.json")) {
                Ok(back) => back,
                Err(e) => panic!("cannot read back {written}: {}", e.0),
            };
            assert_eq!(
                (back.r, back.lora_alpha, back.lora_dropout, back.use_rslora),
                (cfg.r, cfg.lora_alpha, cfg.lora_dropout, cfg.use_rslora)
            );
            for layer in 0..model.n_layer {
                for m in Module::ALL {
                    assert_eq!(back.targets(layer, m), cfg.targets(layer, m));
                }
            }
        }
    }
});
