// Drives headless Chromium over the DevTools protocol (node --experimental-websocket):
// opens the web chat page (which sends ?prompt= at once), waits until the answer has
// streamed in, checks the DOM and saves a screenshot. Usage: web_chromium.mjs CHROME URL OUT_DIR
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

const [chrome, url, outDir] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "jevons-chromium-"));
const proc = spawn(chrome, ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                            "--disable-dev-shm-usage", `--user-data-dir=${profile}`, "--remote-debugging-port=0",
                            "--window-size=1000,700", "about:blank"], { stdio: ["ignore", "ignore", "pipe"] });
let log = "";
proc.stderr.on("data", (d) => { log += d; });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const deadline = Date.now() + 60_000;
try {
  const portFile = join(profile, "DevToolsActivePort");
  while (!existsSync(portFile)) {
    if (Date.now() > deadline) throw new Error("chromium did not start: " + log);
    await sleep(100);
  }
  await sleep(100);
  const port = readFileSync(portFile, "utf8").split("\n")[0];
  let targets = [];
  while (!(targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()).some((t) => t.type === "page")) await sleep(100);
  const page = targets.find((t) => t.type === "page");
  const ws = new WebSocket(page.webSocketDebuggerUrl);
  await new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; });
  let nextId = 1;
  const pending = new Map();
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.id && pending.has(m.id)) { pending.get(m.id)(m); pending.delete(m.id); }
  };
  const send = (method, params = {}) => new Promise((res) => { const id = nextId++; pending.set(id, res); ws.send(JSON.stringify({ id, method, params })); });
  const evaluate = async (expr) => (await send("Runtime.evaluate", { expression: expr, returnByValue: true })).result.result.value;
  await send("Page.enable");
  await send("Page.navigate", { url });
  let state = null;
  while (Date.now() < deadline) {
    state = await evaluate(`(() => { const b = document.querySelector(".msg.assistant"); return b ? b.dataset.state : null; })()`);
    if (state === "done") break;
    await sleep(200);
  }
  const shot = await send("Page.captureScreenshot", { format: "png" });
  writeFileSync(join(outDir, "web-chat.png"), Buffer.from(shot.result.data, "base64"));
  const dom = await evaluate("document.documentElement.outerHTML");
  writeFileSync(join(outDir, "web-dom.html"), dom);
  assert.equal(state, "done", "the answer finished streaming");
  const info = await evaluate(`(() => ({
    user: document.querySelector(".msg.user")?.textContent,
    reasoning: document.querySelector(".msg.assistant details.reasoning div")?.textContent,
    reasoningShown: !document.querySelector(".msg.assistant details.reasoning")?.hidden,
    answer: document.querySelector(".msg.assistant .answer")?.textContent,
    error: document.querySelector(".msg.assistant .answer")?.classList.contains("error"),
    stats: document.querySelector(".msg.assistant .stats")?.textContent }))()`);
  console.log(JSON.stringify(info, null, 1));
  assert.equal(info.user, "Hello there");
  assert.ok(!info.error, "no error shown: " + info.answer);
  assert.ok(info.reasoningShown && info.reasoning.length > 0, "the reasoning is shown apart");
  assert.ok(info.answer.length > 0, "a streamed answer is shown");
  assert.match(info.stats, /\d+ tokens .* tok\/s .* J \(/, "tokens/s and joules shown");
  ws.close();
  console.log("web chromium e2e: OK");
} finally {
  proc.kill("SIGKILL");
  await sleep(200);
  rmSync(profile, { recursive: true, force: true });
}
