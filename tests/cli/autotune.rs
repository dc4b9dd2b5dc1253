//! The autotuner as a user meets it: the first training run times the kernels of its matmul
//! shapes and writes the cache; the second reads the cache and times nothing; `wgtune info`
//! shows the choices in use; `WGTUNE_KERNELS` forces the variants and turns tuning off.
//! (On CPU adapters such as lavapipe tuning is off unless `WGTUNE_AUTOTUNE=1`.)

use crate::harness::{Scratch, run_env};

const DATA: &str = "{\"text\": \"The quick brown fox jumps over the lazy dog.\"}\n{\"text\": \"Hello world, hello again.\"}\n{\"text\": \"Numbers: 1234567, 3.14 and 42.\"}\n{\"text\": \"One more line of text.\"}\n";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_first_run_tunes_and_writes_the_cache_the_second_reads_it() {
    let _gpu = crate::gpu_or_skip!();
    let s = Scratch::new("autotune");
    let model = s.tiny_model("model");
    let data = s.write("data.jsonl", DATA);
    let cache = s.path("cache").display().to_string();
    let env = [
        ("WGTUNE_AUTOTUNE", "1"),
        ("WGTUNE_CACHE_DIR", cache.as_str()),
    ];
    let train = |out: &str| {
        let args: Vec<String> = [
            "train",
            "--model",
            &model,
            "--data",
            &data,
            "--out",
            out,
            "--quant",
            "nf4",
            "--batch-size",
            "2",
            "--seq-len",
            "32",
            "--max-steps",
            "2",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        run_env(&args, &env)
    };

    let first = train(&s.path("out1").display().to_string());
    assert!(
        first.status.success(),
        "first run failed: {}",
        stderr(&first)
    );
    let line = stderr(&first)
        .lines()
        .find(|l| l.starts_with("autotuned "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("the first run tuned nothing: {}", stderr(&first)));
    eprintln!("first run: {line}");
    let files: Vec<_> = std::fs::read_dir(s.path("cache"))
        .expect("the cache directory was written")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one cache file per adapter: {files:?}");
    let cache_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    let choices = cache_json["choices"].as_array().unwrap();
    assert!(!choices.is_empty());
    for c in choices {
        // The choice is the fastest candidate that passed its check.
        let timed: Vec<(String, f64)> = c["timings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| Some((t["kernel"].as_str()?.to_string(), t["ms"].as_f64()?)))
            .collect();
        assert!(timed.len() >= 2, "{c}: fewer than two candidates timed");
        let best = timed.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert_eq!(c["kernel"].as_str().unwrap(), best.0, "{c}");
    }

    let second = train(&s.path("out2").display().to_string());
    assert!(
        second.status.success(),
        "second run failed: {}",
        stderr(&second)
    );
    assert!(
        !stderr(&second).contains("autotuned "),
        "the second run tuned again instead of reading the cache: {}",
        stderr(&second)
    );

    let info = run_env(&["info".to_string()], &env);
    let text = String::from_utf8_lossy(&info.stdout).into_owned();
    let want = format!(
        "tuned {n} shape classes ({n} from the cache)",
        n = choices.len()
    );
    assert!(text.contains(&want), "info lacks {want:?}: {text}");
    eprintln!(
        "second run: {}",
        text.lines().find(|l| l.contains("tuned")).unwrap()
    );

    // WGTUNE_KERNELS forces the variants: no tuning, no cache.
    let forced = [env[0], env[1], ("WGTUNE_KERNELS", "tiled")];
    let info = run_env(&["info".to_string()], &forced);
    let text = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(text.contains("autotuning off"), "{text}");
}
