// The live map in a real browser: `busflow up` on free ports, Debian's Chromium driven headless by
// playwright-core. Run through scripts/browser-test.sh, which installs what is missing.
//
// Env: BUSFLOW_BIN (the busflow binary), CHROMIUM (default /usr/bin/chromium),
//      ARTIFACTS (screenshot directory, default ./artifacts).

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const bin = process.env.BUSFLOW_BIN || path.join(root, "target/debug/busflow");
const artifacts = process.env.ARTIFACTS || path.join(here, "artifacts");
const leafletDist = path.join(here, "node_modules/leaflet/dist");
mkdirSync(artifacts, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
}

function startUp(args, label) {
  const child = spawn(bin, ["up", ...args], {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  child.output = () => out;
  child.label = label;
  return child;
}

async function stop(child) {
  if (!child || child.exitCode !== null) return;
  child.kill("SIGTERM");
  const t0 = Date.now();
  while (child.exitCode === null && Date.now() - t0 < 10_000) await sleep(100);
  if (child.exitCode === null) {
    console.error(`${child.label} did not stop on SIGTERM within 10 s; killing`);
    child.kill("SIGKILL");
  }
}

async function metric(port, name) {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  let sum = 0;
  let seen = false;
  for (const line of text.split("\n")) {
    if (line.startsWith(name + "{") || line.startsWith(name + " ")) {
      sum += Number(line.trim().split(/\s+/).pop());
      seen = true;
    }
  }
  return seen ? sum : null;
}

const failures = [];
function check(cond, msg) {
  if (cond) console.log(`  ok   ${msg}`);
  else {
    console.log(`  FAIL ${msg}`);
    failures.push(msg);
  }
}

const httpPort = await freePort();
const upArgs = [
  "--http-addr", `127.0.0.1:${httpPort}`,
  "--assets-dir", leafletDist,
  "--speedup", "10",
  // A weekday morning's service whatever the day and hour CI runs at: the default is now in
  // Cairns, and on a Sunday or at night so few buses run that a zoomed-in viewport can hold none.
  "--date", "2026-11-24", "--start", "08:30",
];
let up = startUp(upArgs, "busflow up");
const profile = mkdtempSync(path.join(os.tmpdir(), "busflow-chromium-"));
let context;
try {
  await waitFor("gateway readiness", async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).ok, 60_000);

  // A fresh profile directory every run (Playwright passes it as --user-data-dir; headless: true
  // adds --headless).
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1200, height: 800 },
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => { if (m.type() === "error") console.log(`  [page] ${m.text()}`); });
  await page.goto(`http://127.0.0.1:${httpPort}/`);

  console.log("map");
  const polylines = await waitFor("route polylines", () => page.locator("path.leaflet-interactive, .leaflet-overlay-pane path").count(), 10_000);
  check(polylines > 0, `route polylines drawn (${polylines})`);
  const legend = await page.locator("#route-list input[type=checkbox]").count();
  check(legend > 0, `route legend has ${legend} filter checkboxes`);

  const count = await waitFor("markers", () => page.evaluate(() => window.busflow.vehicleCount()), 5_000);
  check(count > 0, `markers appear within 5 s (${count})`);

  const before = new Map((await page.evaluate(() => window.busflow.positions())).map(([id, a, b]) => [id, [a, b]]));
  await sleep(4000);
  const after = await page.evaluate(() => window.busflow.positions());
  const moved = after.filter(([id, a, b]) => before.has(id) && (before.get(id)[0] !== a || before.get(id)[1] !== b)).length;
  check(moved > 0, `markers move (${moved} of ${after.length} moved in 4 s)`);

  const streams = await metric(httpPort, "busflow_gateway_clients");
  check(streams === 1, `gateway counts one stream for one page (busflow_gateway_clients = ${streams})`);

  console.log("popup and legend");
  // Markers glide continuously, so they never count as "stable" for a normal click.
  await page.locator(".leaflet-marker-icon.bus").first().click({ force: true });
  const popup = await waitFor("popup", async () => (await page.locator(".leaflet-popup-content").count()) > 0, 5_000);
  const popupText = popup ? await page.locator(".leaflet-popup-content").innerText() : "";
  check(/Vehicle/.test(popupText) && /Updated/.test(popupText) && /Status/.test(popupText),
    `marker popup shows vehicle, status and age (${popupText.replace(/\s+/g, " ").slice(0, 80)})`);
  await page.keyboard.press("Escape");
  await page.locator("#no-routes").click();
  const none = await waitFor("no buses with no route selected", async () => (await page.evaluate(() => window.busflow.vehicleCount())) === 0, 5_000);
  check(none, "legend 'None' hides every bus");
  await page.locator("#all-routes").click();
  const back = await waitFor("buses back", () => page.evaluate(() => window.busflow.vehicleCount()), 5_000);
  check(back > 0, `legend 'All' brings them back (${back})`);
  const firstRoute = page.locator("#route-list input[type=checkbox]").first();
  await firstRoute.focus();
  await page.keyboard.press("Space");
  check(!(await firstRoute.isChecked()), "legend checkboxes work from the keyboard");
  await page.keyboard.press("Space");

  console.log("panning");
  const idsCentre = new Set(await page.evaluate(() => window.busflow.vehicleIds()));
  // Zoom into the northern beaches, away from the city centre.
  await page.evaluate(() => window.busflow.map.setView([-16.745, 145.667], 15));
  await sleep(2500);
  const idsNorth = new Set(await page.evaluate(() => window.busflow.vehicleIds()));
  const same = idsCentre.size === idsNorth.size && [...idsCentre].every((id) => idsNorth.has(id));
  check(!same, `panning changes the buses shown (${idsCentre.size} -> ${idsNorth.size})`);
  const streamsAfterPan = await metric(httpPort, "busflow_gateway_clients");
  check(streamsAfterPan === 1, `still one stream after re-subscribing (${streamsAfterPan})`);
  await page.evaluate(() => window.busflow.map.setView([-16.92, 145.77], 13));
  await sleep(2000);
  await page.screenshot({ path: path.join(artifacts, "map.png") });

  console.log("gateway restart");
  await stop(up);
  await waitFor("page notices the outage", async () => (await page.evaluate(() => window.busflow.connection())) !== "live", 10_000);
  up = startUp(upArgs, "busflow up (restarted)");
  await waitFor("gateway readiness after restart", async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).ok, 60_000);
  const live = await waitFor("page reconnects", async () => (await page.evaluate(() => window.busflow.connection())) === "live", 20_000);
  check(live, "page reconnects after a gateway restart without reload");
  const countAgain = await waitFor("markers after restart", () => page.evaluate(() => window.busflow.vehicleCount()), 15_000);
  check(countAgain > 0, `markers back after restart (${countAgain})`);
  await page.screenshot({ path: path.join(artifacts, "map-after-restart.png") });
} catch (err) {
  failures.push(String(err && err.stack ? err.stack : err));
  console.log(`  FAIL ${err}`);
  console.log(up.output().split("\n").slice(-30).join("\n"));
} finally {
  if (context) await context.close();
  await stop(up);
}

if (failures.length) {
  console.log(`\n${failures.length} browser check(s) failed`);
  process.exit(1);
}
console.log(`\nbrowser tests passed; screenshots in ${artifacts}`);
