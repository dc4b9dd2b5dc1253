//! A quiet start: on a headless machine with a Vulkan (or Metal, DX12) adapter, wgtune prints
//! nothing of its own on stderr before its work. GL is not probed when a primary adapter
//! exists (EGL's "DRI2: failed to load driver"), and Mesa's device-select layer does not ask
//! Wayland for a compositor there is none of ("XDG_RUNTIME_DIR is invalid or not set", twice).

use std::process::Command;

use crate::harness::bin;

#[test]
fn info_on_a_headless_machine_prints_nothing_on_stderr() {
    let _gpu = crate::gpu_or_skip!();
    let out = Command::new(bin())
        .arg("info")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .env_remove("MESA_VK_DEVICE_SELECT")
        .env_remove("WGPU_BACKEND")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    if !["Vulkan", "Metal", "Dx12"]
        .iter()
        .any(|b| stdout.contains(&format!("backend: {b}")))
    {
        crate::common::note(&format!(
            "SKIPPED {}: no Vulkan / Metal / DX12 adapter, GL is probed by design",
            crate::common::test_name()
        ));
        return;
    }
    assert!(
        stderr.trim().is_empty(),
        "wgtune info printed on stderr:\n{stderr}"
    );
}
