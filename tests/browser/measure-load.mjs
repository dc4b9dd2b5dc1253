// Measure loading a model folder into the built page (dist/) in headless Chromium: the time
// from clicking Load to "Loaded", the page's wasm memory (linear memory byteLength, the
// host-side high-water mark) before and after (the engine worker's own is in the status
// line: "engine memory"), and the page thread's long tasks during the load (how long input
// could wait). Not a test: it prints figures for the README.
//
// Usage: MODEL_DIR=/tmp/gpt2-large-random [QUANT=nf4] [LOADS=2] [SOURCE=url|files] node tests/browser/measure-load.mjs
// (env: DIST = built page, CHROMIUM = browser path). The folder is served at /model/ with a
// content-length, streamed from disk; LOADS=2 reloads the page and loads again (from the
// Cache API this time). SOURCE=files picks the folder's files in the file input instead
// (read in slices, no cache).

import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const dist = path.resolve(process.env.DIST ?? path.join(root, "dist"));
const modelDir = path.resolve(process.env.MODEL_DIR ?? path.join(root, "tests/fixtures/models/tiny"));
const quant = process.env.QUANT ?? "nf4";
const loads = Number(process.env.LOADS ?? 1);
const source = process.env.SOURCE ?? "url";
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css", ".json": "application/json" };

let modelRequests = 0;
function serve() {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    const p = decodeURIComponent(url.pathname);
    let file = p.startsWith("/model/") ? path.join(modelDir, p.slice(7)) : path.join(dist, p);
    if (p.endsWith("model.safetensors")) modelRequests++;
    try {
      let st = await stat(file);
      if (st.isDirectory()) { file = path.join(file, "index.html"); st = await stat(file); }
      res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream", "content-length": st.size });
      createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404);
      res.end("not found");
    }
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

const server = await serve();
const base = `http://127.0.0.1:${server.address().port}`;
// A profile on disk (not an in-memory incognito context), so that the Cache API has a
// disk quota as in a normal browser.
const profile = await mkdtemp(path.join(tmpdir(), "wgtune-measure-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
    "--use-angle=swiftshader", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
});
// Keep a handle on the page's wasm memory as the module is instantiated, and record the
// page thread's long tasks (over 50 ms: input would wait that long) to judge responsiveness.
await context.addInitScript(() => {
  window.__longTasks = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longTasks.push(e.duration);
  }).observe({ type: "longtask", buffered: true });
  const grab = (r) => { const m = (r.instance ?? r)?.exports?.memory; if (m) window.__wasmMemory = m; return r; };
  const s = WebAssembly.instantiateStreaming;
  WebAssembly.instantiateStreaming = (...a) => s(...a).then(grab);
  const i = WebAssembly.instantiate;
  WebAssembly.instantiate = (...a) => i(...a).then(grab);
});
const page = context.pages()[0] ?? await context.newPage();
page.on("console", (m) => { if (m.type() === "warning" || m.type() === "error") console.log(`  console ${m.type()}: ${m.text()}`); });
const mib = async () => ((await page.evaluate(() => window.__wasmMemory?.buffer.byteLength ?? NaN)) / 2 ** 20).toFixed(1);
const config = JSON.parse(await readFile(path.join(modelDir, "config.json"), "utf8"));
console.log(`model ${modelDir}: n_layer ${config.n_layer}, n_embd ${config.n_embd}; quant ${quant}`);
try {
  for (let n = 1; n <= loads; n++) {
    await page.goto(base + "/");
    await page.waitForFunction(() => !document.querySelector('[data-testid="gpu-info"]')?.textContent.startsWith("Opening"), null, { timeout: 60000 });
    const before = await mib();
    await page.getByTestId("model-quant").selectOption(quant);
    if (source === "files") {
      const names = ["config.json", "model.safetensors", "tokenizer.json"];
      await page.getByTestId("model-files").setInputFiles(names.map((n) => path.join(modelDir, n)));
    } else {
      await page.getByTestId("model-url").fill(`${base}/model`);
    }
    await page.evaluate(() => { window.__longTasks.length = 0; });
    const t0 = Date.now();
    await page.getByTestId("model-load").click();
    let last = "";
    while (true) {
      const st = await page.getByTestId("model-status").textContent();
      if (/^(Loaded|error)/.test(st)) { last = st; break; }
      if (st !== last && Date.now() % 30000 < 1000) console.log(`  ${((Date.now() - t0) / 1000).toFixed(0)}s ${st}`);
      last = st;
      await page.waitForTimeout(1000);
    }
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    console.log(`load ${n}: ${secs} s; page wasm memory ${before} MiB before, ${await mib()} MiB after; model.safetensors requests so far: ${modelRequests}`);
    console.log(`  ${last}`);
    const tasks = await page.evaluate(() => window.__longTasks.slice().sort((a, b) => a - b));
    const q = (f) => (tasks.length ? tasks[Math.min(tasks.length - 1, Math.floor(f * tasks.length))] : 0).toFixed(0);
    console.log(`  page-thread long tasks (> 50 ms) during the load: ${tasks.length}, median ${q(0.5)} ms, p95 ${q(0.95)} ms, max ${q(1)} ms`);
  }
} finally {
  await context.close();
  server.close();
  await rm(profile, { recursive: true, force: true });
}
