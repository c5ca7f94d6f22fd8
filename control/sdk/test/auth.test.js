import { test } from "node:test";
import assert from "node:assert/strict";
import { TeletipClient, refreshDelayMs, ApiError, SessionEndedError, NetworkError } from "../dist/index.js";
import { FakeClock, scriptedFetch, tokenAnswer } from "./fakes.js";

const refused = { status: 401, body: { type: "/problems/unauthorized", title: "Authentication required", status: 401, detail: "refresh token refused; log in again", requestId: "r1" } };

test("an access token is refreshed at 75 % of its lifetime, at most a minute before it expires", () => {
  assert.equal(refreshDelayMs(600), 540_000);
  assert.equal(refreshDelayMs(120), 90_000);
  assert.equal(refreshDelayMs(30), 22_500);
  assert.equal(refreshDelayMs(1), 1000, "never sooner than a second");
});

test("the client refreshes before expiry on its own, with the newest refresh token, and stores it first", async () => {
  const clock = new FakeClock();
  const { fetch, calls } = scriptedFetch([tokenAnswer(1, 600), tokenAnswer(2, 600), tokenAnswer(3, 600)]);
  const saved = [];
  const storage = { load: () => null, save: (t) => saved.push(t.refreshToken), clear: () => saved.push("cleared") };
  const client = new TeletipClient({ baseUrl: "http://control.test/", fetch, clock, storage });
  const seen = [];
  client.auth.on("tokens", (t) => seen.push(t));
  await client.login("a@b.c", "pw");
  assert.equal(calls[0].url, "http://control.test/v1/auth/login");
  assert.deepEqual(calls[0].body, { email: "a@b.c", password: "pw" });
  await clock.advance(539_000);
  assert.equal(calls.length, 1, "not yet");
  await clock.advance(1000);
  assert.equal(calls.length, 2);
  assert.equal(calls[1].url, "http://control.test/v1/auth/refresh");
  assert.deepEqual(calls[1].body, { refreshToken: "refresh-1" });
  await clock.advance(540_000);
  assert.deepEqual(calls[2].body, { refreshToken: "refresh-2" });
  assert.deepEqual(seen, ["access-1", "access-2", "access-3"]);
  assert.deepEqual(saved, ["refresh-1", "refresh-2", "refresh-3"]);
});

test("concurrent callers share one refresh (a refresh token is single use)", async () => {
  const clock = new FakeClock();
  const { fetch, calls } = scriptedFetch([tokenAnswer(1), tokenAnswer(2)]);
  const client = new TeletipClient({ baseUrl: "http://control.test", fetch, clock });
  await client.login("a@b.c", "pw");
  const [a, b, c] = await Promise.all([client.auth.refresh(), client.auth.refresh(), client.auth.refresh()]);
  assert.deepEqual([a, b, c], ["access-2", "access-2", "access-2"]);
  assert.equal(calls.length, 2);
});

test("a 401 on a call is followed by one refresh and one retry; a refused refresh ends the session once", async () => {
  const clock = new FakeClock();
  const me = { body: { id: "u1" } };
  const { fetch, calls } = scriptedFetch([tokenAnswer(1), refused, tokenAnswer(2), me, refused, refused]);
  const client = new TeletipClient({ baseUrl: "http://control.test", fetch, clock });
  const ended = [];
  client.auth.on("session-ended", (e) => ended.push(e));
  await client.login("a@b.c", "pw");
  assert.deepEqual(await client.me(), { id: "u1" });
  assert.equal(calls[3].headers.authorization, "Bearer access-2");
  // Next: the call is refused and so is the refresh: the session is over, said once.
  await assert.rejects(client.me(), (e) => e instanceof SessionEndedError && e.reason === "refresh-refused" && /log in again/i.test(e.message));
  assert.equal(ended.length, 1);
  assert.equal(client.user, null);
  await assert.rejects(client.me(), SessionEndedError, "without a session no request is even sent");
  assert.equal(calls.length, 6);
  await clock.advance(3_600_000);
  assert.equal(calls.length, 6, "no refresh timer is left running after the end");
});

test("other error answers reach the caller as ApiError; an unreachable server as NetworkError", async () => {
  const clock = new FakeClock();
  const conflict = { status: 409, headers: { "x-request-id": "rq" }, body: { type: "/problems/conflict", title: "Conflict", status: 409, detail: "the practitioner is booked then", requestId: "rq" } };
  const { fetch, calls } = scriptedFetch([tokenAnswer(1), conflict, new TypeError("fetch failed")]);
  const client = new TeletipClient({ baseUrl: "http://control.test", fetch, clock });
  await client.login("a@b.c", "pw");
  const input = { practitionerId: "p", patientId: "q", start: "2026-12-08T10:00:00Z", end: "2026-12-08T10:30:00Z" };
  await assert.rejects(client.bookAppointment(input, "key-1"), (e) => e instanceof ApiError && e.kind === "conflict" && e.requestId === "rq");
  assert.equal(calls[1].headers["idempotency-key"], "key-1");
  await assert.rejects(client.listAppointments({ status: "booked", limit: 10 }), (e) => e instanceof NetworkError && /try again/.test(e.message));
  assert.equal(calls[2].url, "http://control.test/v1/appointments?status=booked&limit=10");
});

test("a stored refresh token restores the session at app start", async () => {
  const clock = new FakeClock();
  const { fetch, calls } = scriptedFetch([tokenAnswer(5)]);
  const storage = { load: async () => ({ refreshToken: "stored", user: { id: "u1" } }), save: async () => {}, clear: async () => {} };
  const client = new TeletipClient({ baseUrl: "http://control.test", fetch, clock, storage });
  const user = await client.auth.restore();
  assert.equal(user.id, "u1");
  assert.deepEqual(calls[0].body, { refreshToken: "stored" });
  assert.equal(await client.accessToken(), "access-5");
});
