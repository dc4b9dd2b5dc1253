//! The `wgtune` command line (native) and the web entry point (wasm32).

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    quiet_device_select();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match cli::run() {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let kind = e.downcast_ref::<wgtune::error::Error>().map(|e| e.kind());
            let advice = kind.map_or("", cli::advice);
            eprintln!("error: {e}{advice}");
            std::process::exit(1);
        }
    }
}

/// Keep Mesa's Vulkan device-select layer (an implicit layer every Mesa install enables)
/// from printing `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` twice per
/// run on headless Linux: it asks Wayland for the compositor's GPU, and libwayland complains
/// when there is no session. Without a session directory there is no compositor whose GPU it
/// could prefer, and wgtune ranks adapters itself (discrete first; `WGPU_ADAPTER_NAME`), so the
/// layer is turned off there (`NODEVICE_SELECT=1`, its documented switch), unless the user set
/// `NODEVICE_SELECT` or chose a device through the layer (`MESA_VK_DEVICE_SELECT`).
#[cfg(not(target_arch = "wasm32"))]
fn quiet_device_select() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let session =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    let chosen = std::env::var_os("NODEVICE_SELECT").is_some()
        || std::env::var_os("MESA_VK_DEVICE_SELECT").is_some();
    if !session && !chosen {
        // SAFETY: the first statement of main: no other thread exists yet that could read
        // or write the environment concurrently.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

#[cfg(target_arch = "wasm32")]
mod web;

/// The page: the web app (see `web`).
#[cfg(target_arch = "wasm32")]
fn main() {
    web::start();
}
