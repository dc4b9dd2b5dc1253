// The engine's dedicated worker: it loads the page's own wasm module (built by trunk with
// unhashed names, see Trunk.toml), whose main() sees it runs in a worker and starts the
// engine (src/web/worker.rs) instead of mounting the page.
import init from "./wgtune.js";

await init({ module_or_path: new URL("./wgtune_bg.wasm", import.meta.url) });
