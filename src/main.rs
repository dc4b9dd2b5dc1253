//! The `wgtune` command line (native) and the web entry point (wasm32).

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match cli::run() {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// The page: until the web app lands, it opens the GPU through the same core and shows what
/// `wgtune info` would print.
#[cfg(target_arch = "wasm32")]
fn main() {
    wasm_bindgen_futures::spawn_local(async {
        let text = match wgtune::gpu::Gpu::new().await {
            Ok(gpu) => wgtune::gpu::describe(&gpu),
            Err(e) => format!("WebGPU is not available: {e}"),
        };
        if let Some(el) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.get_element_by_id("status"))
        {
            el.set_text_content(Some(&text));
        }
    });
}
