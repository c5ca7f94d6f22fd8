import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { Call, CallError, openLocalMedia } from "../dist/index.js";
import { FakeClock, FailingPeerConnection } from "./fakes.js";

/** The part of Signaling a Call uses, recording what it sends. */
class FakeSignaling {
  constructor(room, clock) {
    this.joined = room;
    this.appointment = "appt-1";
    this.listeners = {};
    this.sent = [];
    this.iceRefreshes = 0;
    this.client = {
      consultationSession: async () => {
        this.iceRefreshes++;
        return { ice: ice(clock.now(), `user-${this.iceRefreshes}`) };
      },
    };
  }
  on(event, fn) {
    (this.listeners[event] ||= []).push(fn);
    return () => (this.listeners[event] = this.listeners[event].filter((f) => f !== fn));
  }
  deliver(event, payload) {
    for (const fn of this.listeners[event] || []) fn(payload);
  }
  async offer(to, sdp) {
    this.sent.push({ event: "signal:offer", to, sdp });
  }
  async answer(to, sdp) {
    this.sent.push({ event: "signal:answer", to, sdp });
  }
  async candidate(to, candidate) {
    this.sent.push({ event: "signal:candidate", to, candidate });
  }
}

function ice(now, username = "user-0") {
  return {
    iceServers: [{ urls: ["turn:127.0.0.1:3478?transport=udp"], username, credential: "c" }],
    ttl: 600,
    expiresAt: new Date(now + 600_000).toISOString(),
    refreshAfter: new Date(now + 480_000).toISOString(),
  };
}

function room(role, clock, peers) {
  return { peerId: `${role}-me`, role, state: "admitted", peers, waiting: [], ice: ice(clock.now()), closesAt: new Date(clock.now() + 3_600_000).toISOString() };
}

beforeEach(() => {
  FailingPeerConnection.made = [];
});

test("a media path that never comes up: ICE restart on each connection, at most the budget of connections, then one failure with its cause", async () => {
  const clock = new FakeClock();
  const sig = new FakeSignaling(room("practitioner", clock, [{ peerId: "pat", role: "patient" }]), clock);
  const call = new Call({
    signaling: sig,
    peerConnection: (c) => new FailingPeerConnection(c),
    clock,
    connectTimeoutMs: 5000,
    limits: { maxNewConnectionsPerMinute: 4, initialBackoffMs: 1000, maxBackoffMs: 4000 },
  });
  const failures = [];
  call.on("failed", (e) => failures.push(e));
  call.start();
  // Ten minutes of a dead media path: without the budget this would be a connection every few seconds.
  for (let i = 0; i < 600; i++) await clock.advance(1000);
  const made = FailingPeerConnection.made;
  assert.equal(made.length, 4, "the budget of new RTCPeerConnections");
  assert.equal(call.counters.peerConnections, 4);
  assert.equal(call.counters.iceRestarts, 4, "each connection first tried an ICE restart");
  for (const pc of made) {
    assert.deepEqual(pc.offers, [{}, { iceRestart: true }]);
    assert.equal(pc.config.iceTransportPolicy, "relay");
    assert.equal(pc.connectionState, "closed");
  }
  assert.equal(failures.length, 1);
  assert.ok(failures[0] instanceof CallError);
  assert.equal(failures[0].cause, "media-path-failed");
  assert.match(failures[0].message, /4 connection attempts in the last minute; stopped/);
  assert.equal(call.state, "failed");
  assert.deepEqual(clock.pending(), [], "nothing left scheduled");
});

test("a connection that fails at once ('failed' state) is restarted, not replaced, first", async () => {
  const clock = new FakeClock();
  const sig = new FakeSignaling(room("practitioner", clock, [{ peerId: "pat", role: "patient" }]), clock);
  const call = new Call({ signaling: sig, peerConnection: (c) => new FailingPeerConnection(c), clock, limits: { maxNewConnectionsPerMinute: 2 } });
  call.start();
  await clock.advance(10);
  FailingPeerConnection.made[0].failNow();
  await clock.advance(10);
  assert.equal(FailingPeerConnection.made.length, 1);
  assert.deepEqual(FailingPeerConnection.made[0].offers, [{}, { iceRestart: true }]);
  const offers = sig.sent.filter((m) => m.event === "signal:offer");
  assert.equal(offers.length, 2);
  assert.equal(offers[1].to, "pat");
  call.hangup();
});

test("relay credentials are fetched again at refreshAfter and given to the live connection", async () => {
  const clock = new FakeClock();
  const sig = new FakeSignaling(room("practitioner", clock, [{ peerId: "pat", role: "patient" }]), clock);
  const call = new Call({ signaling: sig, peerConnection: (c) => new FailingPeerConnection(c), clock, connectTimeoutMs: 3_600_000 });
  call.start();
  await clock.advance(479_000);
  assert.equal(sig.iceRefreshes, 0);
  await clock.advance(1000);
  assert.equal(sig.iceRefreshes, 1);
  assert.equal(FailingPeerConnection.made[0].config.iceServers[0].username, "user-1");
  await clock.advance(480_000);
  assert.equal(sig.iceRefreshes, 2, "and again at the new credentials' refreshAfter");
  call.hangup();
});

test("the answering side counts new connections too: offers of ever new connections stop at the budget", async () => {
  const clock = new FakeClock();
  const sig = new FakeSignaling(room("patient", clock, [{ peerId: "doc", role: "practitioner" }]), clock);
  const call = new Call({ signaling: sig, peerConnection: (c) => new FailingPeerConnection(c), clock, limits: { maxNewConnectionsPerMinute: 3 } });
  const failures = [];
  call.on("failed", (e) => failures.push(e.cause));
  call.start();
  for (let i = 0; i < 10; i++) {
    sig.deliver("signal:offer", { from: "doc", sdp: `v=0\r\na=fingerprint:sha-256 AA:${i}\r\n` });
    await clock.advance(100);
  }
  assert.equal(FailingPeerConnection.made.length, 3);
  assert.equal(sig.sent.filter((m) => m.event === "signal:answer").length, 3);
  assert.deepEqual(failures, ["media-path-failed"]);
  assert.equal(call.state, "failed");
});

test("the peer leaving is reported as peer-left and the call waits; it calls again when they return", async () => {
  const clock = new FakeClock();
  const sig = new FakeSignaling(room("practitioner", clock, [{ peerId: "pat", role: "patient" }]), clock);
  const call = new Call({ signaling: sig, peerConnection: (c) => new FailingPeerConnection(c), clock });
  const failures = [];
  call.on("failed", (e) => failures.push(e));
  call.start();
  await clock.advance(10);
  sig.deliver("room:peer-left", { peerId: "pat", reason: "left" });
  assert.equal(failures[0].cause, "peer-left");
  assert.match(failures[0].nextStep, /rejoin/);
  assert.equal(call.state, "waiting");
  sig.deliver("room:peer-joined", { peerId: "pat", role: "patient" });
  await clock.advance(10);
  assert.equal(FailingPeerConnection.made.length, 2);
  assert.equal(call.state, "recovering");
  call.hangup();
  assert.equal(call.state, "closed");
});

test("a peer whose signaling dropped (reason disconnected) keeps the call: no teardown, no new connection", async () => {
  const clock = new FakeClock();
  const sig = new FakeSignaling(room("practitioner", clock, [{ peerId: "pat", role: "patient" }]), clock);
  const call = new Call({ signaling: sig, peerConnection: (c) => new FailingPeerConnection(c), clock, connectTimeoutMs: 3_600_000 });
  const failures = [];
  call.on("failed", (e) => failures.push(e));
  call.start();
  await clock.advance(10);
  sig.deliver("room:peer-left", { peerId: "pat", reason: "disconnected" });
  sig.deliver("room:peer-joined", { peerId: "pat", role: "patient" });
  await clock.advance(10);
  assert.deepEqual(failures, []);
  assert.equal(FailingPeerConnection.made.length, 1);
  assert.notEqual(FailingPeerConnection.made[0].connectionState, "closed");
  call.hangup();
});

test("a denied camera is reported as permission-denied with the way forward", async () => {
  const denied = Object.assign(new Error("Permission denied"), { name: "NotAllowedError" });
  await assert.rejects(
    openLocalMedia(async () => {
      throw denied;
    }),
    (e) => e instanceof CallError && e.cause === "permission-denied" && /settings/.test(e.nextStep),
  );
  const stream = { getTracks: () => [] };
  assert.equal(await openLocalMedia(async () => stream), stream);
});
