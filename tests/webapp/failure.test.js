// Media cannot flow: teletip-relay as shipped refuses permissions towards loopback peers, so
// between two browsers on this host it grants allocations but no media path ever forms. Each
// client must spend at most its budget of connections, stop, and show the cause in plain words
// with a way forward, never loop. The relay's own teletip_allocations_created_total is read
// over the whole window.
//
// The window is scaled down, and said so: the budget is the SDK's (at most N new connections in
// any minute), set through the client's operator/debug setting `teletip.debug.call` to N = 2
// with a 4-s connect timeout, so the budget is spent in seconds instead of minutes. Each new
// connection gathers one relayed candidate per relay URL (one URL here), and its one ICE restart
// gathers again (Chromium allocates anew for the new ICE credentials), so each client can cause
// at most 2N allocations for its calls plus one for its device check's reachability probe: the
// bound asserted is 2 clients × (2N + 1) gatherings, times the host's IPv4 networks (Chromium
// opens one allocation per local network it gathers on). With the shipped budget (N = 4 a
// minute) and one network that is at most 9 allocations a minute per client, where the old
// client made 94 connections in a minute. Also: every relayed candidate the pages surfaced is an
// allocation the relay counted, every allocation comes from a gathering the pages started (one
// per local network each; both counted in the pages), and the counter must not move once both
// clients have reported.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { Clinic } from "../signaling/lib/clinic.js";
import { Control, RELAXED_LIMITS, freeUdpPort, sleep, tempDir } from "../signaling/lib/env.js";
import { startRelayDenyingLoopback } from "../sdk/lib/relay.js";
import { AxeLog, SIZES, assertClean, launch, logIn, onFailure, openPage, shot } from "./lib/web.js";

const BUDGET = 2;
const TUNING = { maxNewConnectionsPerMinute: BUDGET, initialBackoffMs: 500, maxBackoffMs: 1000, connectTimeoutMs: 4000 };

let control;
let relay;
let browser;
let c;
before(async () => {
  const dir = tempDir("teletip-webapp-fail-");
  const relayPort = await freeUdpPort();
  control = await Control.start({ name: "webapp-fail", dir, extraToml: `${RELAXED_LIMITS}\n[[ice.relays]]\nhost = "127.0.0.1"\nudp-port = ${relayPort}\n` });
  control.createAdmin();
  relay = await startRelayDenyingLoopback({ secretFile: join(control.dataDir, "relay.secret"), port: relayPort, dir });
  c = await Clinic.open({ control });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await relay?.stop();
  await control?.stop();
});

/** Reads the counter until the relay's published value settles (it publishes every few seconds). */
async function settled(name) {
  let last = -1;
  let now = await relay.counter(name);
  while (now !== last) {
    await sleep(3000);
    last = now;
    now = await relay.counter(name);
  }
  return now;
}

test("no media path: each client stops within its budget of allocations and shows why", async () => {
  const { practitioner, patient, appointment } = await c.pair({ practitioner: "Dr. Can Öz", patient: "Deniz Er" });
  // The tuning, and a count of the relayed candidates each page's connections gather (each one
  // is an allocation the relay granted), kept in sessionStorage across the page's navigations.
  const init = {
    fn: (t) => {
      localStorage.setItem("teletip.debug.call", JSON.stringify(t));
      const Native = window.RTCPeerConnection;
      window.RTCPeerConnection = class extends Native {
        constructor(config) {
          super(config);
          this.addEventListener("icegatheringstatechange", () => {
            if (this.iceGatheringState === "gathering") {
              sessionStorage.setItem("gatherings", String(Number(sessionStorage.getItem("gatherings") || 0) + 1));
            }
          });
          this.addEventListener("icecandidate", (ev) => {
            if (ev.candidate && / typ relay/.test(ev.candidate.candidate)) {
              sessionStorage.setItem("relayed", String(Number(sessionStorage.getItem("relayed") || 0) + 1));
            }
          });
        }
      };
    },
    arg: TUNING,
  };
  const doc = await openPage(browser, "practitioner-fail", SIZES.desktop, { init });
  const pat = await openPage(browser, "patient-fail", SIZES.phone, { init });
  const a11y = new AxeLog();
  const before = await relay.counter("teletip_allocations_created_total");
  const started = Date.now();
  try {
    await logIn(pat, control, patient);
    await logIn(doc, control, practitioner);
    for (const page of [pat, doc]) {
      await page.locator(`[data-appointment-id="${appointment.id}"] [data-testid="appointment-open"]`).click();
      await page.getByTestId("check-view").waitFor();
      await page.getByTestId("join").click();
    }
    const waiting = doc.getByTestId("waiting-list").getByTestId("waiting-patient");
    await waiting.waitFor();
    await waiting.getByTestId("admit").click();
    for (const page of [doc, pat]) {
      const failure = page.getByTestId("call-failure");
      await failure.waitFor({ timeout: 90000 });
      const cause = await failure.getAttribute("data-cause");
      assert.equal(cause, "media-path-failed", `${page.label}: ${await failure.textContent()}`);
      const text = await failure.textContent();
      assert.match(text, /could not get through/, `${page.label}: the cause in plain words`);
      assert.match(text, /another network|tell the clinic/, `${page.label}: a way forward`);
      await page.getByTestId("rejoin").waitFor();
      const st = await page.evaluate(() => window.teletip.state);
      assert.ok(st.peerConnections <= BUDGET, `${page.label}: ${st.peerConnections} connections`);
      await shot(page, `failure-${page.label}`);
      await a11y.check(page, `failure (${page.label})`);
    }
    const after = await settled("teletip_allocations_created_total");
    const seconds = Math.round((Date.now() - started) / 1000);
    const made = after - before;
    const networks = Object.values(networkInterfaces()).flat().filter((a) => a && a.family === "IPv4").length;
    const bound = 2 * (2 * BUDGET + 1) * networks;
    const count = async (key) => (await doc.evaluate((k) => Number(sessionStorage.getItem(k) || 0), key)) + (await pat.evaluate((k) => Number(sessionStorage.getItem(k) || 0), key));
    const gathered = await count("relayed");
    const gatherings = await count("gatherings");
    console.log(`allocations over ${seconds} s: ${made} (gatherings started by the pages: ${gatherings}, relayed candidates they surfaced: ${gathered}; bound ${bound} for ${networks} IPv4 networks)`);
    assert.ok(made > 0, "the relay granted allocations: only the media path fails");
    // Every relayed candidate a page saw is an allocation the relay counted; the converse need
    // not hold candidate by candidate: a connection the client closes (its connect timeout, an
    // ICE restart) while an Allocate is in flight never surfaces that candidate, though the
    // relay granted it (CI saw 14 allocations for 12 candidates once). So the allocations are
    // tied to the gatherings the pages started instead: one per local network each.
    assert.ok(gathered <= made, `the pages surfaced ${gathered} relayed candidates, but the relay counted ${made} allocations`);
    assert.ok(made <= gatherings * networks, `${made} allocations, but the pages started only ${gatherings} gatherings on ${networks} networks`);
    assert.ok(made <= bound, `${made} allocations in ${seconds} s for two clients with a budget of ${BUDGET}`);
    await sleep(5000);
    assert.equal(await relay.counter("teletip_allocations_created_total"), after, "no allocation after both clients reported");
    for (const page of [doc, pat]) assertClean(page);
    a11y.assertNone();
  } catch (e) {
    await onFailure("failure", [doc, pat]);
    throw e;
  } finally {
    await doc.context().close();
    await pat.context().close();
  }
});
