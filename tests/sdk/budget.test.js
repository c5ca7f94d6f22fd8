// The background: when media could not flow, the old reference client made 94 new
// RTCPeerConnections in 60 s and drove the relay's allocations from 58 to 438. Here the relay
// grants allocations but refuses permissions towards the other peer (loopback peers refused, as
// shipped), so no media path can ever form. Both sides run the SDK in Node (@roamhq/wrtc),
// relay only. Checked against the relay's own teletip_allocations_created_total: each side
// makes at most its budget of connections, the relay's allocations stay within what that
// budget allows and then stop growing, and both sides report the cause instead of looping.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import wrtc from "@roamhq/wrtc";
import { Clinic } from "../signaling/lib/clinic.js";
import { Control, RELAXED_LIMITS, PASSWORD, freeUdpPort, sleep, tempDir } from "../signaling/lib/env.js";
import { Call, Signaling, TeletipClient } from "../../control/sdk/dist/index.js";
import { startRelayDenyingLoopback } from "./lib/relay.js";

// See call.test.js: @roamhq/wrtc aborts in its finalizers at a normal exit.
process.on("beforeExit", () => process.exit(process.exitCode ?? 0));

const BUDGET = 2;
const LIMITS = { maxNewConnectionsPerMinute: BUDGET, initialBackoffMs: 500, maxBackoffMs: 1000 };

let control;
let relay;
let clinic;
before(async () => {
  const dir = tempDir("teletip-sdk-budget-");
  const relayPort = await freeUdpPort();
  control = await Control.start({ name: "sdk-budget", dir, extraToml: `${RELAXED_LIMITS}\n[[ice.relays]]\nhost = "127.0.0.1"\nudp-port = ${relayPort}\n` });
  control.createAdmin();
  relay = await startRelayDenyingLoopback({ secretFile: join(control.dataDir, "relay.secret"), port: relayPort, dir });
  clinic = await Clinic.open({ control });
});
after(async () => {
  await relay?.stop();
  await control?.stop();
});

/** Relayed candidates the connections gathered: each is one allocation the relay granted. */
let relayedCandidates = 0;
function countingPeerConnection(config) {
  const pc = new wrtc.RTCPeerConnection(config);
  pc.addEventListener("icecandidate", (ev) => {
    if (ev.candidate && / typ relay( |$)/.test(ev.candidate.candidate)) relayedCandidates++;
  });
  return pc;
}

async function side(user, appointmentId, via = control) {
  const client = new TeletipClient({ baseUrl: via.base });
  await client.login(user.email, PASSWORD);
  const signaling = new Signaling({ client, transports: ["websocket"] });
  const room = await signaling.join(appointmentId);
  const call = new Call({ signaling, peerConnection: countingPeerConnection, dataChannel: { label: "chat" }, limits: LIMITS, connectTimeoutMs: 4000 });
  const failed = new Promise((resolve) => call.on("failed", resolve));
  return { client, signaling, room, call, failed };
}

function within(ms, promise, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

test("no media path: each side stops after its budget of connections and says why; the relay's allocations stay bounded", async () => {
  const { practitioner, patient, appointment } = await clinic.pair();
  const allocationsBefore = await relay.counter("teletip_allocations_created_total");
  const pat = await side(patient, appointment.id);
  const doc = await side(practitioner, appointment.id);
  try {
    pat.call.start();
    doc.call.start();
    await doc.signaling.admit(doc.room.waiting[0].peerId);

    const docError = await within(60000, doc.failed, "failure report from the practitioner's side");
    const patError = await within(30000, pat.failed, "failure report from the patient's side");
    for (const [who, e] of [["practitioner", docError], ["patient", patError]]) {
      assert.equal(e.cause, "media-path-failed", `${who}: ${e.message}`);
      assert.match(e.nextStep, /another network|tell the clinic/, who);
    }
    assert.equal(doc.call.state, "failed");
    assert.equal(pat.call.state, "failed");
    assert.ok(doc.call.counters.peerConnections <= BUDGET, `practitioner made ${doc.call.counters.peerConnections}`);
    assert.ok(pat.call.counters.peerConnections <= BUDGET, `patient made ${pat.call.counters.peerConnections}`);
    assert.equal(doc.call.counters.iceRestarts, doc.call.counters.peerConnections, "an ICE restart before each new connection");

    const connections = doc.call.counters.peerConnections + pat.call.counters.peerConnections;
    // The relay publishes its counters every few seconds: read until it settles.
    let last = -1;
    let now = await relay.counter("teletip_allocations_created_total");
    while (now !== last) {
      await sleep(3000);
      last = now;
      now = await relay.counter("teletip_allocations_created_total");
    }
    const made = now - allocationsBefore;
    console.log(`allocations: ${made} for ${connections} connections (${relayedCandidates} relayed candidates gathered)`);
    assert.ok(made > 0, "the relay granted allocations: this is the case where only the media path fails");
    // Every allocation the relay counted belongs to one of the budgeted connections, and stopped
    // with them: the counter no longer moves once both sides reported.
    assert.ok(made <= relayedCandidates, `${made} allocations, but the connections gathered only ${relayedCandidates} relayed candidates`);
    await sleep(4000);
    assert.equal(await relay.counter("teletip_allocations_created_total"), now, "no allocation after the failure reports");
  } finally {
    for (const s of [doc, pat]) {
      s.call.hangup();
      s.signaling.close();
      await s.client.logout();
    }
  }
});

test("a relay that does not answer at all: each side stops after its budget and reports relay-unreachable", async () => {
  // The ICE servers name a UDP port where nothing listens (a relay down, or a network that drops UDP to it).
  const dir = tempDir("teletip-sdk-unreachable-");
  const deadPort = await freeUdpPort();
  const other = await Control.start({ name: "sdk-unreachable", dir, extraToml: `${RELAXED_LIMITS}\n[[ice.relays]]\nhost = "127.0.0.1"\nudp-port = ${deadPort}\n` });
  try {
    other.createAdmin();
    const c = await Clinic.open({ control: other });
    const { practitioner, patient, appointment } = await c.pair();
    const pat = await side(patient, appointment.id, other);
    const doc = await side(practitioner, appointment.id, other);
    try {
      pat.call.start();
      doc.call.start();
      await doc.signaling.admit(doc.room.waiting[0].peerId);
      const docError = await within(60000, doc.failed, "failure report from the practitioner's side");
      const patError = await within(30000, pat.failed, "failure report from the patient's side");
      for (const [who, e] of [["practitioner", docError], ["patient", patError]]) {
        assert.equal(e.cause, "relay-unreachable", `${who}: ${e.message}`);
        assert.match(e.message, /cannot be reached/, who);
        assert.match(e.nextStep, /another network/, who);
      }
      assert.ok(doc.call.counters.peerConnections <= BUDGET, `practitioner made ${doc.call.counters.peerConnections}`);
      assert.ok(pat.call.counters.peerConnections <= BUDGET, `patient made ${pat.call.counters.peerConnections}`);
    } finally {
      for (const s of [doc, pat]) {
        s.call.hangup();
        s.signaling.close();
        await s.client.logout();
      }
    }
  } finally {
    await other.stop();
  }
});
