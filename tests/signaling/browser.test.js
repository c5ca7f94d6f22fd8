// A real call between two headless Chromium pages (Debian's /usr/bin/chromium with fake camera
// and microphone) through the web client (control/webapp, built into control/webapp/dist and
// embedded by teletip-control), relayed by teletip-relay: log in through the UI, the patient
// waits in the lobby, the practitioner admits, relay only (the client's default). Checked: video frames decoded on both sides, the selected candidate pair is
// relay↔relay on both, the relay counted relayed bytes, mute reaches the other side, and the
// practitioner's "End consultation" fulfils the appointment; a consultation whose appointment the
// practitioner fulfils mid-call through the API loses its relay at once (issue 20: revocation).
// Screenshots go to artifacts/browser/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { Clinic } from "./lib/clinic.js";
import { Control, Relay, RELAXED_LIMITS, ROOT, PASSWORD, freeUdpPort, tempDir } from "./lib/env.js";

const ARTIFACTS = join(process.env.TELETIP_ARTIFACTS || join(ROOT, "artifacts"), "browser");
const CHROMIUM = process.env.TELETIP_CHROMIUM || "/usr/bin/chromium";

let control;
let relay;
let browser;
let c;
before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of ["practitioner-failed.png", "patient-failed.png"]) rmSync(join(ARTIFACTS, f), { force: true });
  const dir = tempDir("teletip-browser-");
  const relayPort = await freeUdpPort();
  control = await Control.start({
    name: "browser",
    dir,
    // Access tokens of 30 s (the minimum): the call outlives the first ones, so the pages must
    // refresh them and renew the signaling connection (auth:renew) while the video runs.
    extraToml: `${RELAXED_LIMITS}\n[auth]\naccess-ttl = 30\n\n[[ice.relays]]\nhost = "127.0.0.1"\nudp-port = ${relayPort}\nstun = true\n`,
  });
  control.createAdmin();
  relay = await Relay.start({ secretFile: join(control.dataDir, "relay.secret"), port: relayPort, dir });
  c = await Clinic.open({ control });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
    ],
  });
});
after(async () => {
  await browser?.close();
  await relay?.stop();
  await control?.stop();
});

async function openPage(name, viewport) {
  const context = await browser.newContext({ viewport, permissions: ["camera", "microphone"] });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error" || /Content[- ]Security[- ]Policy|Refused to/i.test(m.text())) problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.problems = problems;
  page.label = name;
  return page;
}

async function logIn(page, user, via = control) {
  await page.goto(via.url("/"));
  await page.getByLabel("E-mail").fill(user.email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByTestId("appointments").getByTestId("appointment").first().waitFor();
}

/** Join from the appointments, through the device check (relay only is the client's default). */
async function openAppointmentAndJoin(page, appointmentId) {
  await page.locator(`[data-appointment-id="${appointmentId}"] [data-testid="appointment-open"]`).click();
  await page.getByTestId("check-view").waitFor();
  await page.getByTestId("join").click();
}

/** The page's own view of its media: inbound video frames and the selected pair's types. */
function mediaStats(page) {
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
      pairState: pair && pair.state,
      nominated: pair && pair.nominated,
      local: local && local.candidateType,
      remote: remote && remote.candidateType,
      localAddress: local && (local.address || local.ip),
      // How the browser reaches its relay: udp, tcp or tls.
      relayProtocol: local && local.relayProtocol,
    };
  });
}

async function until(what, fn, timeoutMs = 45000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last && last.ok) return last.value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * A practitioner's and a patient's page for one test: `fn(doc, pat)` runs with both; on a
 * failure both are photographed as `<role>-<tag>-failed.png`; both are closed in any case.
 */
async function withTwoPages(tag, fn) {
  const doc = await openPage(`practitioner ${tag}`, { width: 1280, height: 860 });
  const pat = await openPage(`patient ${tag}`, { width: 360, height: 780 });
  try {
    await fn(doc, pat);
  } catch (e) {
    // What each page knew when the test gave up: a failure on a CI machine is read from this.
    for (const page of [doc, pat]) {
      const seen = await page
        .evaluate(() => ({ state: window.teletip?.state, error: document.querySelector('[data-testid="room-error"]')?.textContent }))
        .catch((err) => ({ unreadable: String(err) }));
      console.error(`${page.label} when the test failed: ${JSON.stringify(seen)}; problems: ${JSON.stringify(page.problems)}`);
    }
    await doc.screenshot({ path: join(ARTIFACTS, `practitioner-${tag}-failed.png`), fullPage: true }).catch(() => {});
    await pat.screenshot({ path: join(ARTIFACTS, `patient-${tag}-failed.png`), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await doc.context().close();
    await pat.context().close();
  }
}

/** Both join the appointment (relay only), and the practitioner admits the patient. */
async function joinAndAdmit(doc, pat, appointmentId) {
  await openAppointmentAndJoin(pat, appointmentId);
  await openAppointmentAndJoin(doc, appointmentId);
  const waiting = doc.getByTestId("waiting-list").getByTestId("waiting-patient");
  await waiting.waitFor();
  await waiting.getByTestId("admit").click();
}

// What was checked here before the React client: that the control plane serves the client's
// files as built under the strict CSP is tests/webapp/serve.test.js; that a patient announced
// while the practitioner's room:join is unanswered stays on the waiting list is the SDK's
// (Signaling keeps the list; control/sdk/test/signaling.test.js plays the race).

// Hospital networks that let no UDP out: the control plane offers only `turn:…?transport=tcp`,
// so both browsers must reach the relay over TCP, and the call must still carry video.
test("a consultation relayed over TURN/TCP when only TCP is offered", async () => {
  const dir = tempDir("teletip-browser-tcp-");
  const port = await freeUdpPort();
  const tcpControl = await Control.start({
    name: "browser-tcp",
    dir,
    extraToml: `${RELAXED_LIMITS}\n[[ice.relays]]\nhost = "127.0.0.1"\ntcp-port = ${port}\nstun = false\n`,
  });
  tcpControl.createAdmin();
  // Its own relay, with this control plane's secret; TCP is served on the UDP port number.
  const tcpRelay = await Relay.start({ secretFile: join(tcpControl.dataDir, "relay.secret"), port, dir });
  const clinic = await Clinic.open({ control: tcpControl });
  const { practitioner, patient, appointment } = await clinic.pair({ practitioner: "Dr. Can Demir", patient: "Zeynep Arslan" });
  try {
    await withTwoPages("tcp", async (doc, pat) => {
      await logIn(pat, patient, tcpControl);
      await logIn(doc, practitioner, tcpControl);
      const servers = await pat.evaluate(() => window.teletip.pc?.getConfiguration().iceServers ?? null);
      await joinAndAdmit(doc, pat, appointment.id);
      for (const page of [doc, pat]) {
        const s = await until(`${page.label} decoding video over TURN/TCP`, async () => {
          const st = await mediaStats(page);
          return { ok: !!st && st.connectionState === "connected" && st.framesDecoded > 0 && st.local === "relay", value: st, st };
        });
        const urls = (await page.evaluate(() => window.teletip.pc.getConfiguration().iceServers)).flatMap((x) => [].concat(x.urls));
        assert.ok(urls.length > 0 && urls.every((u) => u.endsWith("?transport=tcp")), `${page.label}: only TCP offered: ${urls} (before join: ${JSON.stringify(servers)})`);
        assert.equal(s.relayProtocol, "tcp", `${page.label}: reaches the relay over ${s.relayProtocol}`);
        assert.equal(s.remote, "relay", `${page.label}: remote candidate type`);
        assert.ok(s.framesDecoded > 0);
      }
      // The relay saw the two browsers' connections and carried the media over them.
      const accepted = await until("the relay counting TCP connections", async () => {
        const n = await tcpRelay.counter("teletip_stream_connections_accepted_total");
        return { ok: n >= 2, value: n };
      });
      assert.ok(accepted >= 2, `teletip_stream_connections_accepted_total ${accepted}`);
      const bytes = await until("the relay counting relayed bytes", async () => {
        const n = await tcpRelay.counter("teletip_relayed_bytes_total");
        return { ok: n > 10000, value: n };
      });
      assert.ok(bytes > 10000);
    });
  } finally {
    await tcpRelay.stop();
    await tcpControl.stop();
  }
});

// Hospital and mobile networks that hand out IPv6: the control plane offers only the relay's
// bracketed IPv6 address and the relay listens and relays on ::1 only. Chromium reaches an IPv6
// TURN server without asking for an IPv6 relayed address (no REQUESTED-ADDRESS-FAMILY, which RFC
// 8656 answers with IPv4), so the relay runs with allocation-default-address-family = keep, as
// coturn does for this: every relay candidate is IPv6 and the call must still carry video.
test("a consultation relayed over IPv6 when only IPv6 relay candidates exist", async () => {
  const dir = tempDir("teletip-browser-ipv6-");
  const port = await freeUdpPort();
  const v6Control = await Control.start({
    name: "browser-ipv6",
    dir,
    extraToml: `${RELAXED_LIMITS}\n[[ice.relays]]\nhost = "::1"\nudp-port = ${port}\nstun = false\n`,
  });
  v6Control.createAdmin();
  const v6Relay = await Relay.start({
    secretFile: join(v6Control.dataDir, "relay.secret"),
    port,
    dir,
    ip: "::1",
    extraArgs: ["--allocation-default-address-family", "keep"],
  });
  const clinic = await Clinic.open({ control: v6Control });
  const { practitioner, patient, appointment } = await clinic.pair({ practitioner: "Dr. Elif Kaya", patient: "Mert Şahin" });
  try {
    await withTwoPages("ipv6", async (doc, pat) => {
      await logIn(pat, patient, v6Control);
      await logIn(doc, practitioner, v6Control);
      await joinAndAdmit(doc, pat, appointment.id);
      for (const page of [doc, pat]) {
        const s = await until(`${page.label} decoding video through IPv6 relay candidates`, async () => {
          const st = await mediaStats(page);
          return { ok: !!st && st.connectionState === "connected" && st.framesDecoded > 0 && st.local === "relay", value: st, st };
        });
        const urls = (await page.evaluate(() => window.teletip.pc.getConfiguration().iceServers)).flatMap((x) => [].concat(x.urls));
        assert.deepEqual(urls, [`turn:[::1]:${port}?transport=udp`], `${page.label}: only the IPv6 relay offered`);
        assert.equal(s.remote, "relay", `${page.label}: remote candidate type`);
        assert.equal(s.localAddress, "::1", `${page.label}: the selected relay candidate is IPv6`);
        const relayCandidates = await page.evaluate(async () => {
          const stats = await window.teletip.pc.getStats();
          return [...stats.values()]
            .filter((x) => (x.type === "local-candidate" || x.type === "remote-candidate") && x.candidateType === "relay")
            .map((x) => x.address || x.ip);
        });
        assert.ok(relayCandidates.length >= 2 && relayCandidates.every((a) => a.includes(":")), `${page.label}: every relay candidate is IPv6: ${relayCandidates}`);
      }
      const v6 = await until("the relay counting IPv6 relayed addresses", async () => {
        const n = await v6Relay.counter("teletip_relayed_addresses_created_total");
        return { ok: n >= 2, value: n };
      });
      assert.ok(v6 >= 2, `teletip_relayed_addresses_created_total ${v6} (the relay has only an IPv6 relay-ip)`);
      const bytes = await until("the relay counting relayed bytes", async () => {
        const n = await v6Relay.counter("teletip_relayed_bytes_total");
        return { ok: n > 10000, value: n };
      });
      assert.ok(bytes > 10000);
    });
  } finally {
    await v6Relay.stop();
    await v6Control.stop();
  }
});

// Maintenance on a relay: it drains (SIGUSR1) with another relay as its alternate-server. The
// control plane still offers only the draining relay; Chromium's Allocate gets 300 Try Alternate,
// follows ALTERNATE-SERVER to the other relay, and the call runs there, relay only. Chromium
// refuses a redirect to a loopback address (libwebrtc TurnPort::SetAlternateServer), so both
// relays listen on this host's own non-loopback address, and the browsers reach both from it,
// as a client reaches two relays of one site from the same public address.
/** A call through a draining relay offered over `transport` (udp or tcp). */
async function callThroughDrainingRelay(t, transport) {
  const hostIp = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
  if (!hostIp) {
    t.skip("SKIPPED: this host has no non-loopback IPv4 address, and Chromium follows no redirect to loopback");
    return;
  }
  const dir = tempDir(`teletip-browser-drain-${transport}-`);
  const [drainingPort, alternatePort] = [await freeUdpPort(), await freeUdpPort()];
  const drainControl = await Control.start({
    name: `browser-drain-${transport}`,
    dir,
    extraToml: `${RELAXED_LIMITS}\n[[ice.relays]]\nhost = "${hostIp}"\n${transport}-port = ${drainingPort}\nstun = false\n`,
  });
  drainControl.createAdmin();
  const secretFile = join(drainControl.dataDir, "relay.secret");
  // The two relays share a nonce key, so the nonce the 300 hands over holds at the alternate.
  const nonceKeyFile = join(dir, "nonce.key");
  writeFileSync(nonceKeyFile, `${randomBytes(32).toString("hex")}\n`);
  // Its relayed addresses are on hostIp too: the browsers' relay candidates are each other's
  // peers there, which the deny-by-default policy refuses unless allowed (a test-only setting).
  const alternate = await Relay.start({
    secretFile,
    port: alternatePort,
    dir,
    name: "alternate",
    ip: hostIp,
    extraArgs: ["--allowed-peer-ip", `${hostIp}/32`, "--nonce-key-file", nonceKeyFile],
  });
  const draining = await Relay.start({
    secretFile,
    port: drainingPort,
    dir,
    name: "draining",
    ip: hostIp,
    extraArgs: ["--alternate-server", `${hostIp}:${alternatePort}`, "--nonce-key-file", nonceKeyFile],
  });
  draining.signal("SIGUSR1");
  await until("the relay draining", async () => {
    const n = await draining.counter("teletip_draining");
    return { ok: n === 1, value: n };
  });
  const clinic = await Clinic.open({ control: drainControl });
  const { practitioner, patient, appointment } = await clinic.pair({ practitioner: "Dr. Elif Şahin", patient: "John Miller" });
  try {
    await withTwoPages(`drain-${transport}`, async (doc, pat) => {
      await logIn(pat, patient, drainControl);
      await logIn(doc, practitioner, drainControl);
      await joinAndAdmit(doc, pat, appointment.id);
      // What each relay saw, for the message when the call does not come up.
      const relays = async () => {
        const pick = async (r) =>
          (await (await fetch(r.metricsUrl())).text())
            .split("\n")
            .filter((l) => /^teletip_(allocations_(created|failed)_total|auth_(failures|challenges)_total)/.test(l) && !/ 0$/.test(l));
        return { draining: await pick(draining), alternate: await pick(alternate) };
      };
      for (const page of [doc, pat]) {
        const s = await until(`${page.label} decoding video through the alternate relay`, async () => {
          const st = await mediaStats(page);
          const ok = !!st && st.connectionState === "connected" && st.framesDecoded > 0 && st.local === "relay";
          return { ok, value: st, st, relays: ok ? null : await relays() };
        });
        const urls = (await page.evaluate(() => window.teletip.pc.getConfiguration().iceServers)).flatMap((x) => [].concat(x.urls));
        assert.ok(urls.every((u) => u.includes(`:${drainingPort}`) && u.endsWith(`?transport=${transport}`)), `${page.label}: only the draining relay offered, over ${transport}: ${urls}`);
        assert.equal(s.remote, "relay", `${page.label}: remote candidate type`);
        assert.equal(s.relayProtocol, transport, `${page.label}: reaches the alternate over ${s.relayProtocol}`);
      }
      // The alternate carried the media; the draining relay turned the Allocates away and
      // relayed nothing.
      const bytes = await until("the alternate relay counting relayed bytes", async () => {
        const n = await alternate.counter("teletip_relayed_bytes_total");
        return { ok: n > 10000, value: n };
      });
      assert.ok(bytes > 10000, `alternate relayed ${bytes} bytes`);
      const turnedAway = await until("the draining relay counting turned-away Allocates", async () => {
        const text = await (await fetch(draining.metricsUrl())).text();
        const m = /^teletip_allocations_failed_total\{reason="draining"\} (\S+)$/m.exec(text);
        const n = m ? Number(m[1]) : 0;
        return { ok: n >= 2, value: n };
      });
      assert.ok(turnedAway >= 2, `draining relay turned away ${turnedAway} Allocates`);
      assert.equal(await draining.counter("teletip_allocations_created_total"), 0, "the draining relay allocated nothing");
      assert.equal(await draining.counter("teletip_relayed_bytes_total"), 0, "the draining relay relayed nothing");
    });
  } finally {
    await draining.stop();
    await alternate.stop();
    await drainControl.stop();
  }
}

test("a draining relay sends the browsers to its alternate, where the call runs (UDP)", (t) => callThroughDrainingRelay(t, "udp"));

// Over TCP the browser opens a new connection to the alternate, from a new port: the nonce the
// 300 handed over is bound to the address, not the port, over TCP and TLS.
test("a draining relay sends the browsers to its alternate, where the call runs (TCP)", (t) => callThroughDrainingRelay(t, "tcp"));

test("a relayed video consultation between two browsers", async () => {
  await c.relogin();
  const { practitioner, patient, appointment } = await c.pair({ practitioner: "Dr. Elif Kaya", patient: "Ayşe Yılmaz" });

  // The page is served with the strict CSP.
  const res = await fetch(control.url("/"));
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-security-policy") || "", /script-src 'self'/);

  const bytesBefore = await relay.counter("teletip_relayed_bytes_total");
  const doc = await openPage("practitioner", { width: 1280, height: 860 });
  const pat = await openPage("patient", { width: 360, height: 780 }); // a phone
  try {
    const loggedInAt = Date.now();
    await logIn(pat, patient);
    await logIn(doc, practitioner);
    const firstTokens = await pat.evaluate(() => window.teletip.state.tokensReceived);
    assert.equal(await pat.getByTestId("user-role").textContent(), "patient");

    // The patient waits in the lobby.
    await openAppointmentAndJoin(pat, appointment.id);
    await pat.getByTestId("lobby").waitFor();
    assert.match(await pat.getByTestId("lobby-message").textContent(), /wait/i);
    assert.equal(await pat.evaluate(() => window.teletip.state.roomState), "waiting");

    // The practitioner sees who waits and admits.
    await openAppointmentAndJoin(doc, appointment.id);
    const waiting = doc.getByTestId("waiting-list").getByTestId("waiting-patient");
    await waiting.waitFor();
    assert.match(await waiting.textContent(), /Ayşe Yılmaz is waiting/);
    await waiting.getByTestId("admit").click();

    // Both connect, relay only, and decode video.
    for (const page of [doc, pat]) {
      const s = await until(`${page.label} decoding video over the relay`, async () => {
        const st = await mediaStats(page);
        return { ok: !!st && st.connectionState === "connected" && st.framesDecoded > 0 && st.local === "relay" && st.remote === "relay", value: st, st };
      });
      assert.equal(s.policy, "relay", `${page.label}: iceTransportPolicy`);
      assert.ok(s.framesDecoded > 0, `${page.label}: framesDecoded ${s.framesDecoded}`);
      assert.equal(s.local, "relay", `${page.label}: local candidate type`);
      assert.equal(s.remote, "relay", `${page.label}: remote candidate type`);
      // The transport's selected pair (its state may read "in-progress" during a consent check).
      assert.ok(s.nominated === true || s.pairState === "succeeded", `${page.label}: selected pair ${JSON.stringify(s)}`);
      // The page shows it too.
      await until(`${page.label} showing the route`, async () => {
        const text = await page.getByTestId("candidate-type").textContent();
        return { ok: /^relay ↔ relay/.test(text), value: text };
      });
      assert.equal(await page.getByTestId("connection-state").textContent(), "connected");
    }
    assert.equal(await pat.evaluate(() => window.teletip.state.roomState), "admitted");
    await c.relogin();
    assert.equal(await c.appointmentStatus(appointment.id), "checked-in");
    const socketIds = await Promise.all([doc, pat].map((p) => p.evaluate(() => window.teletip.state.socketId)));

    // The relay carried the media.
    const bytes = await until("the relay counting relayed bytes", async () => {
      const now = await relay.counter("teletip_relayed_bytes_total");
      return { ok: now > bytesBefore + 10000, value: now };
    });
    assert.ok(bytes > bytesBefore, `teletip_relayed_bytes_total ${bytesBefore} → ${bytes}`);

    // Muting reaches the other side (media:state).
    await doc.getByTestId("toggle-audio").click();
    assert.equal(await doc.getByTestId("toggle-audio").getAttribute("aria-pressed"), "true");
    await until("the patient seeing the practitioner muted", async () => {
      const text = await pat.getByTestId("remote-media").textContent();
      return { ok: /microphone off/.test(text), value: text };
    });
    await doc.getByTestId("toggle-audio").click();

    // window.teletip is read-only.
    const readOnly = await pat.evaluate(() => {
      "use strict";
      try {
        window.teletip = null;
      } catch {
        /* strict mode throws */
      }
      return window.teletip !== null && !!window.teletip.state;
    });
    assert.ok(readOnly, "window.teletip cannot be replaced");

    await doc.screenshot({ path: join(ARTIFACTS, "practitioner.png"), fullPage: true });
    await pat.screenshot({ path: join(ARTIFACTS, "patient.png"), fullPage: true });

    // Past the first tokens' lifetime (30 s + 5 s leeway): both pages refreshed their tokens
    // and renewed the signaling connection in place; the call never noticed.
    const wait = loggedInAt + 38000 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    for (const [i, page] of [doc, pat].entries()) {
      const st = await page.evaluate(() => window.teletip.state);
      assert.ok(st.tokensReceived > (page === pat ? firstTokens : 1), `${page.label}: the access token was refreshed (${st.tokensReceived} tokens)`);
      assert.equal(st.socketConnected, true, `${page.label}: signaling still connected`);
      assert.equal(st.socketId, socketIds[i], `${page.label}: the same signaling connection (renewed, not reconnected)`);
      assert.equal(st.connectionState, "connected", `${page.label}: media still connected`);
      assert.equal(st.ended, null);
    }
    assert.ok((await mediaStats(pat)).framesDecoded > 0);
    await c.relogin();

    // The patient reloads the page (the tokens live in memory only: log in again) and rejoins:
    // same peer id, admitted (not back in the lobby), and the call comes back.
    const peerBefore = await pat.evaluate(() => window.teletip.state.peerId);
    const framesBefore = (await mediaStats(doc)).framesDecoded;
    await pat.reload();
    await logIn(pat, patient);
    await openAppointmentAndJoin(pat, appointment.id);
    const resumed = await until("the patient resuming", async () => {
      const st = await pat.evaluate(() => window.teletip.state);
      return { ok: st.joined, value: st };
    });
    assert.equal(resumed.peerId, peerBefore, "the same peer id after the reload");
    assert.equal(resumed.roomState, "admitted", "not sent back to the lobby");
    assert.equal(await pat.getByTestId("lobby").isVisible(), false);
    for (const page of [doc, pat]) {
      await until(`${page.label} decoding video again after the reload`, async () => {
        const st = await mediaStats(page);
        const more = page === doc ? st && st.framesDecoded > 0 && st.framesDecoded !== framesBefore : st && st.framesDecoded > 0;
        return { ok: !!st && st.connectionState === "connected" && more && st.local === "relay" && st.remote === "relay", value: st };
      }, 60000);
    }

    // The practitioner ends the consultation (confirming it); the patient is told.
    await doc.getByTestId("end").click();
    await doc.getByTestId("confirm-end-yes").click();
    await pat.getByTestId("ended-view").waitFor();
    await until("the appointment fulfilled", async () => {
      const s = await c.appointmentStatus(appointment.id);
      return { ok: s === "fulfilled", value: s };
    });
    await doc.getByTestId("ended-view").waitFor();

    for (const page of [doc, pat]) {
      const csp = page.problems.filter((p) => /Content[- ]Security[- ]Policy|Refused to/i.test(p));
      assert.deepEqual(csp, [], `${page.label}: CSP violations`);
      const errors = page.problems.filter((p) => p.startsWith("pageerror"));
      assert.deepEqual(errors, [], `${page.label}: uncaught errors`);
    }
  } catch (e) {
    // Keep what the pages showed when it failed.
    await doc.screenshot({ path: join(ARTIFACTS, "practitioner-failed.png"), fullPage: true }).catch(() => {});
    await pat.screenshot({ path: join(ARTIFACTS, "patient-failed.png"), fullPage: true }).catch(() => {});
    e.message += `\npractitioner console: ${JSON.stringify(doc.problems)}\npatient console: ${JSON.stringify(pat.problems)}`;
    throw e;
  }
});

/** A CA, the control plane's link certificate and one for relay `node`, made by openssl in `dir`. */
function linkPki(dir, node) {
  const openssl = (args) => {
    const r = spawnSync("openssl", args.split(" "), { cwd: dir, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl ${args}: ${r.stderr}`);
  };
  const key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  openssl(`req -x509 ${key} -keyout ca.key -out ca.pem -days 2 -subj /CN=ca`);
  for (const [name, usage] of [["control.test", "serverAuth"], [node, "clientAuth"]]) {
    openssl(`req ${key} -keyout ${name}.key -out ${name}.csr -subj /CN=${name}`);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=DNS:${name}\nextendedKeyUsage=${usage}\n`);
    openssl(`x509 -req -in ${name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out ${name}.pem -days 2 -extfile ${name}.ext`);
  }
}

/** One series of a relay's metrics, by its exact labels (0 while it does not exist). */
async function series(relay, nameWithLabels) {
  const text = await (await fetch(relay.metricsUrl())).text();
  const line = text.split("\n").find((l) => l.startsWith(`${nameWithLabels} `));
  return line ? Number(line.slice(nameWithLabels.length + 1)) : 0;
}

// Issue 20 in a browser: the relay is registered over the control link, so the control plane
// can revoke. Mid-call the practitioner fulfils the appointment through the API (the pages are
// not told: only the revocation can stop the media): the relay ends every allocation of the
// call, counted how="revoked", relays nothing more, and both pages see their connection go.
test("a consultation whose appointment is fulfilled mid-call loses its relay at once", async () => {
  const dir = tempDir("teletip-browser-revoke-");
  const node = "relay-revoke.test";
  linkPki(dir, node);
  const [relayPort, linkPort] = [await freeUdpPort(), await freeUdpPort()];
  const linkControl = await Control.start({
    name: "browser-revoke",
    dir,
    extraToml: `${RELAXED_LIMITS}
[[ice.relays]]
host = "static.invalid"
udp-port = 3478
[relay-link]
listen = "127.0.0.1:${linkPort}"
cert = "${join(dir, "control.test.pem")}"
key = "${join(dir, "control.test.key")}"
client-ca = "${join(dir, "ca.pem")}"
report-seconds = 1
stale-after-seconds = 3
`,
  });
  linkControl.createAdmin();
  const linkRelay = await Relay.start({
    secretFile: join(linkControl.dataDir, "relay.secret"),
    port: relayPort,
    dir,
    name: "linked",
    extraArgs: [
      "--control-server", `127.0.0.1:${linkPort}`,
      "--control-server-name", "control.test",
      "--control-ca", join(dir, "ca.pem"),
      "--control-cert", join(dir, `${node}.pem`),
      "--control-key", join(dir, `${node}.key`),
    ],
  });
  const clinic = await Clinic.open({ control: linkControl });
  try {
    await until("the relay registered and healthy", async () => {
      const nodes = await clinic.api.must("GET", "/v1/relays", clinic.admin);
      return { ok: nodes.some((n) => n.node === node && n.healthy), value: nodes };
    });
    const { practitioner, patient, appointment } = await clinic.pair({ practitioner: "Dr. Mert Öz", patient: "Selin Ak" });
    await withTwoPages("revoked", async (doc, pat) => {
      await logIn(pat, patient, linkControl);
      await logIn(doc, practitioner, linkControl);
      await joinAndAdmit(doc, pat, appointment.id);
      for (const page of [doc, pat]) {
        await until(`${page.label} decoding video over the registered relay`, async () => {
          const st = await mediaStats(page);
          return { ok: !!st && st.connectionState === "connected" && st.framesDecoded > 0 && st.local === "relay" && st.remote === "relay", value: st };
        });
      }
      const flowing = await linkRelay.counter("teletip_relayed_bytes_total");
      await until("the relay carrying the media", async () => {
        const n = await linkRelay.counter("teletip_relayed_bytes_total");
        return { ok: n > flowing + 10000, value: n };
      });
      const allocations = await series(linkRelay, "teletip_allocations_active");
      assert.ok(allocations >= 2, `the call holds allocations on the relay: ${allocations}`);

      // The practitioner fulfils the appointment through the API, mid-call.
      const called = Date.now();
      const done = await clinic.api.req("POST", `/v1/appointments/${appointment.id}/complete`, practitioner.token);
      assert.equal(done.status, 200, JSON.stringify(done.body));
      // Every allocation of the call ends as revoked (the relay publishes its metrics every second).
      await until("every allocation of the call ended how=revoked", async () => {
        const revoked = await series(linkRelay, 'teletip_allocations_ended_total{how="revoked"}');
        const active = await series(linkRelay, "teletip_allocations_active");
        return { ok: revoked >= allocations && active === 0, value: { revoked, active } };
      }, 15000);
      const bytesAtRevocation = await linkRelay.counter("teletip_relayed_bytes_total");
      console.log(`browser call: allocations seen revoked on the relay's metrics ${Date.now() - called} ms after the API call`);
      // Both pages lose the connection: their media went through the relay only.
      for (const page of [doc, pat]) {
        await until(`${page.label} losing its connection`, async () => {
          const state = await page.evaluate(() => window.teletip.pc?.iceConnectionState ?? "closed");
          return { ok: ["disconnected", "failed", "closed"].includes(state), value: state };
        }, 60000);
      }
      // From the revocation on, the relay carried nothing more of the call, which the pages
      // kept sending until they noticed.
      assert.equal(await linkRelay.counter("teletip_relayed_bytes_total"), bytesAtRevocation, "nothing relayed after the revocation");
      assert.equal(await clinic.appointmentStatus(appointment.id), "fulfilled");
    });
  } finally {
    await linkRelay.stop();
    await linkControl.stop();
  }
});
