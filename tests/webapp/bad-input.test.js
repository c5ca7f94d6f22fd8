// Bad input, in the web client (control/webapp) driven in Debian's Chromium against the real
// teletip-control and teletip-relay: a denied camera and microphone, a revoked session, a lost
// network during a call and a full relay (an expired session: session-expiry.test.js). Each must show a plain
// message and a way forward that works when clicked, and must not loop: what the page asks of
// the browser or the servers is counted and stays bounded while the page sits there.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { Clinic } from "../signaling/lib/clinic.js";
import { Control, Relay, RELAXED_LIMITS, PASSWORD, freeUdpPort, sleep, tempDir } from "../signaling/lib/env.js";
import { AxeLog, QUIET_MS, SIZES, assertClean, launch, logIn, mediaStats, onFailure, openPage, recordApi, shot, until } from "./lib/web.js";

let control;
let relay;
let browser;
let denying;
let c;
before(async () => {
  const dir = tempDir("teletip-webapp-bad-");
  const relayPort = await freeUdpPort();
  control = await Control.start({ name: "webapp-bad", dir, extraToml: `${RELAXED_LIMITS}\n[[ice.relays]]\nhost = "127.0.0.1"\nudp-port = ${relayPort}\n` });
  control.createAdmin();
  relay = await Relay.start({ secretFile: join(control.dataDir, "relay.secret"), port: relayPort, dir });
  c = await Clinic.open({ control });
  browser = await launch();
  // Without --use-fake-ui-for-media-stream: a context that was not granted the camera and
  // microphone is refused by the browser, as a person's "Block" would.
  denying = await launch({ fakeUi: false });
});
after(async () => {
  await browser?.close();
  await denying?.close();
  await relay?.stop();
  await control?.stop();
});

/** Counts the page's getUserMedia calls (in sessionStorage, across its navigations). */
const COUNT_MEDIA = {
  fn: () => {
    const md = navigator.mediaDevices;
    const native = md.getUserMedia.bind(md);
    md.getUserMedia = (constraints) => {
      sessionStorage.setItem("gum", String(Number(sessionStorage.getItem("gum") || 0) + 1));
      return native(constraints);
    };
  },
  arg: null,
};
const mediaAsks = (page) => page.evaluate(() => Number(sessionStorage.getItem("gum") || 0));

/** Reads a relay counter until its published value settles (it publishes every few seconds). */
async function settled(relay, name) {
  let last = -1;
  let now = await relay.counter(name);
  while (now !== last) {
    await sleep(3000);
    last = now;
    now = await relay.counter(name);
  }
  return now;
}

test("a denied camera and microphone: the device check and the call say what to do, and Try again works once allowed", async () => {
  const { patient, appointment } = await c.pair({ practitioner: "Dr. Selin Ak", patient: "Mert Kılıç" });
  const pat = await openPage(denying, "patient-denied", SIZES.phone, { init: COUNT_MEDIA, permissions: [] });
  const a11y = new AxeLog();
  try {
    await logIn(pat, control, patient);
    await pat.locator(`[data-appointment-id="${appointment.id}"] [data-testid="appointment-open"]`).click();
    await pat.getByTestId("check-view").waitFor();
    const problem = pat.getByTestId("media-problem");
    await problem.waitFor();
    assert.match(await problem.textContent(), /does not allow the camera or microphone.*allow both, then press Try again/s);
    await shot(pat, "bad-denied-check");
    await a11y.check(pat, "device check, denied");
    // No loop: the page asked once (or once per effect run) and then waits for the person.
    const asked = await mediaAsks(pat);
    await sleep(QUIET_MS);
    assert.equal(await mediaAsks(pat), asked, "the device check asked again on its own");
    assert.ok(asked <= 2, `${asked} camera requests before any click`);

    // Into the call without them: the call says so too, and offers the device check.
    await pat.getByTestId("join").click();
    await pat.getByTestId("call").waitFor();
    const inCall = pat.getByTestId("media-problem");
    await inCall.waitFor();
    assert.match(await inCall.textContent(), /does not allow the camera or microphone.*then press Check camera and microphone/s);
    await shot(pat, "bad-denied-room");
    await a11y.check(pat, "room, denied");
    const inRoom = await mediaAsks(pat);
    await sleep(QUIET_MS);
    assert.equal(await mediaAsks(pat), inRoom, "the room asked again on its own");

    // The person allows the camera and microphone (the site settings), and the way forward works:
    // back to the device check, Try again, and the preview runs.
    await pat.context().grantPermissions(["camera", "microphone"], { origin: control.url() });
    await pat.getByTestId("check-devices").click();
    await pat.getByTestId("check-view").waitFor();
    await pat.getByTestId("check-again").click();
    await until("the preview to play", async () => {
      const v = await pat.evaluate(() => {
        const el = document.querySelector('[data-testid="preview"]');
        return { playing: !!el && el.srcObject instanceof MediaStream && el.videoWidth > 0, problem: !!document.querySelector('[data-testid="media-problem"]') };
      });
      return { ok: v.playing && !v.problem, value: v };
    });
    assertClean(pat);
    a11y.assertNone();
  } catch (e) {
    await onFailure("bad-denied", [pat]);
    throw e;
  } finally {
    await pat.context().close();
  }
});

test("a revoked session: on the appointments page and in the waiting room, back to the login page without a retry loop", async () => {
  await c.relogin();
  const { patient, appointment } = await c.pair({ practitioner: "Dr. Ali Şen", patient: "Zeynep Ay" });
  const pat = await openPage(browser, "patient-revoked", SIZES.desktop);
  const api = recordApi(pat);
  try {
    // On the appointments page: an admin ends every session of the user (a new password), and
    // the next thing the person does meets a refused refresh.
    await logIn(pat, control, patient);
    await c.api.must("PATCH", `/v1/users/${patient.userId}`, c.admin, { password: `${PASSWORD} renewed` });
    // The page may meet the refused refresh by itself first (any request it makes then), and
    // leave for the login page before the click lands: then there is nothing left to click.
    // The click is awaited either way (at most 5 s), so that none is pending when the test
    // logs in again and the same button is back.
    const loginView = pat.getByTestId("login-view");
    const clicked = pat
      .locator(`[data-appointment-id="${appointment.id}"] [data-testid="appointment-open"]`)
      .click({ timeout: 5000 })
      .catch(() => "the page had left");
    await loginView.waitFor();
    await clicked;
    assert.match(await pat.getByTestId("status").textContent(), /Your session has ended\. Please log in again\./);
    await shot(pat, "bad-revoked-appointments");
    let n = api.length;
    const refreshes = api.filter((r) => r === "POST /v1/auth/refresh").length;
    assert.ok(refreshes <= 1, `${refreshes} refreshes: ${JSON.stringify(api)}`);
    await sleep(QUIET_MS);
    assert.deepEqual(api.slice(n), [], "requests after the session ended");

    // In the waiting room: the server ends the session while the signaling connection is open.
    const password = `${PASSWORD} renewed`;
    await pat.getByLabel("E-mail").fill(patient.email);
    await pat.getByLabel("Password").fill(password);
    await pat.getByRole("button", { name: "Log in" }).click();
    await pat.getByTestId("appointments-view").waitFor();
    await pat.locator(`[data-appointment-id="${appointment.id}"] [data-testid="appointment-open"]`).click();
    await pat.getByTestId("check-view").waitFor();
    await pat.getByTestId("join").click();
    await pat.getByTestId("call").waitFor();
    await c.api.must("PATCH", `/v1/users/${patient.userId}`, c.admin, { disabled: true });
    const shown = await until("the page to say the session ended", async () => {
      const v = await pat.evaluate(() => ({
        error: document.querySelector('[data-testid="room-error"]')?.getAttribute("data-code") ?? null,
        login: !!document.querySelector('[data-testid="login-view"]'),
        status: document.querySelector('[data-testid="status"]')?.textContent ?? "",
      }));
      return { ok: v.error === "session-ended" || v.login, value: v };
    });
    await shot(pat, "bad-revoked-room");
    if (!shown.login) {
      assert.match(await pat.getByTestId("room-error").textContent(), /Your session has ended\. Please log in again\./);
      await pat.getByRole("button", { name: "Log in" }).click();
      await pat.getByTestId("login-view").waitFor();
    }
    n = api.length;
    await sleep(QUIET_MS);
    assert.deepEqual(api.slice(n), [], "requests after the session ended");
    const sockets = await pat.evaluate(() => window.teletip.state.socketConnected ?? false);
    assert.equal(sockets, false, "the signaling connection stays closed");
    assertClean(pat);
  } catch (e) {
    await onFailure("bad-revoked", [pat]);
    throw e;
  } finally {
    await pat.context().close();
  }
});

test("a lost network during a call: a plain reconnecting message, then the call recovers", async () => {
  await c.relogin();
  const { practitioner, patient, appointment } = await c.pair({ practitioner: "Dr. Ufuk Er", patient: "Lale Tok" });
  const doc = await openPage(browser, "practitioner-offline", SIZES.desktop);
  const pat = await openPage(browser, "patient-offline", SIZES.phone);
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
    const decoding = (page) =>
      until(`${page.label}: video decoded`, async () => {
        const st = await mediaStats(page);
        return { ok: !!st && st.connectionState === "connected" && st.framesDecoded > 10, value: st };
      });
    for (const page of [doc, pat]) await decoding(page);
    const before = await pat.evaluate(() => window.teletip.state);

    // The patient's network goes away: the page says so in plain words, and nothing is
    // offered that the person would have to do.
    await pat.context().setOffline(true);
    const lost = pat.getByTestId("network-lost");
    await lost.waitFor({ timeout: 30000 });
    assert.match(await lost.textContent(), /The connection is lost\. Reconnecting/);
    await shot(pat, "bad-offline");
    await sleep(QUIET_MS);
    const during = await pat.evaluate(() => window.teletip.state);
    assert.equal(during.failure, null, "no failure while the network is away for seconds");

    // Back: the message goes, the signaling connection and the call are back, and the page
    // spent at most one new connection on it.
    await pat.context().setOffline(false);
    await until("the message to go", async () => ({ ok: (await lost.count()) === 0 }));
    await until("the signaling connection", async () => {
      const st = await pat.evaluate(() => window.teletip.state);
      return { ok: st.socketConnected === true, value: st };
    });
    await until("the call connected", async () => {
      const st = await pat.evaluate(() => window.teletip.state);
      return { ok: st.callState === "connected", value: st };
    });
    for (const page of [doc, pat]) await decoding(page);
    const after = await pat.evaluate(() => window.teletip.state);
    assert.ok(after.peerConnections - before.peerConnections <= 1, `${after.peerConnections - before.peerConnections} new connections`);
    assert.ok(after.iceRestarts - before.iceRestarts <= 2, `${after.iceRestarts - before.iceRestarts} ICE restarts`);
    for (const page of [doc, pat]) assertClean(page);
  } catch (e) {
    await onFailure("bad-offline", [doc, pat]);
    throw e;
  } finally {
    await doc.context().close();
    await pat.context().close();
  }
});

test("a full relay: the call says the relay is at capacity and stops within its budget", async () => {
  // A control plane and a relay of their own: the relay holds one allocation in total, and a
  // third person's browser holds it, so every allocation of the call is refused with 486.
  const dir = tempDir("teletip-webapp-full-");
  const port = await freeUdpPort();
  const fc = await Control.start({ name: "webapp-full", dir, extraToml: `${RELAXED_LIMITS}\n[[ice.relays]]\nhost = "127.0.0.1"\nudp-port = ${port}\n` });
  fc.createAdmin();
  const full = await Relay.start({ secretFile: join(fc.dataDir, "relay.secret"), port, dir, name: "relay-full", extraArgs: ["--total-quota", "1"] });
  const clinic = await Clinic.open({ control: fc });
  const holder = await clinic.patient("Hakan Bay");
  const ice = await clinic.api.must("POST", "/v1/ice/credentials", holder.token, {});
  const hold = await openPage(browser, "holder", SIZES.desktop);
  const init = { fn: (t) => localStorage.setItem("teletip.debug.call", JSON.stringify(t)), arg: { maxNewConnectionsPerMinute: 2, initialBackoffMs: 500, maxBackoffMs: 1000, connectTimeoutMs: 4000 } };
  const { practitioner, patient, appointment } = await clinic.pair({ practitioner: "Dr. Nur Er", patient: "Cem Aksoy" });
  const doc = await openPage(browser, "practitioner-full", SIZES.desktop, { init });
  const pat = await openPage(browser, "patient-full", SIZES.phone, { init });
  const a11y = new AxeLog();
  try {
    await hold.goto(fc.url("/"));
    const held = await hold.evaluate(async (servers) => {
      const pc = new RTCPeerConnection({ iceServers: servers, iceTransportPolicy: "relay" });
      window.holding = pc;
      pc.createDataChannel("hold");
      const got = new Promise((resolve) => {
        pc.addEventListener("icecandidate", (ev) => ev.candidate && / typ relay/.test(ev.candidate.candidate) && resolve(true));
        setTimeout(() => resolve(false), 10000);
      });
      await pc.setLocalDescription(await pc.createOffer());
      return got;
    }, ice.iceServers);
    assert.ok(held, "the holder got the relay's one allocation");
    // The relay publishes its counters every few seconds.
    const before = await until("the holder's allocation counted", async () => {
      const n = await full.counter("teletip_allocations_created_total");
      return { ok: n >= 1, value: n };
    }, 20000);
    assert.equal(before, 1, "one allocation made, by the holder");

    await logIn(pat, fc, patient);
    await logIn(doc, fc, practitioner);
    for (const page of [pat, doc]) {
      await page.locator(`[data-appointment-id="${appointment.id}"] [data-testid="appointment-open"]`).click();
      await page.getByTestId("check-view").waitFor();
      // The device check already says the relay cannot be reached from here.
      await until("the relay check", async () => {
        const r = await page.getByTestId("relay-check").getAttribute("data-result");
        return { ok: r !== "testing", value: r };
      });
      assert.equal(await page.getByTestId("relay-check").getAttribute("data-result"), "bad");
      await page.getByTestId("join").click();
    }
    const waiting = doc.getByTestId("waiting-list").getByTestId("waiting-patient");
    await waiting.waitFor();
    await waiting.getByTestId("admit").click();
    for (const page of [doc, pat]) {
      const failure = page.getByTestId("call-failure");
      await failure.waitFor({ timeout: 90000 });
      assert.equal(await failure.getAttribute("data-cause"), "relay-full", `${page.label}: ${await failure.textContent()}`);
      const text = await failure.textContent();
      assert.match(text, /The video relay is at capacity/, `${page.label}: the cause in plain words`);
      assert.match(text, /Try again in a few minutes/, `${page.label}: a way forward`);
      await page.getByTestId("rejoin").waitFor();
      const st = await page.evaluate(() => window.teletip.state);
      assert.ok(st.peerConnections <= 2, `${page.label}: ${st.peerConnections} connections`);
      await shot(page, `bad-full-${page.label}`);
      await a11y.check(page, `relay full (${page.label})`);
    }
    // No loop: the relay refused (486) a bounded number of allocations, granted none, and sees
    // no attempt once both pages reported. Bound: each page's budget of 2 connections, each
    // with one ICE restart, plus its device check's probe, per local IPv4 network, and the
    // browser's own retry of a refused Allocate (one).
    const refused = await settled(full, "teletip_allocations_failed_total");
    assert.equal(await full.counter("teletip_allocations_created_total"), before, "no allocation was granted beyond the holder's");
    const networks = Object.values(networkInterfaces()).flat().filter((a) => a && a.family === "IPv4").length;
    const bound = 2 * (2 * 2 + 1) * networks * 2;
    console.log(`full relay: ${refused} Allocate requests refused (bound ${bound} for ${networks} IPv4 networks)`);
    assert.ok(refused > 0, "the relay refused the call's allocations");
    assert.ok(refused <= bound, `${refused} refused allocations`);
    await sleep(QUIET_MS);
    assert.equal(await full.counter("teletip_allocations_failed_total"), refused, "allocation attempts after both pages reported");
    // The way forward works: Join again leads back to the device check.
    await pat.getByTestId("rejoin").click();
    await pat.getByTestId("check-view").waitFor();
    for (const page of [doc, pat]) assertClean(page);
    a11y.assertNone();
  } catch (e) {
    await onFailure("bad-full", [doc, pat]);
    throw e;
  } finally {
    await doc.context().close();
    await pat.context().close();
    await hold.context().close();
    await full.stop();
    await fc.stop();
  }
});
