import { test } from "node:test";
import assert from "node:assert/strict";
import { TeletipClient, Signaling, SignalingError, SessionEndedError } from "../dist/index.js";
import { FakeClock, flush, scriptedFetch, tokenAnswer } from "./fakes.js";

/** socket.io-client's Socket as far as Signaling uses it; the test plays the server. */
class FakeSocket {
  constructor(url, options) {
    this.url = url;
    this.options = options;
    this.handlers = {};
    this.connected = false;
    this.connects = 0;
    this.closed = false;
    this.emitted = [];
    this.acks = {};
  }
  on(event, fn) {
    (this.handlers[event] ||= []).push(fn);
  }
  off(event, fn) {
    this.handlers[event] = (this.handlers[event] || []).filter((f) => f !== fn);
  }
  fire(event, ...args) {
    for (const fn of [...(this.handlers[event] || [])]) fn(...args);
  }
  connect() {
    this.connects++;
    this.options.auth((a) => (this.lastAuth = a));
  }
  accept() {
    this.connected = true;
    this.fire("connect");
  }
  drop(reason) {
    this.connected = false;
    this.fire("disconnect", reason);
  }
  close() {
    this.closed = true;
    this.connected = false;
  }
  timeout() {
    return {
      emitWithAck: async (event, payload) => {
        this.emitted.push({ event, payload });
        return this.acks[event] ?? { ok: true, data: {} };
      },
      emit: (event, payload) => this.emitted.push({ event, payload }),
    };
  }
}

async function setup(answers) {
  const clock = new FakeClock();
  const { fetch, calls } = scriptedFetch(answers);
  const client = new TeletipClient({ baseUrl: "http://control.test", fetch, clock });
  await client.login("a@b.c", "pw");
  let socket;
  const signaling = new Signaling({ client, io: (url, options) => (socket = new FakeSocket(url, options)) });
  const closed = [];
  signaling.on("closed", (e) => closed.push(e));
  return { client, signaling, socket, calls, closed, clock };
}

const refused = { status: 401, body: { type: "/problems/unauthorized", title: "Authentication required", status: 401, detail: "refresh token refused; log in again" } };

test("a refused token is refreshed once and the connection retried; refused again and again, signaling stops instead of looping", async () => {
  const { signaling, socket, calls, closed } = await setup([tokenAnswer(1), tokenAnswer(2), tokenAnswer(3), tokenAnswer(4)]);
  assert.equal(socket.url, "http://control.test/rtc");
  const connecting = signaling.connect().catch((e) => e);
  await flush();
  assert.deepEqual(socket.lastAuth, { token: "access-1" });
  for (let i = 0; i < 5; i++) {
    socket.fire("connect_error", new Error("token refused (expired)"));
    await flush();
  }
  assert.equal(calls.length, 3, "two refreshes, then it gave up");
  assert.equal(socket.connects, 3);
  assert.equal(closed.length, 1);
  assert.ok(closed[0] instanceof SignalingError);
  assert.equal(closed[0].code, "token-refused");
  assert.match(closed[0].message, /log in again/);
  assert.ok(socket.closed);
  assert.equal(await connecting, closed[0], "connect() rejects with the same error");
});

test("a session the server ended closes signaling at once with SessionEndedError", async () => {
  for (const message of ["session ended", "account disabled", "token required"]) {
    const { signaling, socket, closed, calls } = await setup([tokenAnswer(1)]);
    void signaling.connect().catch(() => undefined);
    await flush();
    socket.fire("connect_error", new Error(message));
    await flush();
    assert.equal(closed.length, 1, message);
    assert.ok(closed[0] instanceof SessionEndedError, message);
    assert.equal(calls.length, 1, `${message}: no refresh`);
  }
});

test("after a reconnect the room is joined again with resume, and a token refresh is sent as auth:renew", async () => {
  const { client, signaling, socket } = await setup([tokenAnswer(1), tokenAnswer(2)]);
  const room = { peerId: "p1", role: "patient", state: "admitted", peers: [], waiting: [], ice: {}, closesAt: "2026-12-07T11:00:00Z" };
  socket.acks["room:join"] = { ok: true, data: room };
  const joins = [];
  signaling.on("joined", (r, resumed) => joins.push(resumed));
  const joining = signaling.join("appt-1");
  await flush();
  socket.accept();
  assert.deepEqual(await joining, room);
  socket.drop("transport close");
  socket.accept();
  await flush();
  assert.deepEqual(joins, [false, true]);
  assert.deepEqual(
    socket.emitted.filter((e) => e.event === "room:join").map((e) => e.payload),
    [
      { appointmentId: "appt-1", resume: true },
      { appointmentId: "appt-1", resume: true },
    ],
  );
  await client.auth.refresh();
  assert.deepEqual(socket.emitted.at(-1), { event: "auth:renew", payload: { token: "access-2" } });
  signaling.close();
});

test("an expired token (auth:expired, then the server's disconnect) reconnects with a fresh token; a replaced connection does not fight back", async () => {
  const { signaling, socket, calls, closed } = await setup([tokenAnswer(1), tokenAnswer(2)]);
  const connecting = signaling.connect();
  await flush();
  socket.accept();
  await connecting;
  socket.fire("auth:expired", {});
  socket.drop("io server disconnect");
  await flush();
  assert.equal(calls.length, 2, "refreshed");
  assert.equal(socket.connects, 2, "and reconnected");
  assert.deepEqual(socket.lastAuth, { token: "access-2" });
  socket.accept();
  socket.drop("io server disconnect");
  await flush();
  assert.equal(socket.connects, 2, "no reconnect when the server closed us for another reason");
  assert.equal(closed.length, 1);
  assert.equal(closed[0].code, "session-ended");
});

test("an acknowledgement's refusal becomes a SignalingError with the server's code and message", async () => {
  const { signaling, socket } = await setup([tokenAnswer(1)]);
  socket.acks["room:join"] = { ok: false, error: { code: "closed", message: "the join window opens at 10:45 UTC" } };
  const joining = signaling.join("appt-1");
  await flush();
  socket.accept();
  await assert.rejects(joining, (e) => e instanceof SignalingError && e.code === "closed" && e.message === "the join window opens at 10:45 UTC");
  signaling.close();
});

test("a patient announced while the practitioner's join is unanswered stays on the waiting list; admitted or gone, off it", async () => {
  const { signaling, socket } = await setup([tokenAnswer(1)]);
  let answer;
  socket.acks["room:join"] = new Promise((resolve) => (answer = resolve));
  const lists = [];
  signaling.on("waiting", (w) => lists.push(w.map((p) => p.peerId)));
  const joining = signaling.join("appt-1");
  await flush();
  socket.accept();
  await flush();
  // The server announces the arrival first, then answers with its older list (nobody waiting).
  socket.fire("lobby:patient-arrived", { peerId: "pat-1", role: "patient" });
  answer({ ok: true, data: { peerId: "doc-1", role: "practitioner", state: "admitted", peers: [], waiting: [], ice: { iceServers: [], ttl: 60, expiresAt: "2099-01-01T00:00:00Z", refreshAfter: "2099-01-01T00:00:00Z" }, closesAt: "2099-01-01T00:00:00Z" } });
  await joining;
  assert.deepEqual(signaling.waiting.map((p) => p.peerId), ["pat-1"], "the arrival survives the older answer");
  socket.fire("lobby:patient-arrived", { peerId: "pat-2", role: "patient" });
  socket.acks["room:join"] = undefined;
  await signaling.admit("pat-1");
  assert.deepEqual(signaling.waiting.map((p) => p.peerId), ["pat-2"], "admitted: off the list");
  socket.fire("room:peer-left", { peerId: "pat-2", reason: "left" });
  assert.deepEqual(signaling.waiting, [], "gone: off the list");
  assert.deepEqual(lists.at(-1), []);
  signaling.close();
});

test("practitioner:status reaches the app typed, and the latest is kept", async () => {
  const { signaling, socket } = await setup([tokenAnswer(1)]);
  const heard = [];
  signaling.on("practitioner:status", (m) => heard.push(m.status));
  assert.equal(signaling.practitionerStatus, null, "nothing before the server says");
  socket.accept();
  for (const status of ["offline", "online", "here"]) socket.fire("practitioner:status", { status });
  assert.deepEqual(heard, ["offline", "online", "here"]);
  assert.equal(signaling.practitionerStatus, "here");
  signaling.close();
});
