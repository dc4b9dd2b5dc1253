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
            let kind = e.downcast_ref::<wgtune::error::Error>().map(|e| e.kind());
            let advice = kind.map_or("", cli::advice);
            eprintln!("error: {e}{advice}");
            std::process::exit(1);
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod web;

/// The page: the web app (see `web`).
#[cfg(target_arch = "wasm32")]
fn main() {
    web::start();
}
