// End-to-end test of the real built page (trunk build --release → dist/) in Debian's headless
// Chromium with SwiftShader WebGPU: load the tiny fixture model from picked files and from a
// local URL, upload a JSONL file, train a few steps (pausing once to check pause and take a
// screenshot), see the loss chart update, generate with base and tuned models, download the
// adapter, and check that `wgtune eval --adapter` accepts the download and reports the loss
// the page showed; download the merged model and check that `wgtune eval` on it (with the
// base folder's config.json and tokenizer.json) gives the loss of the base model plus the
// adapter. Then reload: the finished adapter is still offered, byte for byte; and a
// run interrupted by a reload resumes from its kept checkpoint to the same final loss. First
// of all, a hub preset loads through the page's `?hub=` override (the server mirrors the
// hub's `/{id}/resolve/main/{file}` layout) and, after a reload, from the Cache API alone.
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
const SEQ_LEN = 128; // the tiny model's n_positions; the page caps its setting to it
const STEPS = 16;

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
  const byId = (id) => page.getByTestId(id);
  const setField = async (id, value) => {
    await byId(id).fill(String(value));
    await byId(id).dispatchEvent("change");
  };
  const t0 = Date.now();
  const log = (msg) => console.log(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
  const gpuReady = async () => {
    await page.waitForFunction(() => !document.querySelector('[data-testid="gpu-info"]')?.textContent.startsWith("Opening"), null, { timeout: 60000 });
  };
  try {
    // A hub preset through the ?hub= mirror; after a reload, from the Cache API alone.
    await page.goto(`${base}/?hub=${encodeURIComponent(base)}`);
    await gpuReady();
    const weightsPath = "/openai-community/gpt2/resolve/main/model.safetensors";
    const loadPreset = async () => {
      await byId("model-preset").selectOption("gpt2");
      await byId("model-preset-load").click();
      await page.waitForFunction(() => /^(Loaded|error)/.test(document.querySelector('[data-testid="model-status"]').textContent), null, { timeout: 120000 });
      const st = await byId("model-status").textContent();
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
    log(`GPU: ${await byId("gpu-info").textContent()}`);
    if (await byId("gpu-info").evaluate((e) => e.classList.contains("bad"))) fail("the page found no WebGPU adapter");
    // The engine (GPU, model, training) runs in its dedicated worker, not on the page's thread.
    const workers = page.workers().map((w) => w.url());
    if (!workers.some((u) => u.endsWith("/worker.js"))) fail(`no engine worker (workers: ${JSON.stringify(workers)})`);

    // Model: local files from the file picker (read in slices and streamed into the GPU like
    // a download), then the picker cleared so that Load takes the URL below.
    await byId("model-files").setInputFiles(["config.json", "model.safetensors", "tokenizer.json"].map((f) => path.join(modelDir, f)));
    await byId("model-load").click();
    await page.waitForFunction(() => /^(Loaded|error)/.test(document.querySelector('[data-testid="model-status"]').textContent), null, { timeout: 120000 });
    const filesStatus = await byId("model-status").textContent();
    log(`model from picked files: ${filesStatus}`);
    if (!filesStatus.startsWith("Loaded local")) fail(`model load from picked files failed: ${filesStatus}`);
    await byId("model-files").setInputFiles([]);

    // Model: from a local URL serving a Hugging Face–layout folder.
    await byId("model-url").fill(`${base}/models/tiny`);
    await byId("model-load").click();
    await page.waitForFunction(() => /^(Loaded|error)/.test(document.querySelector('[data-testid="model-status"]').textContent), null, { timeout: 120000 });
    const modelStatus = await byId("model-status").textContent();
    log(`model: ${modelStatus}`);
    if (!modelStatus.startsWith("Loaded")) fail(`model load failed: ${modelStatus}`);

    // Data: a file with two bad lines lists both, with their line numbers.
    const bad = path.join(downloads, "bad.jsonl");
    await writeFile(bad, '{"text": "fine"}\n[1, 2]\n{"text": "fine"}\n{"text": 5}\n');
    await byId("data-file").setInputFiles(bad);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="data-errors"] li').length > 0, null, { timeout: 30000 });
    const badLines = await page.locator('[data-testid="data-errors"] li').allTextContents();
    log(`bad data: ${badLines.join(" | ")}`);
    if (badLines.length !== 2 || !badLines[0].startsWith("bad.jsonl:2:") || !badLines[1].startsWith("bad.jsonl:4:")) fail(`bad-line errors: ${badLines}`);

    // Data: upload a JSONL file.
    await byId("data-file").setInputFiles(dataFile);
    await byId("data-summary").waitFor({ timeout: 30000 });
    const summary = await byId("data-summary").textContent();
    log(`data: ${summary}`);
    if (!/alpaca format/.test(summary) || !/tokens/.test(summary)) fail(`unexpected data summary: ${summary}`);
    if ((await page.locator('[data-testid="data-preview"] tbody tr').count()) < 1) fail("no preview rows");
    if ((await page.locator('[data-testid="data-errors"] li').count()) !== 0) fail("errors of the earlier file are still shown");

    // Settings: a short run at a learning rate that moves the tiny model.
    await setField("max-steps", STEPS);
    await setField("setting-lr", "0.01");
    await setField("setting-batch", 2);
    await setField("setting-seq-len", SEQ_LEN);
    await setField("setting-val-split", "0.25");
    await setField("setting-eval-every", 4);
    const settings = await byId("settings-summary").textContent();
    log(`settings: ${settings}`);
    if (!/trainable params/.test(settings)) fail(`no trainable-parameters line: ${settings}`);

    // Train: start, pause mid-run (screenshot), resume, wait for done.
    await page.evaluate(() => { window.__longTasks.length = 0; });
    await byId("train-start").click();
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="loss-chart"]').getAttribute("data-points")) >= 3, null, { timeout: 300000 });
    await byId("train-pause").click();
    await page.waitForFunction(() => /paused/.test(document.querySelector('[data-testid="train-status"]').textContent), null, { timeout: 60000 });
    const pointsPaused = Number(await byId("loss-chart").getAttribute("data-points"));
    await page.waitForTimeout(500);
    if (Number(await byId("loss-chart").getAttribute("data-points")) !== pointsPaused) fail("training went on while paused");
    await page.screenshot({ path: path.join(shots, "web-training.png"), fullPage: true });
    log(`paused at ${pointsPaused} points; screenshot taken`);
    await byId("train-pause").click();
    await page.waitForFunction(() => /done|error/.test(document.querySelector('[data-testid="train-status"]').textContent), null, { timeout: 600000 });
    const status = await byId("train-status").textContent();
    const longTasks = await page.evaluate(() => window.__longTasks.slice());
    log(`train: ${status}`);
    log(`page-thread long tasks while training: ${longTasks.length}${longTasks.length ? `, max ${Math.max(...longTasks).toFixed(0)} ms` : ""}`);
    if (/error/.test(status)) fail(`training failed: ${status}`);
    const points = Number(await byId("loss-chart").getAttribute("data-points"));
    if (points !== STEPS) fail(`the chart has ${points} points, expected ${STEPS}`);
    const m = status.match(/with the adapter: ([0-9.]+) \((\d+) tokens\)/) ?? fail(`no eval loss in: ${status}`);
    const pageLoss = Number(m[1]);
    const pageTokens = Number(m[2]);

    // Try: base and tuned side by side.
    await byId("generate-prompt").fill("Give three tips for staying healthy.");
    await setField("generate-max-new-tokens", 12);
    await byId("generate-run").click();
    await page.waitForFunction(() => /^(done|error)/.test(document.querySelector('[data-testid="generate-status"]').textContent), null, { timeout: 300000 });
    const genStatus = await byId("generate-status").textContent();
    const baseOut = await byId("generate-base-output").textContent();
    const tunedOut = await byId("generate-tuned-output").textContent();
    log(`generate: ${genStatus}; base ${JSON.stringify(baseOut)}; tuned ${JSON.stringify(tunedOut)}`);
    if (genStatus !== "done") fail(`generation: ${genStatus}`);
    // The tiny random model babbles; what matters is that both ran and the adapter changed
    // the continuation (its greedy output may be empty: EOS is a trained token).
    if (!baseOut) fail("the base output is empty");
    if (tunedOut === baseOut) fail("the adapter did not change the generation");
    await page.screenshot({ path: path.join(shots, "web-generate.png"), fullPage: true });

    // Export: both PEFT files from one click.
    const got = [];
    page.on("download", (d) => got.push(d));
    await byId("download-adapter").click();
    const deadline = Date.now() + 30000;
    while (got.length < 2 && Date.now() < deadline) await page.waitForTimeout(100);
    if (got.length !== 2) fail(`expected 2 downloads, got ${got.length}`);
    const adapterDir = path.join(downloads, "adapter");
    for (const d of got) await d.saveAs(path.join(adapterDir, d.suggestedFilename()));
    const names = (await readdir(adapterDir)).sort();
    if (names.join() !== "adapter_config.json,adapter_model.safetensors") fail(`downloaded ${names}`);
    const config = JSON.parse(await readFile(path.join(adapterDir, "adapter_config.json"), "utf8"));
    if (config.peft_type !== "LORA" || config.r !== 8 || config.task_type !== "CAUSAL_LM") fail(`adapter_config.json: ${JSON.stringify(config)}`);

    // The CLI accepts the download and reports the loss the page showed.
    const out = execFileSync(wgtune, [
      "eval", "--model", modelDir, "--adapter", adapterDir, "--data", dataFile,
      "--seq-len", String(SEQ_LEN), "--quant", "nf4",
    ], { encoding: "utf8" });
    const cli = JSON.parse(out.trim().split("\n").pop());
    log(`wgtune eval: loss ${cli.loss} over ${cli.tokens} tokens; page: ${pageLoss} over ${pageTokens}`);
    if (cli.tokens !== pageTokens) fail(`token counts differ: cli ${cli.tokens}, page ${pageTokens}`);
    // The page prints 6 decimals; SwiftShader and lavapipe sum in different orders.
    if (Math.abs(cli.loss - pageLoss) > 1e-4 * Math.max(1, Math.abs(cli.loss))) fail(`loss differs: cli ${cli.loss}, page ${pageLoss}`);
    const base_ = JSON.parse(execFileSync(wgtune, ["eval", "--model", modelDir, "--data", dataFile, "--seq-len", String(SEQ_LEN)], { encoding: "utf8" }).trim().split("\n").pop());
    if (!(cli.loss < base_.loss)) fail(`the adapter did not lower the loss: ${cli.loss} vs base ${base_.loss}`);

    // Export: the merged model, streamed from the model's URL (now the Cache API) through the
    // merge into a Blob. Beside the base folder's config.json and tokenizer.json it is a model
    // the CLI loads, with the loss of the base model plus the adapter. Both evals in f32: NF4
    // of the merged weights is not NF4 of the base weights plus the adapter.
    got.length = 0;
    await byId("download-merged").click();
    await page.waitForFunction(() => /^(saved|error)/.test(document.querySelector('[data-testid="merged-status"]').textContent), null, { timeout: 120000 });
    const mergedStatus = await byId("merged-status").textContent();
    log(`merged: ${mergedStatus}`);
    if (!mergedStatus.startsWith("saved")) fail(`download-merged: ${mergedStatus}`);
    const deadline3 = Date.now() + 30000;
    while (got.length < 1 && Date.now() < deadline3) await page.waitForTimeout(100);
    if (got.length !== 1 || got[0].suggestedFilename() !== "model.safetensors") fail(`download-merged gave ${got.map((d) => d.suggestedFilename())}`);
    const mergedDir = path.join(downloads, "merged");
    await mkdir(mergedDir);
    await got[0].saveAs(path.join(mergedDir, "model.safetensors"));
    for (const f of ["config.json", "tokenizer.json"]) await copyFile(path.join(modelDir, f), path.join(mergedDir, f));
    const evalF32 = (args) => JSON.parse(execFileSync(wgtune, [
      "eval", ...args, "--data", dataFile, "--seq-len", String(SEQ_LEN), "--quant", "f32",
    ], { encoding: "utf8" }).trim().split("\n").pop());
    const plusAdapter = evalF32(["--model", modelDir, "--adapter", adapterDir]);
    const merged = evalF32(["--model", mergedDir]);
    log(`wgtune eval (f32): merged ${merged.loss} over ${merged.tokens} tokens; base + adapter ${plusAdapter.loss} over ${plusAdapter.tokens}`);
    if (merged.tokens !== plusAdapter.tokens) fail(`token counts differ: merged ${merged.tokens}, base + adapter ${plusAdapter.tokens}`);
    if (!(Math.abs(merged.loss - plusAdapter.loss) <= 1e-4)) fail(`the merged model's loss ${merged.loss} is not the base + adapter loss ${plusAdapter.loss}`);
    got.length = 0;

    // A reload keeps the finished adapter: Export offers the same bytes again.
    const firstWeights = await readFile(path.join(adapterDir, "adapter_model.safetensors"));
    await page.reload();
    await page.waitForFunction(() => /Kept in this browser/.test(document.querySelector('[data-testid="export-kept"]')?.textContent ?? ""), null, { timeout: 60000 });
    log(`after reload: ${await byId("export-kept").textContent()}`);
    got.length = 0;
    await byId("download-adapter").click();
    const deadline2 = Date.now() + 30000;
    while (got.length < 2 && Date.now() < deadline2) await page.waitForTimeout(100);
    const again = path.join(downloads, "again");
    for (const d of got) await d.saveAs(path.join(again, d.suggestedFilename()));
    if (!firstWeights.equals(await readFile(path.join(again, "adapter_model.safetensors")))) fail("the kept adapter differs from the one downloaded before the reload");

    // A run interrupted by a reload resumes from the checkpoint kept in browser storage and
    // ends with the same loss as the uninterrupted run.
    const loadModelAndData = async () => {
      await byId("model-url").fill(`${base}/models/tiny`);
      await byId("model-load").click();
      await page.waitForFunction(() => /^Loaded/.test(document.querySelector('[data-testid="model-status"]').textContent), null, { timeout: 120000 });
      await byId("data-file").setInputFiles(dataFile);
      await byId("data-summary").waitFor({ timeout: 30000 });
    };
    await loadModelAndData();
    for (const [id, v] of [["max-steps", STEPS], ["setting-lr", "0.01"], ["setting-batch", 2], ["setting-seq-len", SEQ_LEN], ["setting-val-split", "0.25"], ["setting-eval-every", 4]]) await setField(id, v);
    await byId("train-start").click();
    await byId("checkpoint-status").waitFor({ timeout: 300000 });
    log(`checkpoint kept: ${await byId("checkpoint-status").textContent()}`);
    await page.reload();
    await byId("checkpoint-status").waitFor({ timeout: 60000 });
    const kept = await byId("checkpoint-status").textContent();
    const keptStep = Number((kept.match(/step (\d+) of/) ?? fail(`checkpoint line: ${kept}`))[1]);
    if (!(keptStep > 0 && keptStep < STEPS)) fail(`unexpected checkpoint step ${keptStep}`);
    await loadModelAndData();
    await byId("train-resume").click();
    await page.waitForFunction(() => /done|error/.test(document.querySelector('[data-testid="train-status"]').textContent), null, { timeout: 600000 });
    const resumed = await byId("train-status").textContent();
    log(`resumed from step ${keptStep}: ${resumed}`);
    const m2 = resumed.match(/with the adapter: ([0-9.]+) \((\d+) tokens\)/) ?? fail(`resumed run: ${resumed}`);
    if (Number(m2[1]) !== pageLoss) fail(`the resumed run ends at loss ${m2[1]}, the uninterrupted one at ${pageLoss}`);
    if (Number(await byId("loss-chart").getAttribute("data-points")) !== STEPS) fail("the resumed chart does not hold every step");
    if (await byId("checkpoint-status").count()) fail("the checkpoint is still offered after the run finished");

    if (errors.length) fail(`console errors: ${errors.join(" | ")}`);
    log(`PASS: base loss ${base_.loss.toFixed(4)} → tuned ${cli.loss.toFixed(4)}; screenshots in ${shots}`);
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
