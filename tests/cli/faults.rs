//! Faults from outside: a full disk while the adapter is saved, a GPU that runs out of memory
//! or is lost mid-run (injected into the device's fault log by the test hook
//! `WGTUNE_TEST_GPU_FAULT`), and the hub offline with nothing in the cache. Each ends with
//! its own one-line message, and nothing the user had is changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Scratch, check_failure, last_line, run, run_env};

const DATA: &str = "{\"text\": \"The quick brown fox jumps over the lazy dog.\"}\n{\"text\": \"Hello world, hello again.\"}\n{\"text\": \"Numbers: 1234567, 3.14 and 42.\"}\n";

fn train(s: &Scratch, out: &Path, extra: &[&str]) -> Vec<String> {
    let model = s.tiny_model("model");
    let data = s.write("data.jsonl", DATA);
    let out = out.display().to_string();
    let mut v: Vec<String> = [
        "train",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        &out,
        "--quant",
        "f32",
        "--batch-size",
        "2",
        "--seq-len",
        "16",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    v.extend(extra.iter().map(|x| x.to_string()));
    v
}

/// A tmpfs of `size` mounted at a directory for the test's lifetime (unmounted on drop).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None (after a note) when it cannot be mounted outside CI; in CI (root) that fails.
    fn mount(dir: PathBuf, size: &str) -> Option<Self> {
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self(dir)),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                let msg = format!(
                    "{}: cannot mount a tmpfs (needs root): {why}",
                    crate::common::test_name()
                );
                if crate::common::ci() {
                    panic!("{msg}");
                }
                crate::common::note(&format!("SKIPPED {msg}"));
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the file system holding `dir` to the last byte.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.write_all(&[0]);
    let _ = f.sync_all();
}

/// The disk fills up while `train` saves its adapter over the previous one: one line naming
/// --out and the cause, the previous adapter byte for byte, and nothing else left behind.
#[test]
fn a_full_disk_during_the_adapter_save_keeps_the_previous_adapter() {
    let _gpu = crate::gpu_or_skip!();
    let s = Scratch::new("full-disk");
    let Some(disk) = Tmpfs::mount(s.path("disk"), "1m") else {
        return;
    };
    let out = disk.0.join("out");
    let first = run(&train(&s, &out, &["--max-steps", "1", "--rank", "2"]));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let files = ["adapter_config.json", "adapter_model.safetensors"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    fill(&disk.0);

    let second = run(&train(
        &s,
        &out,
        &["--max-steps", "2", "--rank", "4", "--overwrite"],
    ));
    if let Some(p) = check_failure(
        &second,
        &[
            &format!(
                "{}: cannot write the adapter (No space left on device",
                out.display()
            ),
            "the adapter already there is unchanged",
        ],
    ) {
        panic!("{p}");
    }
    for (f, b) in files.iter().zip(&before) {
        assert_eq!(&std::fs::read(out.join(f)).unwrap(), b, "{f} changed");
    }
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, files, "left behind in --out");
}

/// Run 4 steps with a GPU fault injected after step 2; returns the run's output.
fn with_fault(name: &str, fault: &str) -> Option<(Scratch, std::process::Output)> {
    if !crate::harness::hooks_or_skip() {
        return None;
    }
    let s = Scratch::new(name);
    let out = s.path("out");
    let o = run_env(
        &train(&s, &out, &["--max-steps", "4"]),
        &[("WGTUNE_TEST_GPU_FAULT", fault)],
    );
    Some((s, o))
}

/// Out of memory mid-run: the message of its kind with the CLI's advice, nothing written.
#[test]
fn an_out_of_memory_error_mid_run_says_so_and_what_to_lower() {
    let _gpu = crate::gpu_or_skip!();
    let Some((s, o)) = with_fault("oom", "oom@2") else {
        return;
    };
    assert!(
        check_failure(&o, &[]).is_none(),
        "{:?}",
        check_failure(&o, &[])
    );
    assert_eq!(
        last_line(&o),
        "error: the GPU ran out of memory (Out of Memory); lower --batch-size or --seq-len, or use --grad-checkpoint or --quant nf4"
    );
    assert!(!s.path("out").exists(), "a failed run wrote --out");
}

/// The device lost mid-run: its own message (first line of the driver's), nothing written.
#[test]
fn a_lost_device_mid_run_says_so() {
    let _gpu = crate::gpu_or_skip!();
    let Some((s, o)) = with_fault("lost", "lost@2") else {
        return;
    };
    assert!(
        check_failure(&o, &[]).is_none(),
        "{:?}",
        check_failure(&o, &[])
    );
    assert_eq!(
        last_line(&o),
        "error: the GPU device was lost (injected by WGTUNE_TEST_GPU_FAULT); the driver may have reset it: close other GPU programs and retry, with a smaller --batch-size if it recurs"
    );
    assert!(!s.path("out").exists(), "a failed run wrote --out");
}

/// HF_HUB_OFFLINE with an empty cache: a hub id gives the one-line hint to pass a local
/// directory, for every command that takes --model, without touching the network (a proxy
/// that refuses connections would turn any attempt into another error).
#[test]
fn the_hub_offline_with_an_empty_cache_gives_the_local_directory_hint() {
    let s = Scratch::new("offline");
    let home = s.path("hf-home");
    std::fs::create_dir_all(&home).unwrap();
    let data = s.write("data.jsonl", DATA);
    let out = s.path("out").display().to_string();
    let env = [
        ("HF_HUB_OFFLINE", "1"),
        ("HF_HOME", home.to_str().unwrap()),
        ("HTTPS_PROXY", "http://127.0.0.1:9"),
        ("HTTP_PROXY", "http://127.0.0.1:9"),
    ];
    let commands: [Vec<&str>; 3] = [
        vec!["train", "--model", "gpt2", "--data", &data, "--out", &out],
        vec!["eval", "--model", "openai-community/gpt2", "--data", &data],
        vec!["generate", "--model", "distilgpt2", "--prompt", "hi"],
    ];
    for args in commands {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let o = run_env(&args, &env);
        if let Some(p) = check_failure(
            &o,
            &[
                "config.json is not in the Hugging Face cache and HF_HUB_OFFLINE is set",
                "pass --model DIR with a local Hugging Face model directory",
            ],
        ) {
            panic!("{}: {p}", args[0]);
        }
    }
    assert!(!s.path("out").exists());
    assert_eq!(
        std::fs::read_dir(&home).unwrap().count(),
        0,
        "the cache was written"
    );
}
