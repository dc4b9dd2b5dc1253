//! Running the binary in a scratch directory and checking how it failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Whether the binary under test obeys the `WGTUNE_TEST_*` hooks: it does when the tests are
/// built with the cargo feature `test-hooks` (`scripts/test.sh` passes it; plain `cargo build`
/// and `cargo test` leave it off, so that no binary a user runs obeys them). Without them a
/// test that needs one fails in CI and is skipped with a note elsewhere.
pub fn hooks_or_skip() -> bool {
    if cfg!(feature = "test-hooks") {
        return true;
    }
    let why = format!(
        "{} needs the test hooks: run cargo test --features test-hooks (scripts/test.sh does)",
        crate::common::test_name()
    );
    if crate::common::ci() {
        panic!("{why}");
    }
    crate::common::note(&format!("SKIPPED {why}"));
    false
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_wgtune")
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wgtune-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// Write a file (parents created) and return its path as a string argument.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }

    /// Copy the tiny fixture model to `rel` (without its test-only reference file).
    pub fn tiny_model(&self, rel: &str) -> String {
        let dst = self.path(rel);
        std::fs::create_dir_all(&dst).unwrap();
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ] {
            std::fs::copy(fixture("models/tiny").join(f), dst.join(f)).unwrap();
        }
        dst.display().to_string()
    }

    /// Copy the fixture model `name` (tiny, odd, hubstyle) to `rel`, without its test-only
    /// reference file.
    pub fn fixture_model(&self, name: &str, rel: &str) -> String {
        let (src, dst) = (fixture("models").join(name), self.path(rel));
        std::fs::create_dir_all(&dst).unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap() != "reference.safetensors" {
                std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
            }
        }
        dst.display().to_string()
    }

    /// Every file under the directory with its content (size and mtime for large files).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.0.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let meta = std::fs::metadata(&p).unwrap();
                if meta.is_dir() {
                    out.insert(p.clone(), b"<dir>".to_vec());
                    stack.push(p);
                } else if meta.len() > 8 << 20 {
                    let stamp = format!("{} {:?}", meta.len(), meta.modified().unwrap());
                    out.insert(p, stamp.into_bytes());
                } else {
                    out.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        out
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(args: &[String]) -> Output {
    run_env(args, &[])
}

pub fn run_env(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).env("RUST_LOG", "error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run wgtune")
}

/// The last non-empty line of stderr.
pub fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

/// Check a failed run: exit status 1, no panic, and a last stderr line `error: ...` holding
/// every `expect` substring. Returns a description of what is wrong, if anything.
pub fn check_failure(out: &Output, expect: &[&str]) -> Option<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = last_line(out);
    if out.status.code() != Some(1) {
        return Some(format!(
            "exit status {:?}, want 1; stderr:\n{stderr}",
            out.status
        ));
    }
    if stderr.contains("panicked") {
        return Some(format!("panicked:\n{stderr}"));
    }
    if !line.starts_with("error: ") {
        return Some(format!("last stderr line is not `error: ...`:\n{stderr}"));
    }
    let missing: Vec<_> = expect.iter().filter(|s| !line.contains(**s)).collect();
    if !missing.is_empty() {
        return Some(format!("error line lacks {missing:?}: {line}"));
    }
    None
}
