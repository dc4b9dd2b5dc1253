// End-to-end test of the real built page (trunk build --release → dist/) in Debian's headless
// Chromium with SwiftShader WebGPU, checked against the native CLI on lavapipe:
// - a hub preset loads through the page's `?hub=` override (the server mirrors the hub's
//   `/{id}/resolve/main/{file}` layout) and, after a reload, from the Cache API alone;
// - the tiny fixture model loads from picked files and from a local URL (as --quant f32);
//   a bad data file lists its bad lines; a good one is previewed;
// - training with the same settings as a `wgtune train` run (8 steps, f32) gives the same
//   per-step losses: the page's metrics.jsonl download against the CLI's --metrics; pause
//   stops it mid-run (screenshot);
// - the end-of-run evaluation states the `wgtune eval` command that reports the same figure
//   for the downloaded adapter, and it does; Try changes the continuation; the merged model,
//   written into the file the save dialog gave (the origin's private file system here),
//   evaluates as base + adapter, and without the File System Access API the merge is refused
//   with its size;
// - a reload keeps the finished adapter, byte for byte; a run interrupted by a reload
//   resumes from its checkpoint in browser storage with the uninterrupted run's losses;
// - a PEFT-made adapter from the fixtures is picked: evaluate, Try and merge use it, and
//   training continues from it with its LoRA settings;
// - "Check this GPU" passes every kernel; the autotuner's choices (the first run's) come back from browser storage after a reload, and the resumed run times nothing;
// - the "What LoRA learned" panel shows `wgtune inspect`'s figures for the trained and the
//   picked adapter, and its base-against-tuned losses are `wgtune eval`'s on each line;
// - the Llama family: a tiny Llama loads from a URL (its chat template from
//   tokenizer_config.json; the targets become PEFT's q_proj,v_proj), trains on chat data with
//   `wgtune train`'s losses, and its downloaded adapter is the CLI's adapter_config.json and
//   PEFT's tensor names; `wgtune eval` of it gives the page's evaluation; its comparison's
//   losses are `wgtune eval`'s on each line, and Try's continuations (the prompt through the
//   chat template, and raw) are `wgtune generate`'s;
// - while a run holds the model, no other model can be loaded.
//
// Usage: node e2e.mjs   (env: WGTUNE_BIN = the native wgtune binary, DIST = built page,
// SCREENSHOTS = folder for the two screenshots, CHROMIUM = browser path)

import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { readFile, writeFile, mkdtemp, mkdir, readdir, stat, copyFile } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const dist = path.resolve(process.env.DIST ?? path.join(root, "dist"));
const wgtune = path.resolve(process.env.WGTUNE_BIN ?? path.join(root, "target/debug/wgtune"));
const shots = path.resolve(process.env.SCREENSHOTS ?? path.join(root, "target/e2e"));
const modelDir = path.join(root, "tests/fixtures/models/tiny");
const dataFile = path.join(root, "tests/fixtures/data/alpaca.jsonl");
const peftAdapter = path.join(root, "tests/fixtures/peft/attn_r4/adapter_final");
const llamaDir = path.join(root, "tests/fixtures/models/llama_tiny");
const chatFile = path.join(root, "tests/fixtures/data/messages.jsonl");
// The Llama run's settings (flag → value), in the page and for `wgtune train` (the LoRA ones
// too: the PEFT adapter picked before leaves its rank and alpha in the page's settings).
const LLAMA_RUN = {
  "max-steps": 4, lr: "0.01", "batch-size": 2, "val-split": "0.25", "eval-every": 2, "save-every": 0,
  rank: 8, alpha: 16, dropout: "0.05",
};
// One run's settings, given to the page and to `wgtune train` alike (flag → value).
const RUN = { "max-steps": 8, lr: "0.01", "batch-size": 2, "val-split": "0.25", "eval-every": 4 };
const STEPS = RUN["max-steps"];

const types = {
  ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm",
  ".css": "text/css", ".json": "application/json", ".txt": "text/plain",
};

// Requests per path, to check what the page took from its cache instead.
const requests = new Map();

// dist/ at /, the fixture models at /models/ (as a static host or an intranet would serve
// them), and the tiny model as every hub repository at /{owner}/{name}/resolve/main/ (a hub
// mirror for the page's ?hub= parameter).
function serve() {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    requests.set(url.pathname, (requests.get(url.pathname) ?? 0) + 1);
    const hub = url.pathname.match(/^\/[^/]+\/[^/]+\/resolve\/main\/([^/]+)$/);
    let file = hub
      ? path.join(modelDir, decodeURIComponent(hub[1]))
      : url.pathname.startsWith("/models/")
      ? path.join(root, "tests/fixtures", decodeURIComponent(url.pathname))
      : path.join(dist, decodeURIComponent(url.pathname));
    try {
      if ((await stat(file)).isDirectory()) file = path.join(file, "index.html");
      const body = await readFile(file);
      res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream", "content-length": body.length });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end("not found");
    }
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

function fail(msg) {
  throw new Error(msg);
}

/// The last line of `wgtune ...`'s stdout, as JSON.
function cli(args) {
  return JSON.parse(execFileSync(wgtune, args, { encoding: "utf8" }).trim().split("\n").pop());
}

function readJsonl(text) {
  return text.trim().split("\n").map((l) => JSON.parse(l));
}

/// Per-step losses (and validation losses) equal within `rel` relative.
function sameLosses(what, page, cliRecords, rel) {
  if (page.length !== cliRecords.length) fail(`${what}: ${page.length} steps in the page, ${cliRecords.length} in the CLI`);
  let worst = 0;
  for (const [p, c] of page.map((p, i) => [p, cliRecords[i]])) {
    if (p.step !== c.step) fail(`${what}: step ${p.step} against ${c.step}`);
    if ((p.val_loss === undefined) !== (c.val_loss === undefined)) fail(`${what}: step ${p.step} validated in one run only`);
    for (const key of ["loss", "val_loss"]) {
      if (p[key] === undefined) continue;
      const d = Math.abs(p[key] - c[key]) / Math.max(Math.abs(c[key]), 1e-12);
      worst = Math.max(worst, d);
      if (!(d <= rel)) fail(`${what}: step ${p.step} ${key} ${p[key]} in the page, ${c[key]} in the CLI (${d.toExponential(2)} relative)`);
    }
  }
  return worst;
}

async function main() {
  const server = await serve();
  const base = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan",
      "--use-vulkan=swiftshader", "--use-angle=swiftshader",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--no-first-run", "--disable-quic",
    ],
  });
  const downloads = await mkdtemp(path.join(tmpdir(), "wgtune-e2e-"));
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 900 } });
  // The page thread's long tasks (over 50 ms), logged for training: the engine's worker does
  // the work, so the page should have next to none (a figure, not an assertion).
  // The save dialog of "Save merged model…" answered with a file of the origin's private
  // file system (a real FileSystemFileHandle; headless Chromium cannot show the dialog).
  await context.addInitScript(() => {
    window.showSaveFilePicker = async ({ suggestedName }) => {
      window.__saved = `${Date.now()}-${suggestedName}`;
      const dir = await navigator.storage.getDirectory();
      return dir.getFileHandle(window.__saved, { create: true });
    };
  });
  await context.addInitScript(() => {
    window.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longTasks.push(e.duration);
    }).observe({ type: "longtask", buffered: true });
  });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  const got = [];
  page.on("download", (d) => got.push(d));
  const byId = (id) => page.getByTestId(id);
  const text = (id) => byId(id).textContent();
  const setField = async (id, value) => {
    await byId(id).fill(String(value));
    await byId(id).dispatchEvent("change");
  };
  const waitText = (id, re, timeout = 120000) =>
    page.waitForFunction(([id, src]) => new RegExp(src).test(document.querySelector(`[data-testid="${id}"]`)?.textContent ?? ""), [id, re.source], { timeout });
  const t0 = Date.now();
  const log = (msg) => console.log(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
  const gpuReady = () => page.waitForFunction(() => !document.querySelector('[data-testid="gpu-info"]')?.textContent.startsWith("Opening"), null, { timeout: 60000 });
  // Downloads started by clicking `id`: `n` files saved into `dir`.
  const download = async (id, n, dir) => {
    got.length = 0;
    await byId(id).click();
    const deadline = Date.now() + 120000;
    while (got.length < n && Date.now() < deadline) await page.waitForTimeout(100);
    if (got.length !== n) fail(`${id}: expected ${n} downloads, got ${got.length}`);
    await mkdir(dir, { recursive: true });
    for (const d of got) await d.saveAs(path.join(dir, d.suggestedFilename()));
    return (await readdir(dir)).sort();
  };
  const loadModel = async (url) => {
    await byId("model-url").fill(url);
    await byId("model-load").click();
    await waitText("model-status", /^(Loaded|error)/);
    const st = await text("model-status");
    if (!st.startsWith("Loaded")) fail(`model load: ${st}`);
    return st;
  };
  const loadData = async () => {
    await byId("data-file").setInputFiles(dataFile);
    await waitText("data-summary", /examples/, 60000);
  };
  const setRun = async (extra = {}) => {
    for (const [flag, v] of Object.entries({ ...RUN, ...extra })) await setField(`setting-${flag}`, v);
  };
  // Start a run and wait until the page shows it: the last run's "done …" must not stand for it.
  const startRun = async () => {
    const before = await text("train-status");
    await byId("train-start").click();
    await page.waitForFunction(([b]) => (document.querySelector('[data-testid="train-status"]')?.textContent ?? "") !== b, [before], { timeout: 60000 });
  };
  const waitTrained = async () => {
    await waitText("train-status", /^(done|stopped|error)/, 600000);
    const st = await text("train-status");
    if (/^error/.test(st)) fail(`training failed: ${st}`);
    return st;
  };
  // The evaluation the page shows: its figures and the equivalent command.
  const evaluation = async () => {
    await waitText("evaluation", /with the adapter|error/, 300000);
    const ev = await text("evaluation");
    const m = ev.match(/with the adapter ([0-9.]+) \((\d+) tokens\)/) ?? fail(`evaluation: ${ev}`);
    const command = (ev.match(/(wgtune eval .*)$/m) ?? fail(`no command in: ${ev}`))[1];
    return { loss: Number(m[1]), tokens: Number(m[2]), command, text: ev };
  };
  // Run the page's `wgtune eval` command on local paths, as a user would on the download.
  const runEval = (command, adapterDir, model = modelDir, data = dataFile) => {
    const args = command.split(" ").slice(1);
    const set = (flag, v) => { args[args.indexOf(flag) + 1] = v; };
    set("--model", model);
    set("--adapter", adapterDir);
    set("--data", data);
    return cli(args);
  };
  const sameEval = (what, page, local) => {
    if (local.tokens !== page.tokens) fail(`${what}: token counts differ: cli ${local.tokens}, page ${page.tokens}`);
    // The page prints 6 decimals; SwiftShader and lavapipe sum in different orders.
    if (!(Math.abs(local.loss - page.loss) <= 1e-4 * Math.max(1, Math.abs(local.loss)))) fail(`${what}: loss differs: cli ${local.loss}, page ${page.loss}`);
  };
  // The merged model next to the base folder's config.json and tokenizer.json evaluates as
  // base + adapter (both in f32: NF4 of merged weights is not NF4 of base plus adapter).
  const checkMerged = async (adapterDir, name) => {
    const before = await text("merged-status");
    await byId("download-merged").click();
    await page.waitForFunction(([before]) => {
      const t = document.querySelector('[data-testid="merged-status"]')?.textContent ?? "";
      return t !== before && /^(saved|error)/.test(t);
    }, [before], { timeout: 120000 });
    const st = await text("merged-status");
    if (!st.startsWith("saved")) fail(`${name}: download-merged: ${st}`);
    // The file the worker wrote into, read back from the private file system.
    const bytes = await page.evaluate(async () => {
      const dir = await navigator.storage.getDirectory();
      const file = await (await dir.getFileHandle(window.__saved)).getFile();
      const b = new Uint8Array(await file.arrayBuffer());
      let s = "";
      for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
      return btoa(s);
    });
    const mergedDir = path.join(downloads, name);
    await mkdir(mergedDir);
    await writeFile(path.join(mergedDir, "model.safetensors"), Buffer.from(bytes, "base64"));
    for (const f of ["config.json", "tokenizer.json"]) await copyFile(path.join(modelDir, f), path.join(mergedDir, f));
    const evalF32 = (args) => cli(["eval", ...args, "--data", dataFile, "--quant", "f32"]);
    const plus = evalF32(["--model", modelDir, "--adapter", adapterDir]);
    const merged = evalF32(["--model", mergedDir]);
    log(`${name}: merged ${merged.loss} over ${merged.tokens} tokens; base + adapter ${plus.loss}`);
    if (merged.tokens !== plus.tokens || !(Math.abs(merged.loss - plus.loss) <= 1e-4)) fail(`${name}: the merged model's loss ${merged.loss} is not base + adapter's ${plus.loss}`);
  };
  // The "What LoRA learned" panel shows what `wgtune inspect` prints for the same adapter
  // (singular values, norms, memory), and its comparison's losses are `wgtune eval`'s on
  // each example alone, with and without the adapter.
  const checkLearned = async (adapterDir, name, { compare = false, model = modelDir, data = dataFile } = {}) => {
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="learned-sv"]').length > 0, null, { timeout: 60000 });
    const cliView = cli(["inspect", "--adapter", adapterDir, "--model", model, "--quant", "f32", "--json"]);
    const svs = await page.locator('[data-testid="learned-sv"]').evaluateAll((es) => es.map((e) => [e.dataset.name, e.dataset.values]));
    const norms = new Map(await page.locator('[data-testid="learned-norm"]').evaluateAll((es) => es.map((e) => [e.dataset.name, Number(e.dataset.norm)])));
    if (svs.length !== cliView.modules.length) fail(`${name}: the page shows ${svs.length} modules, inspect ${cliView.modules.length}`);
    let worst = 0;
    for (const m of cliView.modules) {
      const shown = svs.find(([n]) => n === m.name) ?? fail(`${name}: no singular values of ${m.name} in the page`);
      const values = shown[1].split(",").map(Number);
      if (values.length !== m.singular_values.length) fail(`${name} ${m.name}: ${values.length} singular values in the page, ${m.singular_values.length} from inspect`);
      for (const [v, want] of values.map((v, i) => [v, m.singular_values[i]]).concat([[norms.get(m.name), m.norm]])) {
        const d = Math.abs(v - want) / Math.max(Math.abs(want), 1e-30);
        worst = Math.max(worst, d);
        if (!(d <= 1e-9)) fail(`${name} ${m.name}: page ${v}, inspect ${want}`);
      }
    }
    const mem = await byId("learned-memory").evaluate((e) => [Number(e.dataset.full), Number(e.dataset.lora)]);
    const want = [cliView.base.memory.full_finetune, cliView.base.memory.base_weights + cliView.base.memory.adapter_state];
    if (mem.join() !== want.join()) fail(`${name}: memory bars ${mem} vs inspect ${want}`);
    log(`${name}: the panel's ${svs.length} modules match wgtune inspect within ${worst.toExponential(1)} relative; memory ${mem.join(" vs ")} B`);
    if (!compare) return;
    await byId("learned-compare").click();
    await waitText("learned-compare-status", /^(mean loss|error)/, 300000);
    const status = await text("learned-compare-status");
    if (status.startsWith("error")) fail(`${name}: compare: ${status}`);
    const rows = await page.locator('[data-testid="learned-compare-row"]').evaluateAll((es) => es.map((e) => ({ line: Number(e.dataset.line), base: Number(e.dataset.base), tuned: Number(e.dataset.tuned) })));
    if (rows.length < 1) fail(`${name}: no comparison rows`);
    const lines = (await readFile(data, "utf8")).split("\n");
    for (const r of rows) {
      const one = path.join(downloads, `${name}-line${r.line}.jsonl`);
      await writeFile(one, lines[r.line - 1] + "\n");
      const evalOne = (extra) => cli(["eval", "--model", model, "--data", one, "--quant", "f32", ...extra]);
      for (const [what, got, local] of [["base", r.base, evalOne([])], ["tuned", r.tuned, evalOne(["--adapter", adapterDir])]]) {
        if (!(Math.abs(got - local.loss) <= 1e-4 * Math.max(1, Math.abs(local.loss)))) fail(`${name} line ${r.line} ${what}: page ${got}, wgtune eval ${local.loss}`);
      }
    }
    log(`${name}: compare: ${status}; ${rows.length} rows equal wgtune eval per line`);
    await page.locator("#learned").screenshot({ path: path.join(shots, "web-learned.png") });
  };
  const generate = async () => {
    await byId("generate-prompt").fill("Give three tips for staying healthy.");
    await setField("generate-max-new-tokens", 12);
    await byId("generate-run").click();
    await waitText("generate-status", /^(done|error)/, 300000);
    const st = await text("generate-status");
    const [b, t] = [await text("generate-base-output"), await text("generate-tuned-output")];
    log(`generate: ${st}; base ${JSON.stringify(b)}; tuned ${JSON.stringify(t)}`);
    if (st !== "done") fail(`generation: ${st}`);
    // The tiny random model babbles; what matters is that both ran and the adapter changed
    // the continuation (its greedy output may be empty: EOS is a trained token).
    if (!b) fail("the base output is empty");
    if (t === b) fail("the adapter did not change the generation");
  };

  try {
    // A hub preset through the ?hub= mirror; after a reload, from the Cache API alone.
    await page.goto(`${base}/?hub=${encodeURIComponent(base)}`);
    await gpuReady();
    const weightsPath = "/openai-community/gpt2/resolve/main/model.safetensors";
    const loadPreset = async () => {
      await byId("model-preset").selectOption("gpt2");
      await byId("model-preset-load").click();
      await waitText("model-status", /^(Loaded|error)/);
      const st = await text("model-status");
      if (!st.startsWith(`Loaded ${base}/openai-community/gpt2/resolve/main`)) fail(`preset load: ${st}`);
      return st;
    };
    log(`preset: ${await loadPreset()}`);
    if (requests.get(weightsPath) !== 1) fail(`model.safetensors requested ${requests.get(weightsPath)} times by the first preset load`);
    await page.reload();
    await gpuReady();
    log(`preset again after a reload: ${await loadPreset()}`);
    if (requests.get(weightsPath) !== 1) fail(`model.safetensors was downloaded again (${requests.get(weightsPath)} requests): not served from the Cache API`);

    await page.goto(base + "/");
    await gpuReady();
    log(`GPU: ${await text("gpu-info")}`);
    if (await byId("gpu-info").evaluate((e) => e.classList.contains("bad"))) fail("the page found no WebGPU adapter");
    // The engine (GPU, model, training) runs in its dedicated worker, not on the page's thread.
    const workers = page.workers().map((w) => w.url());
    if (!workers.some((u) => u.endsWith("/worker.js"))) fail(`no engine worker (workers: ${JSON.stringify(workers)})`);

    // Check this GPU: every kernel against its CPU reference on this adapter.
    await byId("gpu-check").click();
    await waitText("selftest-summary", /kernels (passed|FAILED)/, 900000);
    const checkSummary = await text("selftest-summary");
    log(`Check this GPU: ${checkSummary}`);
    if (!/passed/.test(checkSummary)) fail(`the selftest failed in the page: ${checkSummary}\n${await text("selftest-lines")}`);
    const kernelLines = (await text("selftest-lines")).split("\n");
    if (kernelLines.length < 20 || !kernelLines.some((l) => /^PASS\s+matmul tiled/.test(l))) fail(`selftest lines: ${kernelLines.join("\n")}`);
    log(`kernels before the first run: ${await text("gpu-kernels")}`);

    // Model: --quant f32 (as the CLI run below), from local files from the picker (read in
    // slices and streamed into the GPU like a download), then the picker cleared so that
    // Load takes the URL.
    await byId("model-quant").selectOption("f32");
    await byId("model-files").setInputFiles(["config.json", "model.safetensors", "tokenizer.json"].map((f) => path.join(modelDir, f)));
    await byId("model-load").click();
    await waitText("model-status", /^(Loaded|error)/);
    const filesStatus = await text("model-status");
    log(`model from picked files: ${filesStatus}`);
    if (!filesStatus.startsWith("Loaded local")) fail(`model load from picked files failed: ${filesStatus}`);
    await byId("model-files").setInputFiles([]);
    log(`model: ${await loadModel(`${base}/models/tiny`)}`);

    // Data: a file with two bad lines lists both, with their line numbers.
    const bad = path.join(downloads, "bad.jsonl");
    await writeFile(bad, '{"text": "fine"}\n[1, 2]\n{"text": "fine"}\n{"text": 5}\n');
    await byId("data-file").setInputFiles(bad);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="data-errors"] li').length > 0, null, { timeout: 30000 });
    const badLines = await page.locator('[data-testid="data-errors"] li').allTextContents();
    log(`bad data: ${badLines.join(" | ")}`);
    if (badLines.length !== 2 || !badLines[0].startsWith("bad.jsonl:2:") || !badLines[1].startsWith("bad.jsonl:4:")) fail(`bad-line errors: ${badLines}`);
    await loadData();
    const summary = await text("data-summary");
    log(`data: ${summary}`);
    if (!/alpaca format/.test(summary)) fail(`unexpected data summary: ${summary}`);
    if ((await page.locator('[data-testid="data-preview"] tbody tr').count()) < 1) fail("no preview rows");
    if ((await page.locator('[data-testid="data-errors"] li').count()) !== 0) fail("errors of the earlier file are still shown");

    // Settings: the CLI's defaults, and the run's flags.
    if ((await byId("setting-rank").inputValue()) !== "8" || (await byId("setting-seq-len").inputValue()) !== "") fail("the page's defaults are not the CLI's");
    await setRun();
    const settings = await text("settings-summary");
    log(`settings: ${settings}`);
    if (!/trainable params/.test(settings)) fail(`no trainable-parameters line: ${settings}`);

    // Train: start, pause mid-run (screenshot), resume, wait for the end.
    await page.evaluate(() => { window.__longTasks.length = 0; });
    await startRun();
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="loss-chart"]').getAttribute("data-points")) >= 3, null, { timeout: 300000 });
    await byId("train-pause").click();
    await waitText("train-status", /paused/, 60000);
    const pointsPaused = Number(await byId("loss-chart").getAttribute("data-points"));
    await page.waitForTimeout(500);
    if (Number(await byId("loss-chart").getAttribute("data-points")) !== pointsPaused) fail("training went on while paused");
    await page.screenshot({ path: path.join(shots, "web-training.png"), fullPage: true });
    log(`paused at ${pointsPaused} points; screenshot taken`);
    // The run holds its model: loading another one waits until it ends.
    if (!(await byId("model-load").isDisabled()) || !(await byId("model-preset-load").isDisabled())) fail("a model can be loaded during a run");
    await byId("train-pause").click();
    log(`train: ${await waitTrained()}`);
    const longTasks = await page.evaluate(() => window.__longTasks.slice());
    log(`page-thread long tasks while training: ${longTasks.length}${longTasks.length ? `, max ${Math.max(...longTasks).toFixed(0)} ms` : ""}`);
    const points = Number(await byId("loss-chart").getAttribute("data-points"));
    if (points !== STEPS) fail(`the chart has ${points} points, expected ${STEPS}`);

    // The page's metrics.jsonl against `wgtune train --metrics` with the same settings.
    const metricsDir = path.join(downloads, "metrics");
    await download("download-metrics", 1, metricsDir);
    const pageRecords = readJsonl(await readFile(path.join(metricsDir, "metrics.jsonl"), "utf8"));
    const cliMetrics = path.join(downloads, "cli-metrics.jsonl");
    const flags = Object.entries(RUN).flatMap(([f, v]) => [`--${f}`, String(v)]);
    cli(["train", "--model", modelDir, "--data", dataFile, "--quant", "f32", ...flags, "--metrics", cliMetrics, "--out", path.join(downloads, "cli-out")]);
    const cliRecords = readJsonl(await readFile(cliMetrics, "utf8"));
    const worst = sameLosses("page vs CLI", pageRecords, cliRecords, 1e-5);
    log(`page vs CLI: ${STEPS} steps, losses within ${worst.toExponential(2)} relative`);

    // The end-of-run evaluation and its command, run by the CLI on the downloaded adapter.
    const ev = await evaluation();
    log(`evaluation: ${ev.text}`);
    const adapterDir = path.join(downloads, "adapter");
    const names = await download("download-adapter", 2, adapterDir);
    if (names.join() !== "adapter_config.json,adapter_model.safetensors") fail(`downloaded ${names}`);
    const config = JSON.parse(await readFile(path.join(adapterDir, "adapter_config.json"), "utf8"));
    if (config.peft_type !== "LORA" || config.r !== 8 || config.task_type !== "CAUSAL_LM") fail(`adapter_config.json: ${JSON.stringify(config)}`);
    const local = runEval(ev.command, adapterDir);
    log(`${ev.command} → loss ${local.loss} over ${local.tokens} tokens; page ${ev.loss} over ${ev.tokens}`);
    sameEval("end-of-run evaluation", ev, local);
    const plain = cli(["eval", "--model", modelDir, "--data", dataFile, "--quant", "f32"]);
    if (!(local.loss < plain.loss)) fail(`the adapter did not lower the loss: ${local.loss} vs base ${plain.loss}`);

    await checkLearned(adapterDir, "trained adapter", { compare: true });
    // Without the File System Access API the merge is refused before it starts, with the size
    // the browser would have to hold.
    await page.evaluate(() => { window.__picker = window.showSaveFilePicker; delete window.showSaveFilePicker; });
    await byId("download-merged").click();
    await waitText("merged-status", /^error/, 30000);
    const refused = await text("merged-status");
    if (!/no File System Access API.*\d MiB\) would have to be held in memory/.test(refused)) fail(`merge without the API: ${refused}`);
    log(`merge without the File System Access API: ${refused}`);
    // The refusal is logged to the console too; it is expected here.
    for (let i = errors.length - 1; i >= 0; i--) if (errors[i].includes("no File System Access API")) errors.splice(i, 1);
    await page.evaluate(() => { window.showSaveFilePicker = window.__picker; });
    await generate();
    await page.screenshot({ path: path.join(shots, "web-generate.png"), fullPage: true });
    await checkMerged(adapterDir, "merged");

    // A reload keeps the finished adapter: Export offers the same bytes again.
    const firstWeights = await readFile(path.join(adapterDir, "adapter_model.safetensors"));
    await page.reload();
    await waitText("export-kept", /Kept in this browser/, 60000);
    log(`after reload: ${await text("export-kept")}`);
    // The first run's kernel choices came back from browser storage.
    await waitText("gpu-kernels", /tuned \d+ shape classes \(\d+ from the cache\)/, 60000);
    const cachedLine = await text("gpu-kernels");
    const [, tunedN, cachedN] = cachedLine.match(/tuned (\d+) shape classes \((\d+) from the cache\)/);
    if (tunedN !== cachedN || Number(tunedN) < 2) fail(`kernel choices after a reload: ${cachedLine}`);
    log(`kernels after a reload: ${cachedLine}`);
    await byId("model-quant").selectOption("f32");
    await loadModel(`${base}/models/tiny`);
    await waitText("adapter-status", /kept from an earlier run/, 30000);
    const again = path.join(downloads, "again");
    await download("download-adapter", 2, again);
    if (!firstWeights.equals(await readFile(path.join(again, "adapter_model.safetensors")))) fail("the kept adapter differs from the one downloaded before the reload");

    // A run interrupted by a reload resumes from the checkpoint kept in browser storage
    // (--save-every) with the uninterrupted run's losses; the settings come back with it.
    await byId("adapter-forget").click();
    await loadData();
    await setRun({ "save-every": 2 });
    await startRun();
    await byId("checkpoint-status").waitFor({ timeout: 300000 });
    log(`checkpoint kept: ${await text("checkpoint-status")}`);
    await page.reload();
    await byId("checkpoint-status").waitFor({ timeout: 60000 });
    const keptLine = await text("checkpoint-status");
    const keptStep = Number((keptLine.match(/step (\d+) of/) ?? fail(`checkpoint line: ${keptLine}`))[1]);
    if (!(keptStep > 0 && keptStep < STEPS)) fail(`unexpected checkpoint step ${keptStep}`);
    if ((await byId("model-quant").inputValue()) !== "f32" || (await byId("setting-lr").inputValue()) !== "0.01") fail("the checkpoint's settings did not come back after the reload");
    await loadModel(`${base}/models/tiny`);
    await loadData();
    await byId("train-resume").click();
    log(`resumed from step ${keptStep}: ${await waitTrained()}`);
    const resumedDir = path.join(downloads, "metrics-resumed");
    await download("download-metrics", 1, resumedDir);
    const resumed = readJsonl(await readFile(path.join(resumedDir, "metrics.jsonl"), "utf8"));
    sameLosses("resumed vs uninterrupted", resumed, pageRecords, 0);
    // The resumed run ran the kept kernels and timed nothing.
    const resumedKernels = await text("gpu-kernels");
    const [, t2, c2] = resumedKernels.match(/tuned (\d+) shape classes \((\d+) from the cache\)/) ?? fail(`kernels line: ${resumedKernels}`);
    if (t2 !== c2) fail(`the resumed run tuned again: ${resumedKernels}`);
    if (await byId("checkpoint-status").count()) fail("the checkpoint is still offered after the run finished");

    // A PEFT-made adapter, picked: evaluate, Try and merge use it; training continues from it.
    const peftFiles = ["adapter_config.json", "adapter_model.safetensors"].map((f) => path.join(peftAdapter, f));
    await byId("adapter-files").setInputFiles(peftFiles);
    await byId("adapter-pick").click();
    await waitText("adapter-status", /picked/, 30000);
    log(`picked: ${await text("adapter-status")}`);
    if ((await byId("setting-rank").inputValue()) !== "4" || !(await byId("setting-rank").isDisabled())) fail("the picked adapter's rank is not the setting in force");
    await byId("evaluate").click();
    const pev = await evaluation();
    sameEval("picked adapter evaluation", pev, runEval(pev.command, peftAdapter));
    log(`picked adapter: ${pev.text}`);
    await checkLearned(peftAdapter, "picked PEFT adapter");
    await generate();
    await checkMerged(peftAdapter, "merged-peft");
    await setField("setting-max-steps", 2);
    await startRun();
    log(`continued from the PEFT adapter: ${await waitTrained()}`);
    const contDir = path.join(downloads, "continued");
    await download("download-adapter", 2, contDir);
    const cont = JSON.parse(await readFile(path.join(contDir, "adapter_config.json"), "utf8"));
    if (cont.r !== 4) fail(`the continued adapter has r=${cont.r}, the picked one 4`);

    // The Llama family, from a URL: its chat template, its default targets, the CLI's losses.
    log(`llama: ${await loadModel(`${base}/models/llama_tiny`)}`);
    const targets = await byId("setting-targets").inputValue();
    if (targets !== "q_proj,v_proj") fail(`the Llama's targets in the page: ${targets}`);
    await byId("data-file").setInputFiles(chatFile);
    // The summary of the earlier file is on the page until this one is read.
    await waitText("data-summary", /messages\.jsonl: messages format.*examples/, 60000);
    log(`llama data: ${await text("data-summary")}`);
    for (const [flag, v] of Object.entries(LLAMA_RUN)) await setField(`setting-${flag}`, v);
    await startRun();
    log(`llama train: ${await waitTrained()}`);
    if (!/after 4 of 4 steps/.test(await text("train-status"))) fail(`llama run: ${await text("train-status")}`);
    const llamaMetrics = path.join(downloads, "llama-metrics");
    await download("download-metrics", 1, llamaMetrics);
    const llamaPage = readJsonl(await readFile(path.join(llamaMetrics, "metrics.jsonl"), "utf8"));
    const llamaCliMetrics = path.join(downloads, "llama-cli-metrics.jsonl");
    const llamaCliOut = path.join(downloads, "llama-cli-out");
    const llamaFlags = Object.entries(LLAMA_RUN).flatMap(([f, v]) => [`--${f}`, String(v)]);
    cli(["train", "--model", llamaDir, "--data", chatFile, "--quant", "f32", ...llamaFlags, "--metrics", llamaCliMetrics, "--out", llamaCliOut]);
    const llamaWorst = sameLosses("llama page vs CLI", llamaPage, readJsonl(await readFile(llamaCliMetrics, "utf8")), 1e-5);
    log(`llama page vs CLI: ${llamaPage.length} steps, losses within ${llamaWorst.toExponential(2)} relative`);
    await waitText("evaluation", /llama_tiny/, 300000);
    const lev = await evaluation();
    const llamaAdapter = path.join(downloads, "llama-adapter");
    await download("download-adapter", 2, llamaAdapter);
    const pageConfig = JSON.parse(await readFile(path.join(llamaAdapter, "adapter_config.json"), "utf8"));
    const cliConfig = JSON.parse(await readFile(path.join(llamaCliOut, "adapter_config.json"), "utf8"));
    delete pageConfig.base_model_name_or_path;
    delete cliConfig.base_model_name_or_path;
    if (JSON.stringify(pageConfig) !== JSON.stringify(cliConfig)) fail(`the page's adapter_config.json differs from the CLI's: ${JSON.stringify(pageConfig)}`);
    if (JSON.stringify(pageConfig.target_modules) !== '["q_proj","v_proj"]' || pageConfig.fan_in_fan_out !== false) fail(`llama adapter_config.json: ${JSON.stringify(pageConfig)}`);
    // PEFT's tensor names for a Llama: base_model.model.model.layers.{i}.self_attn.{q,v}_proj.lora_{A,B}.weight.
    const st = await readFile(path.join(llamaAdapter, "adapter_model.safetensors"));
    const header = JSON.parse(st.subarray(8, 8 + Number(st.readBigUInt64LE(0))).toString("utf8"));
    const keys = Object.keys(header).filter((k) => k !== "__metadata__").sort();
    const want = [0, 1].flatMap((l) => ["q_proj", "v_proj"].flatMap((m) => ["A", "B"].map((p) => `base_model.model.model.layers.${l}.self_attn.${m}.lora_${p}.weight`))).sort();
    if (keys.join() !== want.join()) fail(`llama adapter tensors: ${keys}`);
    const llamaEval = runEval(lev.command, llamaAdapter, llamaDir, chatFile);
    log(`llama: ${lev.command} → loss ${llamaEval.loss} over ${llamaEval.tokens} tokens; page ${lev.loss} over ${lev.tokens}`);
    sameEval("llama evaluation", lev, llamaEval);
    // What LoRA learned: the comparison makes each line an example as eval does (the template).
    await checkLearned(llamaAdapter, "llama adapter", { compare: true, model: llamaDir, data: chatFile });
    // Try: the prompt as a user message of the chat template (the CLI's default), or raw.
    for (const raw of [false, true]) {
      if ((await byId("generate-raw").isChecked()) !== raw) await byId("generate-raw").click();
      await byId("generate-prompt").fill("Hello");
      await setField("generate-max-new-tokens", 6);
      await byId("generate-run").click();
      await waitText("generate-status", /^(done|error)/, 300000);
      const st = await text("generate-status");
      if (st !== (raw ? "done" : "done (the prompt as a user message of the model's chat template)")) fail(`llama generation (raw ${raw}): ${st}`);
      const flags = ["generate", "--model", llamaDir, "--quant", "f32", "--prompt", "Hello", "--max-new-tokens", "6", ...(raw ? ["--ignore-chat-template"] : [])];
      for (const [id, extra] of [["generate-base-output", []], ["generate-tuned-output", ["--adapter", llamaAdapter]]]) {
        const shown = await text(id);
        const out = execFileSync(wgtune, [...flags, ...extra], { encoding: "utf8" }).replace(/^Hello/, "").replace(/\n$/, "");
        if (shown !== out) fail(`llama Try (raw ${raw}) ${id}: page ${JSON.stringify(shown)}, wgtune generate ${JSON.stringify(out)}`);
      }
      log(`llama Try (raw ${raw}): base and tuned continuations equal wgtune generate's`);
    }

    if (errors.length) fail(`console errors: ${errors.join(" | ")}`);
    log(`PASS: base loss ${plain.loss.toFixed(4)} → tuned ${local.loss.toFixed(4)}; screenshots in ${shots}`);
  } catch (e) {
    await page.screenshot({ path: path.join(shots, "web-failure.png"), fullPage: true }).catch(() => {});
    if (errors.length) console.error(`console errors: ${errors.join(" | ")}`);
    throw e;
  } finally {
    await browser.close();
    server.close();
  }
}

main().catch((e) => {
  console.error(`e2e FAILED: ${e.message}`);
  process.exit(1);
});
