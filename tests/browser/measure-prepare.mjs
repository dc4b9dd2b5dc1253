// Measure data preparation with a realistic file: a generated alpaca-format JSONL of LINES
// lines (20,000 by default, about 5.7 MB), on the tiny fixture model. Prints, for the built
// page (dist/) in headless Chromium: the time from choosing the file to its preview with
// token counts (the worker tokenizes it once), and from Start to the first step; and for the
// native CLI (WGTUNE_BIN): the time from its start to step 1. Not a test: it prints figures
// for docs/performance.md.
//
// Usage: [LINES=20000] [VAL_SPLIT=0.1] WGTUNE_BIN=target/release/wgtune node tests/browser/measure-prepare.mjs
// (env: DIST = built page, CHROMIUM = browser path; SKIP_CLI=1 skips the CLI; an older build:
// MAX_STEPS_ID=max-steps, its test id of the max-steps field)

import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const dist = path.resolve(process.env.DIST ?? path.join(root, "dist"));
const wgtune = path.resolve(process.env.WGTUNE_BIN ?? path.join(root, "target/release/wgtune"));
const modelDir = path.join(root, "tests/fixtures/models/tiny");
const lines = Number(process.env.LINES ?? 20000);
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css", ".json": "application/json" };

// A seeded generator of English-like alpaca lines (instruction, optional input, output).
function alpaca(n) {
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const words = ("the of and to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part over new sound take only little work know place year live me back give most very after thing our just name good sentence man think say great where help through much before line right too mean old any same tell boy follow came want show also around form three small set put end does another well large must big even such because turn here why ask went men read need land different home us move try kind hand picture again change off play spell air away animal house point page letter mother answer found study still learn should America world").split(" ");
  const sentence = (k) => {
    const w = Array.from({ length: k }, () => words[Math.floor(rnd() * words.length)]);
    w[0] = w[0][0].toUpperCase() + w[0].slice(1);
    return w.join(" ") + (rnd() < 0.2 ? "?" : ".");
  };
  const out = [];
  for (let i = 0; i < n; i++) {
    const o = { instruction: sentence(6 + Math.floor(rnd() * 8)), input: rnd() < 0.4 ? sentence(8 + Math.floor(rnd() * 10)) : "", output: [1, 2, 3].slice(0, 1 + Math.floor(rnd() * 3)).map(() => sentence(8 + Math.floor(rnd() * 12))).join(" ") + ` (${i})` };
    out.push(JSON.stringify(o));
  }
  return out.join("\n") + "\n";
}

function serve() {
  const server = createServer(async (req, res) => {
    const p = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
    let file = p.startsWith("/model/") ? path.join(modelDir, p.slice(7)) : path.join(dist, p);
    try {
      if ((await stat(file)).isDirectory()) file = path.join(file, "index.html");
      const body = await readFile(file);
      res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream", "content-length": body.length });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

// Seconds from the CLI's start to its "step 1/" line.
function cliToStep1(data, out) {
  return new Promise((ok, fail) => {
    const t0 = Date.now();
    const p = spawn(wgtune, ["train", "--model", modelDir, "--data", data, "--out", out, "--max-steps", "1", "--overwrite"]);
    let err = "";
    p.stderr.on("data", (d) => {
      err += d;
      if (/step 1\//.test(err)) ok((Date.now() - t0) / 1000);
    });
    p.on("exit", (code) => { if (!/step 1\//.test(err)) fail(new Error(`wgtune exited ${code}: ${err}`)); });
  });
}

async function main() {
  const dir = await mkdtemp(path.join(tmpdir(), "wgtune-prepare-"));
  const data = path.join(dir, "alpaca_20k.jsonl");
  await writeFile(data, alpaca(lines));
  console.log(`${lines} lines, ${((await stat(data)).size / 1e6).toFixed(1)} MB`);
  if (!process.env.SKIP_CLI) console.log(`CLI (${path.relative(root, wgtune)}): start to step 1 in ${(await cliToStep1(data, path.join(dir, "out"))).toFixed(1)} s`);

  const server = await serve();
  const base = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader", "--use-angle=swiftshader", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  try {
    const page = await browser.newPage();
    const byId = (id) => page.getByTestId(id);
    const until = (js, arg, timeout = 900000) => page.waitForFunction(js, arg, { timeout });
    await page.goto(base + "/");
    await until(() => !document.querySelector('[data-testid="gpu-info"]').textContent.startsWith("Opening"));
    await byId("model-url").fill(`${base}/model`);
    await byId("model-load").click();
    await until(() => /^(Loaded|error)/.test(document.querySelector('[data-testid="model-status"]').textContent));
    let t = Date.now();
    await byId("data-file").setInputFiles(data);
    await until(() => /examples/.test(document.querySelector('[data-testid="data-summary"]')?.textContent ?? ""));
    const preview = (Date.now() - t) / 1000;
    console.log(`page: file chosen to preview with token counts in ${preview.toFixed(1)} s (${await byId("data-summary").textContent()})`);
    // MAX_STEPS_ID: the field's test id in older builds ("max-steps"), to measure them too.
    const maxSteps = process.env.MAX_STEPS_ID ?? "setting-max-steps";
    await byId(maxSteps).fill("1");
    await byId(maxSteps).dispatchEvent("change");
    // VAL_SPLIT: hold out a validation split (the old page's default was 0.1).
    if (process.env.VAL_SPLIT) {
      await byId("setting-val-split").fill(process.env.VAL_SPLIT);
      await byId("setting-val-split").dispatchEvent("change");
    }
    t = Date.now();
    await byId("train-start").click();
    await until(() => Number(document.querySelector('[data-testid="loss-chart"]').getAttribute("data-points")) >= 1);
    const start = (Date.now() - t) / 1000;
    console.log(`page: Start to step 1 in ${start.toFixed(1)} s; file chosen to step 1 in ${(preview + start).toFixed(1)} s`);
    // Older builds evaluate over the whole file at the end, for longer than this measures.
    if (!process.env.MAX_STEPS_ID) {
      await until(() => /^(done|error)/.test(document.querySelector('[data-testid="train-status"]').textContent));
      console.log(`page: ${await byId("train-status").textContent()}`);
    }
  } finally {
    await browser.close();
    server.close();
  }
}

main().catch((e) => {
  console.error(`measure-prepare FAILED: ${e.message}`);
  process.exit(1);
});
