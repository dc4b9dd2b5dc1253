//! SIGINT / SIGTERM during `wgtune train` write a resumable checkpoint; resuming gives the
//! losses of an uninterrupted run. `kill -9` at any moment leaves only complete checkpoints.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wgtune::model::ModelConfig;
use wgtune::train::checkpoint;

use crate::harness::{Scratch, bin, fixture};

/// Enough steps that a signal sent after the second lands well before the end, even on a
/// fast GPU.
const STEPS: usize = 32;

/// Six prompt/answer lines: enough for several steps per epoch at batch size 2.
fn data(s: &Scratch) -> String {
    let lines: Vec<String> = [
        "red apple",
        "yellow banana",
        "green lime",
        "purple grape",
        "orange carrot",
        "brown bread",
    ]
    .iter()
    .map(|p| {
        let (c, f) = p.split_once(' ').unwrap();
        format!("{{\"prompt\": \"The {c} food is\", \"completion\": \" a {f}.\"}}")
    })
    .collect();
    s.write("data.jsonl", lines.join("\n"))
}

fn train_args(s: &Scratch, out: &str, metrics: &str, extra: &[&str]) -> Vec<String> {
    let model = s.tiny_model("model");
    let data = data(s);
    let mut v: Vec<String> = [
        "train",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        out,
        "--metrics",
        metrics,
        "--quant",
        "f32",
        "--targets",
        "all-linear",
        "--lr",
        "1e-3",
        "--batch-size",
        "2",
        "--seq-len",
        "32",
        "--max-steps",
        &STEPS.to_string(),
        "--seed",
        "5",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    v.extend(extra.iter().map(|x| x.to_string()));
    v
}

fn spawn(args: &[String]) -> Child {
    Command::new(bin())
        .args(args)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wgtune")
}

/// (step, loss, grad_norm, lr, tokens) of each metrics line.
fn metrics(path: &Path) -> Vec<(u64, f64, f64, f64, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
                v["grad_norm"].as_f64().unwrap(),
                v["lr"].as_f64().unwrap(),
                v["tokens"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Wait until the metrics file has `n` steps (or the process ended).
fn wait_for_steps(child: &mut Child, path: &Path, n: usize) {
    let start = Instant::now();
    while metrics(path).len() < n {
        assert!(
            child.try_wait().unwrap().is_none(),
            "training ended before {n} steps"
        );
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Interrupt with each signal after a few steps, resume from the checkpoint it wrote: the
/// per-step losses, gradient norms and learning rates, and the final adapter, equal an
/// uninterrupted run's.
#[test]
fn sigint_and_sigterm_write_a_checkpoint_that_resumes_exactly() {
    let _gpu = crate::gpu_or_skip!();
    let s = Scratch::new("signals");
    let full_out = s.path("full").display().to_string();
    let full_metrics = s.path("full.jsonl");
    let (code, err) = finish(spawn(&train_args(
        &s,
        &full_out,
        &full_metrics.display().to_string(),
        &[],
    )));
    assert_eq!(code, Some(0), "{err}");
    let want = metrics(&full_metrics);
    assert_eq!(want.len(), STEPS);
    let want_adapter = std::fs::read(s.path("full/adapter_model.safetensors")).unwrap();

    for sig in ["-INT", "-TERM"] {
        let out = s.path(&format!("out{sig}")).display().to_string();
        let m = s.path(&format!("m{sig}.jsonl"));
        let args = train_args(&s, &out, &m.display().to_string(), &[]);
        let mut child = spawn(&args);
        wait_for_steps(&mut child, &m, 2);
        signal(&child, sig);
        let (code, err) = finish(child);
        assert_eq!(code, Some(130), "{sig}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let k = metrics(&m).last().unwrap().0;
        assert!(
            (k as usize) < STEPS,
            "{sig}: the run finished before the signal"
        );
        let ck = format!("{out}/checkpoint-{k}");
        assert!(err.contains(&format!("--resume {ck}")), "{sig}: {err}");
        assert!(Path::new(&out).join("adapter_model.safetensors").exists());

        // The same command plus --resume, continuing the same metrics file.
        let mut resume = args.clone();
        resume.extend(["--resume".to_string(), ck]);
        let (code, err) = finish(spawn(&resume));
        assert_eq!(code, Some(0), "{sig} resume: {err}");
        assert_eq!(
            metrics(&m),
            want,
            "{sig}: metrics of the interrupted + resumed run"
        );
        let adapter = std::fs::read(Path::new(&out).join("adapter_model.safetensors")).unwrap();
        assert!(adapter == want_adapter, "{sig}: final adapter differs");
    }
}

/// `kill -9` while checkpoints are being written every step: every checkpoint directory
/// left is complete and loads, and training resumes from the newest one.
#[test]
fn kill_9_during_saves_leaves_only_complete_checkpoints() {
    let _gpu = crate::gpu_or_skip!();
    let s = Scratch::new("kill9");
    let out = s.path("out").display().to_string();
    let m = s.path("m.jsonl");
    let args = train_args(&s, &out, &m.display().to_string(), &["--save-every", "1"]);
    let mut child = spawn(&args);
    wait_for_steps(&mut child, &m, 4);
    signal(&child, "-KILL");
    let (code, _) = finish(child);
    assert_eq!(code, None, "killed by a signal");

    let cfg = ModelConfig::from_file(&fixture("models/tiny/config.json")).unwrap();
    let mut steps = Vec::new();
    for e in std::fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        // `.partial` / `.old` directories are the unfinished side of an atomic swap.
        if let Some(n) = name
            .strip_prefix("checkpoint-")
            .and_then(|n| n.parse::<u32>().ok())
        {
            let c = checkpoint::load(&Path::new(&out).join(&name), &cfg)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(c.state.step, n);
            steps.push(n);
        }
    }
    let newest = *steps.iter().max().expect("at least one checkpoint");
    let ck = format!("{out}/checkpoint-{newest}");
    let mut resume = args.clone();
    resume.extend(["--resume".to_string(), ck]);
    // One more step after the newest checkpoint is enough to show that it resumes.
    let at = resume.iter().position(|a| a == "--max-steps").unwrap();
    resume[at + 1] = (newest + 1).to_string();
    let (code, err) = finish(spawn(&resume));
    assert_eq!(code, Some(0), "{err}");
    // Steps the killed run reported after its newest checkpoint were dropped from the
    // metrics file before the resumed run appended its own.
    let steps: Vec<u64> = metrics(&m).iter().map(|r| r.0).collect();
    let want: Vec<u64> = (1..=newest as u64 + 1).collect();
    assert_eq!(steps, want);
}

/// `args` with `flag` set to `value` (replaced when present, appended otherwise).
fn with(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut v = args.to_vec();
    match v.iter().position(|a| a == flag) {
        Some(at) => v[at + 1] = value.to_string(),
        None => v.extend([flag.to_string(), value.to_string()]),
    }
    v
}

/// A resume refuses a changed setting that would break exact continuation, naming each
/// flag, and writes nothing; it accepts a longer run and other reporting, and reproduces
/// the uninterrupted run's losses.
#[test]
fn a_resume_refuses_breaking_changes_by_name_and_accepts_harmless_ones() {
    let _gpu = crate::gpu_or_skip!();
    let s = Scratch::new("resume-rules");
    let out = s.path("out").display().to_string();
    let m = s.path("m.jsonl").display().to_string();
    let short = with(
        &train_args(&s, &out, &m, &["--save-every", "2"]),
        "--max-steps",
        "4",
    );
    let (code, err) = finish(spawn(&short));
    assert_eq!(code, Some(0), "{err}");
    let ck = format!("{out}/checkpoint-2");
    let resume = with(&short, "--resume", &ck);
    let before = s.snapshot();
    for (changes, named) in [
        (
            vec![("--lr", "5e-4")],
            vec!["--lr 0.0005 (the run used 0.001)"],
        ),
        (
            vec![("--batch-size", "1"), ("--seed", "6")],
            vec![
                "--batch-size 1 (the run used 2)",
                "--seed 6 (the run used 5)",
            ],
        ),
        (vec![("--rank", "4")], vec!["--rank 4 (the run used 8)"]),
        (
            vec![("--quant", "nf4")],
            vec!["--quant nf4 (the run used f32)"],
        ),
    ] {
        let args = changes
            .iter()
            .fold(resume.clone(), |a, (f, v)| with(&a, f, v));
        let (code, err) = finish(spawn(&args));
        assert_eq!(code, Some(1), "{changes:?}: {err}");
        for n in named {
            assert!(err.contains(n), "{changes:?}: {err}");
        }
        assert!(err.contains(&ck), "{err}");
        assert!(s.snapshot() == before, "{changes:?}: files changed");
    }
    // A longer run, other evaluation and checkpoint intervals: accepted, and the steps up to
    // the old end are the same as before.
    let first = metrics(Path::new(&m));
    let longer = ["--max-steps", "6", "--eval-every", "1", "--save-every", "3"];
    let args = longer
        .chunks(2)
        .fold(resume.clone(), |a, fv| with(&a, fv[0], fv[1]));
    let (code, err) = finish(spawn(&args));
    assert_eq!(code, Some(0), "{err}");
    let all = metrics(Path::new(&m));
    assert_eq!(all.len(), 6);
    assert_eq!(all[..2], first[..2], "the steps before the checkpoint");
}
