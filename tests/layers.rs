//! The library's layering, checked from its source (ARCHITECTURE.md): arrows point down
//! only, front ends → train/merge → adapter/lora → model → kernels → gpu, with the helpers
//! (error, hooks, nf4, cpu, data, tokenizer, chat, sample) below every layer and above none. The library
//! names no front end, and the top-level modules have no import cycle.
//!
//! A dependency is any `crate::<module>` path outside a comment (a `use`, or a path inside
//! code), including `crate::{a, b}` groups; `bail!` / `err!` belong to `error`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of the library and its layer: a module may use the modules of its
/// own layer and of the layers below (smaller numbers). Helpers (layer 0) use helpers only.
const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("hooks", 0),
    ("nf4", 0),
    ("sample", 0),
    ("tokenizer", 0),
    ("chat", 0),
    ("data", 0),
    ("cpu", 0),
    ("gpu", 1),
    ("kernels", 2),
    ("model", 3),
    ("lora", 4),
    ("adapter", 4),
    ("train", 5),
    ("merge", 5),
    ("inspect", 5),
];

/// Names the library must not mention in code: the front ends (the binary's modules) and
/// their crates.
const FRONT_ENDS: &[&str] = &[
    "crate::cli",
    "crate::web",
    "wgtune::",
    "clap::",
    "indicatif::",
    "leptos::",
    "web_sys::",
    "wasm_bindgen::",
];

/// The one exception: the training settings derive `clap::Args` natively
/// (`#[cfg_attr(not(target_arch = "wasm32"), derive(clap::Args))]`), so that the flags and
/// their defaults are written once, in the type the page and checkpoints share. The derive
/// is all: no other clap type appears in the library.
const ALLOWED: &[(&str, &str)] = &[("src/train/settings.rs", "clap::")];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The source without `//` comments (doc comments included), as one line.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect();
    lines.join(" ")
}

/// The top-level modules that `code` uses.
fn uses(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // crate::{a, b::c, d::{e, f}}: the first segment of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            for (j, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        out.insert(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    // The error macros live at the crate root.
    for m in ["bail", "err"] {
        if out.remove(m) {
            out.insert("error".into());
        }
    }
    out.remove("");
    out
}

/// Top-level module of a file under src/ (src/model/gpt2.rs → model, src/nf4.rs → nf4).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn arrows_point_down_and_the_library_knows_no_front_end() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if ["main", "lib", "cli", "web"].contains(&module.as_str()) {
            continue; // the binary's front ends and the crate root may use anything
        }
        let Some(&own) = layer.get(module.as_str()) else {
            panic!("{}: module {module} has no layer in LAYERS", file.display());
        };
        let code = code(file);
        let rel = file.strip_prefix(src.parent().unwrap()).unwrap();
        for name in FRONT_ENDS {
            let allowed = ALLOWED
                .iter()
                .any(|(f, n)| Path::new(f) == rel && n == name);
            if code.contains(name) && !allowed {
                wrong.push(format!("{}: the library names {name}", file.display()));
            }
        }
        for dep in uses(&code) {
            if dep == module {
                continue;
            }
            let Some(&theirs) = layer.get(dep.as_str()) else {
                wrong.push(format!(
                    "{}: uses unknown module crate::{dep}",
                    file.display()
                ));
                continue;
            };
            if theirs > own {
                wrong.push(format!(
                    "{}: {module} (layer {own}) uses crate::{dep} (layer {theirs}): arrows point down only",
                    file.display()
                ));
            }
            graph.entry(module.clone()).or_default().insert(dep);
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    // Within a layer (the helpers; adapter/lora; train/merge) uses are allowed, but not in a
    // circle: peel off the modules whose uses are all peeled already; a cycle never peels.
    let mut pending: BTreeMap<&str, BTreeSet<String>> = layer
        .keys()
        .map(|&m| (m, graph.get(m).cloned().unwrap_or_default()))
        .collect();
    loop {
        let peeled: Vec<&str> = pending
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !pending.contains_key(d.as_str())))
            .map(|(&m, _)| m)
            .collect();
        if peeled.is_empty() {
            break;
        }
        for m in peeled {
            pending.remove(m);
        }
    }
    // What is left is the cycles and the modules above them; keep the cycles' members only
    // (those that a remaining module uses), for the message.
    loop {
        let used: BTreeSet<String> = pending.values().flatten().cloned().collect();
        let before = pending.len();
        pending.retain(|m, _| used.contains(*m));
        if pending.len() == before {
            break;
        }
    }
    assert!(pending.is_empty(), "import cycle among {pending:?}");
}

#[test]
fn the_dependency_parser_reads_groups_and_skips_comments() {
    let c = "use crate::{bail, err, nf4}; use crate::model::{Gpt2, Module}; let x = crate::gpu::Tensor;";
    let got: Vec<String> = uses(c).into_iter().collect();
    assert_eq!(got, ["error", "gpu", "model", "nf4"]);
    let nested = "use crate::{data::{Example, IGNORE_INDEX}, error::Result};";
    assert_eq!(
        uses(nested).into_iter().collect::<Vec<_>>(),
        ["data", "error"]
    );
}
