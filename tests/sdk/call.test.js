// The SDK's call flow outside a browser: a patient in Node (@roamhq/wrtc, a real WebRTC
// implementation from npm, as a React Native app has react-native-webrtc) and a practitioner in
// headless Chromium, both built on control/sdk, joined through the real teletip-control and
// relayed only through the real teletip-relay. Checked: the data channel carries messages both
// ways, Chromium's fake camera reaches Node as decoded video frames, both selected candidate
// pairs are relay↔relay and the relay counted the bytes; a dropped signaling connection resumes
// the same place in the room, and an ICE restart over it keeps the call on the same connection; and the HTTP half of the SDK against
// the same server (appointments, consents, a problem+json error with its request id).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import wrtc from "@roamhq/wrtc";
import { chromium } from "playwright-core";
import { Clinic } from "../signaling/lib/clinic.js";
import { Control, Relay, RELAXED_LIMITS, PASSWORD, freeUdpPort, tempDir } from "../signaling/lib/env.js";
import { ApiError, Call, Signaling, TeletipClient } from "../../control/sdk/dist/index.js";
import { servePage } from "./lib/page.js";

const CHROMIUM = process.env.TELETIP_CHROMIUM || "/usr/bin/chromium";

// @roamhq/wrtc 0.10 aborts in its N-API finalizers when Node tears the environment down at a
// normal exit ("Check failed: node->IsInUse()"), after every test has passed and reported. An
// explicit exit, once nothing is left to run, skips that teardown and keeps the exit status.
process.on("beforeExit", () => process.exit(process.exitCode ?? 0));

let control;
let relay;
let browser;
let page;
let site;
let clinic;
before(async () => {
  const dir = tempDir("teletip-sdk-");
  site = await servePage();
  const relayPort = await freeUdpPort();
  control = await Control.start({
    name: "sdk",
    dir,
    extraToml: `cors-allowed-origins = ["${site.origin}"]\n${RELAXED_LIMITS}\n[[ice.relays]]\nhost = "127.0.0.1"\nudp-port = ${relayPort}\n`,
  });
  control.createAdmin();
  relay = await Relay.start({ secretFile: join(control.dataDir, "relay.secret"), port: relayPort, dir });
  clinic = await Clinic.open({ control });
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
  const context = await browser.newContext({ permissions: ["camera", "microphone"] });
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${site.origin}/`);
  await page.waitForFunction(() => window.sdkReady === true);
});
after(async () => {
  await browser?.close();
  await relay?.stop();
  await control?.stop();
  await site?.close();
});

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

/** The selected candidate pair's local and remote candidate types from a getStats() report. */
function selectedPair(report) {
  const stats = [...report.values()];
  let pair = null;
  for (const s of stats) if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
  if (!pair) pair = stats.find((s) => s.type === "candidate-pair" && s.nominated && s.state === "succeeded") || null;
  if (!pair) return null;
  return { local: report.get(pair.localCandidateId)?.candidateType, remote: report.get(pair.remoteCandidateId)?.candidateType };
}

test("the HTTP half of the SDK against the real server: appointments, consents, a typed problem", async () => {
  const { patient, appointment } = await clinic.pair({ patient: "Ayşe SDK" });
  const client = new TeletipClient({ baseUrl: control.base });
  const user = await client.login(patient.email, PASSWORD);
  assert.equal(user.role, "patient");
  const mine = await client.listAppointments({ limit: 10 });
  assert.deepEqual(
    mine.map((a) => a.id),
    [appointment.id],
  );
  const consents = await client.consents();
  assert.deepEqual(consents.missingRequired, []);
  const session = await client.consultationSession(appointment.id);
  assert.equal(session.role, "patient");
  assert.ok(session.ice.iceServers.some((s) => s.urls.some((u) => u.startsWith("turn:"))));
  // A refused request is an ApiError carrying the problem document and its request id.
  const refused = await client.changeAppointment(appointment.id, "complete").catch((e) => e);
  assert.ok(refused instanceof ApiError, String(refused));
  assert.equal(refused.status, 403);
  assert.equal(refused.type, "/problems/forbidden");
  assert.match(refused.requestId, /\S/);
  await client.logout();
  await assert.rejects(client.me(), /log in again/);
});

test("a call from Node (@roamhq/wrtc) to Chromium through teletip-relay, relay only: data both ways, video to Node", async () => {
  const { practitioner, patient, appointment } = await clinic.pair({ practitioner: "Dr. Node Test", patient: "Deniz Mobile" });
  const relayedBefore = await relay.counter("teletip_relayed_bytes_total");

  // The patient, in Node: joins first and waits in the lobby.
  const client = new TeletipClient({ baseUrl: control.base });
  await client.login(patient.email, PASSWORD);
  const signaling = new Signaling({ client, transports: ["websocket"] });
  const room = await signaling.join(appointment.id);
  assert.equal(room.state, "waiting");
  const call = new Call({ signaling, peerConnection: (c) => new wrtc.RTCPeerConnection(c), dataChannel: { label: "chat" } });
  const node = { received: [], frames: 0, failures: [], states: [] };
  const sinks = [];
  call.on("message", (d) => node.received.push(String(d)));
  call.on("channel-open", () => call.send("hello from node"));
  call.on("failed", (e) => node.failures.push(e.cause));
  call.on("state", (s) => node.states.push(s));
  call.on("track", (track) => {
    if (track.kind !== "video") return;
    const sink = new wrtc.nonstandard.RTCVideoSink(track);
    sink.onframe = () => node.frames++;
    sinks.push(sink);
  });
  call.start();

  try {
    // The practitioner, in Chromium with its fake camera: joins, starts the call, admits.
    const joined = await page.evaluate(
      async ({ base, email, password, appointmentId }) => {
        const { TeletipClient, Signaling, Call, openLocalMedia } = window.sdk;
        const client = new TeletipClient({ baseUrl: base });
        await client.login(email, password);
        const signaling = new Signaling({ client, transports: ["websocket"] });
        const room = await signaling.join(appointmentId);
        const stream = await openLocalMedia((c) => navigator.mediaDevices.getUserMedia(c), { audio: false, video: true });
        const call = new Call({ signaling, localStream: stream, dataChannel: { label: "chat" } });
        const t = { client, signaling, call, received: [], failures: [] };
        window.t = t;
        call.on("message", (d) => t.received.push(String(d)));
        call.on("channel-open", () => call.send("hello from chromium"));
        call.on("failed", (e) => t.failures.push(e.cause));
        call.start();
        return { role: room.role, waiting: room.waiting };
      },
      { base: control.base, email: practitioner.email, password: PASSWORD, appointmentId: appointment.id },
    );
    assert.equal(joined.role, "practitioner");
    assert.equal(joined.waiting.length, 1);
    await page.evaluate((peerId) => window.t.signaling.admit(peerId), joined.waiting[0].peerId);

    await until("a message each way", async () => {
      const inPage = await page.evaluate(() => window.t.received);
      return { ok: inPage.includes("hello from node") && node.received.includes("hello from chromium"), inPage, node: node.received };
    });
    await until("video frames decoded in Node", async () => ({ ok: node.frames >= 10, frames: node.frames, states: node.states }));

    const nodePair = selectedPair(await call.peerConnection.getStats());
    assert.deepEqual(nodePair, { local: "relay", remote: "relay" }, "Node's selected pair");
    const pagePair = await page.evaluate(async () => {
      const report = await window.t.call.peerConnection.getStats();
      const stats = [...report.values()];
      const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
      const pair = transport && report.get(transport.selectedCandidatePairId);
      return pair && { local: report.get(pair.localCandidateId).candidateType, remote: report.get(pair.remoteCandidateId).candidateType };
    });
    assert.deepEqual(pagePair, { local: "relay", remote: "relay" }, "Chromium's selected pair");
    // The relay publishes its counters every few seconds.
    await until("the relay's count of relayed bytes", async () => {
      const now = await relay.counter("teletip_relayed_bytes_total");
      return { ok: now > relayedBefore, now, before: relayedBefore };
    });
    assert.equal(call.counters.peerConnections, 1, "one connection, no recovery needed");
    assert.equal(call.state, "connected");
    assert.deepEqual(node.failures, []);
    assert.deepEqual(await page.evaluate(() => window.t.failures), []);
    assert.equal(await page.evaluate(() => window.t.call.counters.peerConnections), 1);

    // The phone's signaling connection drops (a network blip): the SDK reconnects and resumes
    // its place in the room; the media path was not touched.
    const resumed = new Promise((resolve) => signaling.on("joined", (r, again) => again && resolve(r)));
    signaling.socket.io.engine.close();
    const back = await resumed;
    assert.equal(back.peerId, room.peerId, "the same place in the room");
    assert.equal(back.state, "admitted", "not sent back to the lobby");
    // Then the practitioner's network changes: an ICE restart over the resumed signaling,
    // on the same connections.
    await page.evaluate(() => window.t.call.networkChanged());
    await until("the ICE restart to complete", async () => {
      const page_ = await page.evaluate(() => ({ restarts: window.t.call.counters.iceRestarts, state: window.t.call.state }));
      return { ok: page_.restarts === 1 && page_.state === "connected" && call.state === "connected", page_, node: call.state };
    });
    assert.equal(call.counters.peerConnections, 1);
    assert.equal(await page.evaluate(() => window.t.call.counters.peerConnections), 1);
    const before = node.received.length;
    await page.evaluate(() => window.t.call.send("after the restart"));
    await until("a message after the restart", async () => ({ ok: node.received.length > before && node.received.at(-1) === "after the restart" }));
  } finally {
    for (const s of sinks) s.stop();
    call.hangup();
    signaling.close();
    // Logging out also ends the client's refresh timer, which would keep Node running.
    await client.logout();
    await page.evaluate(async () => {
      window.t?.call.hangup();
      window.t?.signaling.close();
      await window.t?.client.logout();
    });
  }
});
