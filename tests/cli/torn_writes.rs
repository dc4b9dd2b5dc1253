//! Writes that cannot tear: a `wgtune train` killed in the middle of writing its adapter
//! (the test hook `WGTUNE_TEST_ABORT_AT` aborts the process at an exact point) leaves in
//! `--out` a pair of files that belong together, and the next run finds the complete adapter.

use std::path::Path;

use wgtune::model::ModelConfig;

use crate::harness::{Scratch, fixture, run, run_env};

const DATA: &str = "{\"text\": \"The quick brown fox jumps over the lazy dog.\"}\n{\"text\": \"Hello world, hello again.\"}\n{\"text\": \"Numbers: 1234567, 3.14 and 42.\"}\n";

fn train(s: &Scratch, out: &str, rank: &str) -> Vec<String> {
    let model = s.tiny_model("model");
    let data = s.write("data.jsonl", DATA);
    [
        "train",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        out,
        "--quant",
        "f32",
        "--rank",
        rank,
        "--batch-size",
        "2",
        "--seq-len",
        "16",
        "--max-steps",
        "1",
        "--overwrite",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

/// The rank an adapter file pair declares: `r` of the config, and the first dimension of a
/// `lora_A` weight (None for a file that is absent).
fn ranks(dir: &Path) -> (Option<u64>, Option<usize>) {
    let config = std::fs::read(dir.join("adapter_config.json"))
        .ok()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            v["r"].as_u64().unwrap()
        });
    let weights = std::fs::read(dir.join("adapter_model.safetensors"))
        .ok()
        .map(|b| {
            let st = safetensors::SafeTensors::deserialize(&b).unwrap();
            let name = st
                .names()
                .into_iter()
                .find(|n| n.contains("lora_A"))
                .unwrap()
                .to_string();
            st.tensor(&name).unwrap().shape()[0]
        });
    (config, weights)
}

/// A kill between the renames of the adapter's two files (weights, then config, in the
/// first version of `adapter::write_all_atomic`): a loader (PEFT's included) must never find
/// the new weights beside the old config, and wgtune must read the complete new or old one.
#[test]
fn a_kill_between_the_adapter_renames_leaves_no_mixed_pair() {
    let _gpu = crate::gpu_or_skip!();
    if !crate::harness::hooks_or_skip() {
        return;
    }
    let s = Scratch::new("torn-adapter");
    let out = s.path("out").display().to_string();
    let first = run(&train(&s, &out, "2"));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // The same run uninterrupted elsewhere: the bytes the killed run was writing.
    let want = s.path("want").display().to_string();
    let reference = run(&train(&s, &want, "4"));
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );

    let killed = run_env(
        &train(&s, &out, "4"),
        &[("WGTUNE_TEST_ABORT_AT", "adapter-between-renames")],
    );
    let stderr = String::from_utf8_lossy(&killed.stderr);
    assert!(
        !killed.status.success()
            && stderr.contains("test hook: aborting at adapter-between-renames"),
        "the hook did not abort the run: {stderr}"
    );

    // What is on disk now is what any reader finds: a config (the file that makes a directory
    // an adapter) only beside weights of its own rank.
    let (config_r, weights_r) = ranks(&s.path("out"));
    if let Some(r) = config_r {
        assert_eq!(
            Some(r as usize),
            weights_r,
            "after the kill --out holds adapter_config.json with r={r} beside weights of rank {weights_r:?}"
        );
    }
    // wgtune reads a complete adapter: the old one (r=2) or the new one, byte for byte.
    let cfg = ModelConfig::from_file(&fixture("models/tiny/config.json")).unwrap();
    let (lora, params) = wgtune::adapter::load_dir(&s.path("out"), &cfg)
        .unwrap_or_else(|e| panic!("after the kill the adapter in --out does not load: {e}"));
    if lora.r == 4 {
        let (_, want_params) = wgtune::adapter::load_dir(&s.path("want"), &cfg).unwrap();
        assert_eq!(
            params, want_params,
            "the r=4 adapter read is not the one written"
        );
    } else {
        assert_eq!(lora.r, 2);
    }

    // The next run completes or replaces it and leaves nothing else behind.
    let again = run(&train(&s, &out, "4"));
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        assert_eq!(
            std::fs::read(s.path("out").join(f)).unwrap(),
            std::fs::read(s.path("want").join(f)).unwrap(),
            "{f}"
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(s.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["adapter_config.json", "adapter_model.safetensors"]);
}

/// A kill inside a checkpoint's swap (the old `checkpoint-2` moved aside, the new one not
/// yet renamed in): the checkpoint reads as the new one, the next run puts it back under its
/// name, and it resumes.
#[test]
fn a_kill_inside_a_checkpoint_swap_leaves_a_checkpoint_that_resumes() {
    let _gpu = crate::gpu_or_skip!();
    if !crate::harness::hooks_or_skip() {
        return;
    }
    let s = Scratch::new("torn-checkpoint");
    let out = s.path("out").display().to_string();
    let with = |seed: &str, extra: &[&str]| {
        let mut a = train(&s, &out, "2");
        let steps = a.iter().position(|x| x == "--max-steps").unwrap() + 1;
        a[steps] = "3".into();
        a.extend(["--save-every", "2", "--seed", seed].map(String::from));
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let first = run(&with("1", &[]));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let killed = run_env(
        &with("2", &[]),
        &[("WGTUNE_TEST_ABORT_AT", "dir-between-renames")],
    );
    assert!(
        String::from_utf8_lossy(&killed.stderr).contains("aborting at dir-between-renames"),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    let ck = s.path("out/checkpoint-2");
    assert!(!ck.exists() && s.path("out/checkpoint-2.old").exists());
    let cfg = ModelConfig::from_file(&fixture("models/tiny/config.json")).unwrap();
    let read = wgtune::train::checkpoint::load(&ck, &cfg)
        .unwrap_or_else(|e| panic!("the killed swap left no readable checkpoint: {e}"));
    assert_eq!(read.settings.seed, 2, "not the checkpoint being written");

    let ck_arg = ck.display().to_string();
    let resumed = run(&with("2", &["--resume", &ck_arg]));
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(ck.is_dir());
    for stale in ["checkpoint-2.old", "checkpoint-2.partial"] {
        assert!(!s.path("out").join(stale).exists(), "{stale} left behind");
    }
}
