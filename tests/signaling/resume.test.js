// Resume: a participant who disconnects keeps their place (peer id, state) and gets it back with
// room:join {resume: true}; the others see room:peer-left {disconnected} then room:peer-joined.
// A second connection of the same user replaces the first.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Clinic, okData, errorOf, Peers } from "./lib/clinic.js";
import { sleep } from "./lib/env.js";

let c;
const peers = new Peers();
before(async () => {
  c = await Clinic.open({ name: "resume" });
});
after(async () => {
  peers.closeAll();
  await c?.control.stop();
});

const peer = (user, name) => peers.connect(c.control, user, name);

async function admittedRoom() {
  const pair = await c.pair();
  const doc = await peer(pair.practitioner, "practitioner");
  const dj = okData(await doc.call("room:join", { appointmentId: pair.appointment.id }));
  const pat = await peer(pair.patient, "patient");
  const pj = okData(await pat.call("room:join", { appointmentId: pair.appointment.id }));
  okData(await doc.call("lobby:admit", { peerId: pj.peerId }));
  await pat.waitFor("lobby:admitted");
  await doc.waitFor("room:peer-joined", (d) => d.peerId === pj.peerId);
  return { ...pair, doc, dj, pat, pj };
}

test("an admitted patient who reconnects within 60 s keeps the peer id and stays admitted", async () => {
  const r = await admittedRoom();
  const joinedBefore = r.doc.received("room:peer-joined").length;
  r.pat.close();
  assert.deepEqual(await r.doc.waitFor("room:peer-left"), { peerId: r.pj.peerId, reason: "disconnected" });
  // While they are away, signals to them are refused (nobody to deliver to).
  const away = await r.doc.call("signal:offer", { to: r.pj.peerId, sdp: "v=0\r\ns=away\r\n" });
  assert.equal(away.ok, false, `offer to a disconnected peer: ${JSON.stringify(away)}`);

  await sleep(1000);
  // A new connection, with a refreshed token as the client would after an auth:expired.
  const fresh = await c.api.must("POST", "/v1/auth/refresh", null, { refreshToken: r.patient.login.refreshToken });
  const back = await peer({ token: fresh.accessToken }, "patient again");
  const rj = okData(await back.call("room:join", { appointmentId: r.appointment.id, resume: true }), "resume");
  assert.equal(rj.peerId, r.pj.peerId, "same peer id");
  assert.equal(rj.state, "admitted", "not sent back to the lobby");
  assert.deepEqual(rj.peers, [{ peerId: r.dj.peerId, role: "practitioner" }]);
  assert.equal(back.received("lobby:waiting").length, 0);
  const again = await r.doc.waitFor("room:peer-joined", (d) => d.peerId === r.pj.peerId && r.doc.received("room:peer-joined").length > joinedBefore);
  assert.equal(again.role, "patient");
  const order = r.doc.events.map((e) => e.event).filter((e) => e === "room:peer-left" || e === "room:peer-joined");
  assert.deepEqual(order.slice(-2), ["room:peer-left", "room:peer-joined"]);

  // Signalling works both ways after the resume.
  okData(await r.doc.call("signal:offer", { to: r.pj.peerId, sdp: "v=0\r\ns=after-resume\r\n" }));
  assert.deepEqual(await back.waitFor("signal:offer"), { from: r.dj.peerId, sdp: "v=0\r\ns=after-resume\r\n" });
  okData(await back.call("signal:answer", { to: r.dj.peerId, sdp: "v=0\r\ns=answer\r\n" }));
  assert.equal((await r.doc.waitFor("signal:answer")).from, r.pj.peerId);
  assert.equal(await c.appointmentStatus(r.appointment.id), "checked-in");
  const joins = (await c.audit("consultation.join")).filter((e) => e.target === r.appointment.id && e.actor === r.patient.userId);
  assert.ok(joins.length >= 2, JSON.stringify(joins));
});

test("a waiting patient who reconnects stays in the lobby with the same peer id", async () => {
  const pair = await c.pair();
  const doc = await peer(pair.practitioner, "practitioner");
  okData(await doc.call("room:join", { appointmentId: pair.appointment.id }));
  const pat = await peer(pair.patient, "patient");
  const pj = okData(await pat.call("room:join", { appointmentId: pair.appointment.id }));
  await doc.waitFor("lobby:patient-arrived");
  pat.close();
  const left = await doc.waitFor("room:peer-left");
  assert.deepEqual(left, { peerId: pj.peerId, reason: "disconnected" });
  const back = await peer(pair.patient, "patient again");
  const rj = okData(await back.call("room:join", { appointmentId: pair.appointment.id, resume: true }));
  assert.equal(rj.peerId, pj.peerId);
  assert.equal(rj.state, "waiting");
  // The practitioner can admit the resumed patient under the same id.
  okData(await doc.call("lobby:admit", { peerId: pj.peerId }));
  await back.waitFor("lobby:admitted");
});

test("the practitioner resumes too; the patient sees them leave and come back", async () => {
  const r = await admittedRoom();
  r.doc.close();
  assert.deepEqual(await r.pat.waitFor("room:peer-left"), { peerId: r.dj.peerId, reason: "disconnected" });
  const doc2 = await peer(r.practitioner, "practitioner again");
  const rj = okData(await doc2.call("room:join", { appointmentId: r.appointment.id, resume: true }));
  assert.equal(rj.peerId, r.dj.peerId);
  assert.equal(rj.state, "admitted");
  assert.deepEqual(rj.peers, [{ peerId: r.pj.peerId, role: "patient" }], "the admitted patient is still there");
  assert.deepEqual(await r.pat.waitFor("room:peer-joined"), { peerId: r.dj.peerId, role: "practitioner" });
});

test("a second connection of the same user replaces the first", async () => {
  const r = await admittedRoom();
  const second = await peer(r.patient, "second tab");
  const sj = okData(await second.call("room:join", { appointmentId: r.appointment.id, resume: true }));
  assert.equal(sj.peerId, r.pj.peerId);
  assert.equal(sj.state, "admitted");
  await r.pat.waitFor("disconnect", () => true, 5000);
  okData(await r.doc.call("signal:offer", { to: r.pj.peerId, sdp: "v=0\r\ns=to-second\r\n" }));
  await second.waitFor("signal:offer");
  assert.equal(r.pat.received("signal:offer").length, 0, "the replaced connection gets nothing");
});

test("a join without resume after a disconnect starts afresh in the lobby", async () => {
  const r = await admittedRoom();
  r.pat.close();
  await r.doc.waitFor("room:peer-left");
  const again = await peer(r.patient, "fresh");
  const j = okData(await again.call("room:join", { appointmentId: r.appointment.id }));
  assert.notEqual(j.peerId, r.pj.peerId, "a new peer id");
  assert.equal(j.state, "waiting");
  errorOf(await again.call("signal:answer", { to: r.dj.peerId, sdp: "v=0" }), "forbidden", "back in the lobby");
});
