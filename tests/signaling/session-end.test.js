// Issue 18 item 1: a session that ends (logout, refresh-token reuse) or an account that changes
// (disabled, role or password changed) ends its /rtc connections at once, with
// `session:ended {reason}`; on one instance, across two instances on one Redis, and, when no
// announcement can reach an instance (two instances sharing a database without Redis), the
// next event of such a connection is refused with `session-ended` and the connection closed.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Clinic, okData, errorOf, Peers } from "./lib/clinic.js";
import { Control, redisUrl, tempDir, freshDatabase, PASSWORD } from "./lib/env.js";

let c;
const peers = new Peers();
const started = [];
before(async () => {
  c = await Clinic.open({ name: "session-end" });
  started.push(c.control);
});
after(async () => {
  peers.closeAll();
  for (const control of started) await control.stop();
});

/** Waits until `p` is told its session ended, for `reason`, and is disconnected by the server. */
async function ended(p, reason) {
  assert.deepEqual(await p.waitFor("session:ended", () => true, 5000), { reason }, `${p.name}: session:ended`);
  assert.equal(await p.waitFor("disconnect", () => true, 5000), "io server disconnect", `${p.name}: disconnected`);
}

/** A consultation with the practitioner joined and the patient admitted, on the given instances. */
async function consultation(clinic, patientOn, practitionerOn) {
  const { practitioner, patient, appointment } = await clinic.pair();
  const doc = await peers.connect(practitionerOn, practitioner, "practitioner");
  const dj = okData(await doc.call("room:join", { appointmentId: appointment.id }), "practitioner joins");
  const pat = await peers.connect(patientOn, patient, "patient");
  const pj = okData(await pat.call("room:join", { appointmentId: appointment.id }), "patient joins");
  okData(await doc.call("lobby:admit", { peerId: pj.peerId }), "admit");
  await pat.waitFor("lobby:admitted");
  return { practitioner, patient, appointment, doc, pat, dj, pj };
}

test("logout ends that session's sockets at once, not the user's other sessions", async () => {
  const { patient, doc, pat, pj } = await consultation(c, c.control, c.control);
  const sameSession = await peers.connect(c.control, patient, "patient, same session");
  const second = await c.api.login(patient.email, PASSWORD);
  const otherSession = await peers.connect(c.control, { token: second.accessToken }, "patient, other session");
  const out = await c.api.post("/v1/auth/logout", patient.token);
  assert.equal(out.status, 204, JSON.stringify(out.body));
  await ended(pat, "logout");
  await ended(sameSession, "logout");
  assert.deepEqual(await doc.waitFor("room:peer-left"), { peerId: pj.peerId, reason: "disconnected" });
  // The other session of the same user goes on.
  okData(await otherSession.call("auth:renew", { token: second.accessToken }), "the other session still acts");
  assert.ok(otherSession.socket.connected, "another session of the user is not ended");
  assert.equal(otherSession.received("session:ended").length, 0);
});

test("disabling an account, changing its role or its password ends all its sockets", async () => {
  for (const [change, reason] of [
    [{ disabled: true }, "account-disabled"],
    [{ role: "practitioner" }, "role-changed"],
    [{ password: "another long enough passphrase" }, "password-changed"],
  ]) {
    const u = await c.patient();
    const again = await c.api.login(u.email, PASSWORD);
    const one = await peers.connect(c.control, u, `${reason} 1`);
    const two = await peers.connect(c.control, { token: again.accessToken }, `${reason} 2`);
    const bystander = await peers.connect(c.control, await c.patient(), `${reason} bystander`);
    const r = await c.api.req("PATCH", `/v1/users/${u.userId}`, c.admin, change);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await ended(one, reason);
    await ended(two, reason);
    assert.ok(bystander.socket.connected, "another user's socket stays");
  }
});

test("refresh-token reuse ends the session's sockets", async () => {
  const u = await c.patient();
  const p = await peers.connect(c.control, u, "reused");
  await c.api.must("POST", "/v1/auth/refresh", null, { refreshToken: u.login.refreshToken });
  const reuse = await c.api.post("/v1/auth/refresh", null, { refreshToken: u.login.refreshToken });
  assert.equal(reuse.status, 401);
  await ended(p, "refresh-token-reuse");
});

test("auth:renew with another session's token moves the socket to that session", async () => {
  const u = await c.patient();
  const p = await peers.connect(c.control, u, "renewed into another session");
  const second = await c.api.login(u.email, PASSWORD);
  okData(await p.call("auth:renew", { token: second.accessToken }), "auth:renew");
  // Ending the first session no longer ends this socket; ending the second does.
  assert.equal((await c.api.post("/v1/auth/logout", u.token)).status, 204);
  okData(await p.call("auth:renew", { token: second.accessToken }), "still live");
  assert.equal((await c.api.post("/v1/auth/logout", second.accessToken)).status, 204);
  await ended(p, "logout");
});

test("two instances on one Redis: a logout on A ends the socket on B at once", async () => {
  const redis = await redisUrl();
  const dir = tempDir("teletip-end-redis-");
  const databaseUrl = freshDatabase(dir);
  const dataDir = join(dir, "data");
  const a = await Control.start({ name: "end-a", dir, databaseUrl, dataDir, redisUrl: redis });
  started.push(a);
  a.createAdmin();
  const b = await Control.start({ name: "end-b", dir, databaseUrl, dataDir, redisUrl: redis });
  started.push(b);
  const ca = await Clinic.open({ control: a });
  const { practitioner, patient, doc, pat, pj } = await consultation(ca, b, a);
  const out = await ca.api.post("/v1/auth/logout", patient.token);
  assert.equal(out.status, 204);
  await ended(pat, "logout");
  assert.deepEqual(await doc.waitFor("room:peer-left"), { peerId: pj.peerId, reason: "disconnected" });
  // And the other way round: the practitioner on A, disabled by an admin through B.
  const cb = await ca.via(b);
  const r = await cb.api.req("PATCH", `/v1/users/${practitioner.userId}`, cb.admin, { disabled: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await ended(doc, "account-disabled");
});

test("without Redis, an instance that missed the announcement refuses the socket's next event", async () => {
  const dir = tempDir("teletip-end-shared-db-");
  const databaseUrl = freshDatabase(dir);
  const dataDir = join(dir, "data");
  const a = await Control.start({ name: "solo-a", dir, databaseUrl, dataDir });
  started.push(a);
  a.createAdmin();
  const b = await Control.start({ name: "solo-b", dir, databaseUrl, dataDir });
  started.push(b);
  const ca = await Clinic.open({ control: a });
  const { patient, pat, dj } = await consultation(ca, b, b);
  // The logout goes to A, which holds no socket of this session and cannot tell B.
  assert.equal((await ca.api.post("/v1/auth/logout", patient.token)).status, 204);
  const refused = errorOf(await pat.call("signal:offer", { to: dj.peerId, sdp: "v=0\r\ns=after-logout\r\n" }), "session-ended", "offer after logout");
  assert.match(refused.message, /session ended/);
  assert.equal(await pat.waitFor("disconnect", () => true, 5000), "io server disconnect");
});
