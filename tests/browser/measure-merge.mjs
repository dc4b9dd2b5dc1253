// Measure "Save merged model…" on a large model in the built page (dist/), headless Chromium:
// the renderer processes' resident memory (where the page, its engine worker, their JS heaps
// and wasm memories live) before the merge and at its peak, sampled every 200 ms, and the
// merge's time. A random r=8 c_attn adapter of the model's shape is written and picked. Not
// a test: it prints figures for docs/performance.md.
//
// Usage: MODEL_DIR=/tmp/gpt2-large-random node tests/browser/measure-merge.mjs
// (env: DIST = built page, CHROMIUM = browser path, QUANT = nf4). The save dialog is answered
// with a file of the origin's private file system (on disk, in the profile). A build from
// before the streamed merge offers a download instead (a Blob): it is accepted and saved.

import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile, mkdir } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const dist = path.resolve(process.env.DIST ?? path.join(root, "dist"));
const modelDir = path.resolve(process.env.MODEL_DIR ?? path.join(root, "tests/fixtures/models/tiny"));
const quant = process.env.QUANT ?? "nf4";
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css", ".json": "application/json" };

// A PEFT adapter of the model's shape: r=8 on c_attn, small random values.
async function writeAdapter(dir) {
  const cfg = JSON.parse(await readFile(path.join(modelDir, "config.json"), "utf8"));
  const [c, layers, r] = [cfg.n_embd, cfg.n_layer, 8];
  const tensors = [];
  for (let l = 0; l < layers; l++) {
    const name = `base_model.model.transformer.h.${l}.attn.c_attn`;
    tensors.push([`${name}.lora_A.weight`, [r, c]], [`${name}.lora_B.weight`, [3 * c, r]]);
  }
  const header = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const [name, shape] of tensors) {
    const bytes = shape[0] * shape[1] * 4;
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const data = new Float32Array(offset / 4).map(() => (Math.random() - 0.5) * 0.02);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "adapter_model.safetensors"), Buffer.concat([len, Buffer.from(json), Buffer.from(data.buffer)]));
  await writeFile(path.join(dir, "adapter_config.json"), JSON.stringify({
    peft_type: "LORA", task_type: "CAUSAL_LM", r, lora_alpha: 16, lora_dropout: 0.05,
    target_modules: ["c_attn"], fan_in_fan_out: true, bias: "none", base_model_name_or_path: "gpt2-large",
  }));
  return ["adapter_config.json", "adapter_model.safetensors"].map((f) => path.join(dir, f));
}

function serve() {
  const server = createServer(async (req, res) => {
    const p = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
    let file = p.startsWith("/model/") ? path.join(modelDir, p.slice(7)) : path.join(dist, p);
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

// Resident memory of Chromium's renderer processes (page and worker), in MiB.
function rendererRssMiB() {
  const out = execFileSync("ps", ["-eo", "rss=,args="], { encoding: "utf8" });
  return out.split("\n").filter((l) => /chrom.*--type=renderer/.test(l))
    .reduce((sum, l) => sum + Number(l.trim().split(/\s+/)[0]), 0) / 1024;
}

const server = await serve();
const base = `http://127.0.0.1:${server.address().port}`;
const profile = await mkdtemp(path.join(tmpdir(), "wgtune-measure-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  acceptDownloads: true,
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
    "--use-angle=swiftshader", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
});
await context.addInitScript(() => {
  window.showSaveFilePicker = async ({ suggestedName }) => {
    const dir = await navigator.storage.getDirectory();
    return dir.getFileHandle(suggestedName, { create: true });
  };
});
const page = context.pages()[0] ?? (await context.newPage());
const byId = (id) => page.getByTestId(id);
const waitText = (id, re, timeout) =>
  page.waitForFunction(([id, src]) => new RegExp(src).test(document.querySelector(`[data-testid="${id}"]`)?.textContent ?? ""), [id, re.source], { timeout });
try {
  await page.goto(base + "/");
  await byId("model-quant").selectOption(quant);
  await byId("model-url").fill(`${base}/model`);
  const t0 = Date.now();
  await byId("model-load").click();
  await waitText("model-status", /^(Loaded|error)/, 1800000);
  console.log(`load: ${await byId("model-status").textContent()} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  await byId("adapter-files").setInputFiles(await writeAdapter(path.join(profile, "adapter")));
  await byId("adapter-pick").click();
  await waitText("adapter-status", /picked|error/, 60000);
  console.log(`adapter: ${await byId("adapter-status").textContent()}`);
  await page.waitForTimeout(2000);
  const before = rendererRssMiB();
  let peak = before;
  const timer = setInterval(() => { peak = Math.max(peak, rendererRssMiB()); }, 200);
  const downloads = [];
  page.on("download", (d) => downloads.push(d));
  const t1 = Date.now();
  await byId("download-merged").click();
  await waitText("merged-status", /^(saved|error)/, 1800000);
  const merged = (Date.now() - t1) / 1000;
  // An older build ("Download merged model") hands a Blob to the page to download.
  const streamed = (await byId("download-merged").textContent()).includes("Save");
  const deadline = Date.now() + 120000;
  while (!streamed && downloads.length === 0 && Date.now() < deadline) await page.waitForTimeout(200);
  for (const d of downloads) await d.saveAs(path.join(profile, "merged-download.safetensors"));
  clearInterval(timer);
  peak = Math.max(peak, rendererRssMiB());
  console.log(`merge: ${await byId("merged-status").textContent()}`);
  console.log(`merge took ${merged.toFixed(0)} s; renderer RSS ${before.toFixed(0)} MiB before, ${peak.toFixed(0)} MiB at peak (+${(peak - before).toFixed(0)} MiB)`);
} finally {
  await context.close();
  server.close();
  await rm(profile, { recursive: true, force: true });
}
