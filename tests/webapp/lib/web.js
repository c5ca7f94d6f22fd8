// Helpers for driving the web client (control/webapp) in Debian's Chromium: launch with fake
// camera and microphone, pages that record console errors and CSP violations, axe-core runs,
// screenshots under artifacts/webapp/, and the page's own view of its media (getStats).

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { join } from "node:path";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { ROOT, PASSWORD } from "../../signaling/lib/env.js";

export const ARTIFACTS = join(process.env.TELETIP_ARTIFACTS || join(ROOT, "artifacts"), "webapp");
mkdirSync(ARTIFACTS, { recursive: true });
const CHROMIUM = process.env.TELETIP_CHROMIUM || "/usr/bin/chromium";
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

export const SIZES = { desktop: { width: 1280, height: 800 }, phone: { width: 390, height: 844 } };

/**
 * Chromium with a fake camera and microphone. `fakeUi: false` leaves out the flag that answers
 * every permission prompt with "allow" (and picks the fake screen for getDisplayMedia), so a
 * context without the permissions is refused.
 */
export function launch({ fakeUi = true, cameras = 1 } = {}) {
  return chromium.launch({ executablePath: CHROMIUM, args: chromiumArgs(fakeUi, cameras) });
}

/**
 * A page in a browser with a profile on disk (not the private, incognito-like context of
 * `launch`, where Chromium offers no Push API at all), recording as `openPage` does. Close it
 * with `page.context().close()`.
 */
export async function openPersistentPage(label, viewport, { permissions = [], locale = "en-GB" } = {}) {
  const profile = mkdtempSync(join(tmpdir(), "teletip-chromium-"));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: chromiumArgs(true), viewport, permissions, locale });
  context.on("close", () => {
    // The browser may still be writing its profile as it exits: a leftover directory in the
    // temporary directory is no reason to fail a test.
    setTimeout(() => {
      try {
        rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
      } catch {
        /* left behind */
      }
    }, 500);
  });
  const page = context.pages()[0] || (await context.newPage());
  return recording(page, label);
}

/** `cameras`: how many fake cameras Chromium offers (`device-count`; one by default). */
function chromiumArgs(fakeUi, cameras = 1) {
  return [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    cameras > 1 ? `--use-fake-device-for-media-stream=device-count=${cameras}` : "--use-fake-device-for-media-stream",
    ...(fakeUi ? ["--use-fake-ui-for-media-stream"] : []),
    "--autoplay-policy=no-user-gesture-required",
  ];
}

/** A page in its own context (own cookies and storage), recording console errors and CSP reports. */
export async function openPage(browser, label, viewport, { init, permissions = ["camera", "microphone"], locale = "en-GB", timezoneId } = {}) {
  const context = await browser.newContext({ viewport, permissions, locale, ...(timezoneId ? { timezoneId } : {}) });
  if (init) await context.addInitScript(init.fn, init.arg);
  return recording(await context.newPage(), label);
}

function recording(page, label) {
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error" || /Content[- ]Security[- ]Policy|Refused to/i.test(m.text())) problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.problems = problems;
  page.label = label;
  return page;
}

/** No CSP violation (the strict policy holds for the bundle) and no script error. */
export function assertClean(page) {
  const csp = page.problems.filter((p) => /Content[- ]Security[- ]Policy|Refused to/i.test(p));
  assert.deepEqual(csp, [], `${page.label}: CSP violations`);
  const errors = page.problems.filter((p) => /pageerror/.test(p));
  assert.deepEqual(errors, [], `${page.label}: script errors`);
}

/** Serious and critical axe-core violations on the page as it is now (WCAG 2.1 A and AA rules). */
export async function axe(page) {
  // The source as the expression itself: DevTools' evaluation is not governed by the page's
  // CSP, which refuses inline scripts and eval (so addScriptTag or new Function would fail).
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
  });
  return result.filter((v) => v.impact === "serious" || v.impact === "critical");
}

/** Collects axe findings per page name, for one assertion at the end of a test. */
export class AxeLog {
  constructor() {
    this.found = {};
    this.pages = [];
  }
  async check(page, name) {
    this.pages.push(name);
    const v = await axe(page);
    if (v.length) this.found[name] = v;
  }
  assertNone() {
    assert.deepEqual(this.found, {}, `axe-core: serious or critical violations on ${Object.keys(this.found).join(", ")}`);
  }
}

export const shots = [];
export async function shot(page, name) {
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: false });
  shots.push(path);
}

export async function logIn(page, control, user) {
  await page.goto(control.url("/"));
  await page.getByLabel("E-mail").fill(user.email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByTestId("appointments-view").waitFor();
}

/** The page's own view of its media: decoded video frames, the selected pair's candidate types. */
export function mediaStats(page) {
  return page.evaluate(async () => {
    const pc = window.teletip.pc;
    if (!pc) return null;
    const stats = await pc.getStats();
    let framesDecoded = 0;
    let pair = null;
    const all = [...stats.values()];
    for (const s of all) {
      if (s.type === "inbound-rtp" && s.kind === "video") framesDecoded += s.framesDecoded || 0;
      if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    }
    if (!pair) pair = all.find((s) => s.type === "candidate-pair" && s.nominated && s.state === "succeeded") || null;
    const local = pair && stats.get(pair.localCandidateId);
    const remote = pair && stats.get(pair.remoteCandidateId);
    return {
      connectionState: pc.connectionState,
      policy: pc.getConfiguration().iceTransportPolicy,
      framesDecoded,
      local: local && local.candidateType,
      remote: remote && remote.candidateType,
    };
  });
}

export async function until(what, fn, timeoutMs = 45000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last && last.ok) return last.value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Photographs both pages and prints what they knew when a test failed. */
export async function onFailure(tag, pages) {
  for (const page of pages) {
    const seen = await page.evaluate(() => ({ state: window.teletip?.state, url: location.pathname })).catch((err) => ({ unreadable: String(err) }));
    console.error(`${page.label} when the test failed: ${JSON.stringify(seen)}; problems: ${JSON.stringify(page.problems)}`);
    await page.screenshot({ path: join(ARTIFACTS, `${tag}-${page.label.replace(/\W+/g, "-")}-failed.png`), fullPage: true }).catch(() => {});
  }
}

/** Publishes a privacy notice with one required purpose, so that patients consent in the client. */
export async function publishNotice(clinic, version = `v${Date.now()}`) {
  await clinic.api.must("POST", "/v1/privacy-notices", clinic.admin, {
    version,
    language: "en",
    title: "How we process your personal data",
    body: "We process your health data only for the video consultation.\n\nYou may withdraw your consent at any time.",
    purposes: [
      { code: "health-data-processing", required: true, description: "Processing my health data for the video consultation" },
      { code: "research", required: false, description: "Anonymised research" },
    ],
  });
  return version;
}

/** Presses Tab until the element with `testid` has the focus (at most `max` presses). */
export async function tabTo(page, testid, max = 80) {
  for (let i = 0; i < max; i++) {
    const at = await page.evaluate(() => document.activeElement?.getAttribute("data-testid"));
    if (at === testid) return;
    await page.keyboard.press("Tab");
  }
  throw new Error(`${page.label}: ${testid} not reached with ${max} presses of Tab`);
}

// How long a page is watched, after showing its message, for anything it would retry.
export const QUIET_MS = 6000;

/** Records the page's requests to the control plane's API, by path. */
export function recordApi(page) {
  const seen = [];
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith("/v1/")) seen.push(`${r.method()} ${u.pathname}`);
  });
  return seen;
}
