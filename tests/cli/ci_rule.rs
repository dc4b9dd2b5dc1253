//! What counts as CI, where a missing GPU adapter, tool or test hook fails the run instead of
//! skipping: `CI` set to anything but empty, `0` or `false` (in any case), as CI services set
//! it (`true`, `1`, ...). The Rust tests' rule (`common::ci`) and the scripts' (`is_ci` in
//! scripts/ci.sh) must agree.

use std::process::Command;

#[test]
fn ci_means_any_value_but_empty_0_or_false_in_the_tests_and_the_scripts() {
    let cases = [
        (None, false),
        (Some(""), false),
        (Some("0"), false),
        (Some("false"), false),
        (Some("False"), false),
        (Some("FALSE"), false),
        (Some("true"), true),
        (Some("TRUE"), true),
        (Some("1"), true),
        (Some("yes"), true),
    ];
    for (v, want) in cases {
        assert_eq!(crate::common::ci_value(v), want, "tests: CI={v:?}");
        let mut sh = Command::new("bash");
        sh.args(["-c", ". scripts/ci.sh && is_ci"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match v {
            Some(v) => sh.env("CI", v),
            None => sh.env_remove("CI"),
        };
        let got = sh.status().expect("run bash").success();
        assert_eq!(got, want, "scripts/ci.sh: CI={v:?}");
    }
}
