// Lobby rules, admission, signal relaying, deny, end; the appointment's status follows the room;
// joins, refusals, admissions, denials and the end are audited.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Clinic, Peer, okData, errorOf, Peers } from "./lib/clinic.js";
import { sleep } from "./lib/env.js";

let c;
before(async () => {
  c = await Clinic.open({ name: "lobby" });
});
after(async () => {
  await c?.control.stop();
});

const peers = new Peers();
const peer = (user, name) => peers.connect(c.control, user, name);
after(() => {
  peers.closeAll();
});

const SDP = (tag) => `v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=${tag}\r\nt=0 0\r\n`;

test("lobby, admission, relayed signals, media state, end, status and audit", async () => {
  const { practitioner, patient, appointment } = await c.pair();
  const stranger = await c.pair({ practitioner: "Dr. Other", patient: "Stranger Patient" });
  const pat = await peer(patient, "patient");

  // Before room:join: not-joined.
  errorOf(await pat.call("signal:offer", { to: "nobody", sdp: SDP("early") }), "not-joined", "offer before join");
  errorOf(await pat.call("room:leave", {}), "not-joined", "leave before join");
  // Malformed or unknown appointments.
  errorOf(await pat.call("room:join", {}), "invalid", "join without appointmentId");
  errorOf(await pat.call("room:join", { appointmentId: "not-a-uuid" }), "invalid", "join with a bad id");
  errorOf(await pat.call("room:join", { appointmentId: "00000000-0000-4000-8000-000000000000" }), "not-found", "unknown appointment");

  // The patient enters the lobby.
  const joined = okData(await pat.call("room:join", { appointmentId: appointment.id }), "patient join");
  assert.equal(joined.role, "patient");
  assert.equal(joined.state, "waiting");
  assert.deepEqual(joined.peers, []);
  assert.deepEqual(joined.waiting, []);
  assert.equal(typeof joined.peerId, "string");
  assert.ok(Array.isArray(joined.ice.iceServers) && joined.ice.iceServers.length > 0, JSON.stringify(joined.ice));
  for (const k of ["ttl", "expiresAt", "refreshAfter"]) assert.ok(k in joined.ice, `ice.${k}`);
  const turn = joined.ice.iceServers.find((s) => [].concat(s.urls).some((u) => u.startsWith("turn:")));
  assert.ok(turn && turn.username && turn.credential, "a TURN server with credentials");
  assert.ok(Date.parse(joined.closesAt) >= Date.parse(appointment.end), `closesAt ${joined.closesAt} after the end`);
  assert.ok(Math.abs(Date.parse(joined.ice.expiresAt) - Date.parse(joined.closesAt)) < 5000, "ICE credentials expire with the window");
  const waitingEv = await pat.waitFor("lobby:waiting");
  assert.equal(waitingEv.peerId, joined.peerId);
  assert.equal(await c.appointmentStatus(appointment.id), "arrived", "a patient in the lobby marks the appointment arrived");

  // A waiting patient may not signal, nor admit, nor end.
  errorOf(await pat.call("signal:offer", { to: joined.peerId, sdp: SDP("waiting") }), "forbidden", "offer from the lobby");
  errorOf(await pat.call("signal:candidate", { to: joined.peerId, candidate: { candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host", sdpMid: "0" } }), "forbidden", "candidate from the lobby");
  errorOf(await pat.call("media:state", { audio: true, video: false }), "forbidden", "media:state from the lobby");
  errorOf(await pat.call("lobby:admit", { peerId: joined.peerId }), "forbidden", "a patient admitting");
  errorOf(await pat.call("lobby:deny", { peerId: joined.peerId }), "forbidden", "a patient denying");
  errorOf(await pat.call("room:end", {}), "forbidden", "a patient ending");

  // Strangers: the other appointment's patient and practitioner, and an admin.
  for (const [who, user] of [["stranger patient", stranger.patient], ["stranger practitioner", stranger.practitioner]]) {
    const s = await peer(user, who);
    errorOf(await s.call("room:join", { appointmentId: appointment.id }), "forbidden", who);
    errorOf(await s.call("signal:offer", { to: joined.peerId, sdp: SDP("stranger") }), "not-joined", `${who} signalling`);
    s.close();
  }
  const admin = await Peer.connect(c.control.base, c.admin, { name: "admin" });
  errorOf(await admin.call("room:join", { appointmentId: appointment.id }), "forbidden", "an admin joining");
  admin.close();

  // The practitioner joins: admitted at once, sees the waiting patient.
  const doc = await peer(practitioner, "practitioner");
  const dj = okData(await doc.call("room:join", { appointmentId: appointment.id }), "practitioner join");
  assert.equal(dj.role, "practitioner");
  assert.equal(dj.state, "admitted");
  assert.deepEqual(dj.peers, [], "the waiting patient is not an admitted peer");
  assert.deepEqual(dj.waiting, [{ peerId: joined.peerId, role: "patient" }]);
  assert.notEqual(dj.peerId, joined.peerId);
  // Nobody but the practitioner was told; the waiting patient gets no room:peer-joined.
  await sleep(300);
  assert.equal(pat.received("room:peer-joined").length, 0, "a waiting patient hears nothing of the room");
  // Signals to a waiting peer are refused.
  errorOf(await doc.call("signal:offer", { to: joined.peerId, sdp: SDP("to-lobby") }), "forbidden", "offer to a waiting patient");
  errorOf(await doc.call("lobby:admit", {}), "invalid", "admit without peerId");
  errorOf(await doc.call("lobby:admit", { peerId: "nobody" }), "not-found", "admit an unknown peer");

  // Admit.
  const admitted = okData(await doc.call("lobby:admit", { peerId: joined.peerId }), "admit");
  assert.equal(admitted.peerId, joined.peerId);
  const la = await pat.waitFor("lobby:admitted");
  assert.equal(la.peerId, joined.peerId);
  assert.deepEqual(la.peers, [{ peerId: dj.peerId, role: "practitioner" }]);
  const pj = await doc.waitFor("room:peer-joined", (d) => d.peerId === joined.peerId);
  assert.equal(pj.role, "patient");
  assert.equal(doc.received("room:peer-joined").filter((d) => d.peerId === dj.peerId).length, 0, "not told about myself");
  assert.equal(await c.appointmentStatus(appointment.id), "checked-in", "admitting checks the appointment in");
  errorOf(await doc.call("lobby:admit", { peerId: joined.peerId }), "not-found", "admitting twice");

  // Offer, answer and candidates, each delivered with `from`.
  okData(await doc.call("signal:offer", { to: joined.peerId, sdp: SDP("offer-1") }), "offer");
  const offer = await pat.waitFor("signal:offer");
  assert.deepEqual(offer, { from: dj.peerId, sdp: SDP("offer-1") });
  okData(await pat.call("signal:answer", { to: dj.peerId, sdp: SDP("answer-1") }), "answer");
  assert.deepEqual(await doc.waitFor("signal:answer"), { from: joined.peerId, sdp: SDP("answer-1") });
  const cand = { candidate: "candidate:842163049 1 udp 1677729535 192.0.2.7 51000 typ srflx raddr 0.0.0.0 rport 0 generation 0", sdpMid: "0", sdpMLineIndex: 0, usernameFragment: "abcd" };
  okData(await doc.call("signal:candidate", { to: joined.peerId, candidate: cand }), "candidate to the patient");
  assert.deepEqual(await pat.waitFor("signal:candidate"), { from: dj.peerId, candidate: cand });
  okData(await pat.call("signal:candidate", { to: dj.peerId, candidate: cand }), "candidate to the practitioner");
  assert.deepEqual(await doc.waitFor("signal:candidate"), { from: joined.peerId, candidate: cand });
  // Malformed signals.
  errorOf(await doc.call("signal:offer", { sdp: SDP("no-to") }), "invalid", "offer without to");
  errorOf(await doc.call("signal:candidate", { to: joined.peerId }), "invalid", "candidate without candidate");
  errorOf(await doc.call("signal:offer", { to: dj.peerId, sdp: SDP("self") }), "forbidden", "offer to myself");
  // Nothing echoed back to the sender.
  assert.equal(doc.received("signal:offer").length, 0);
  assert.equal(pat.received("signal:answer").length, 0);

  // Media state goes to the other member.
  okData(await pat.call("media:state", { audio: false, video: true }), "media:state");
  assert.deepEqual(await doc.waitFor("media:state"), { from: joined.peerId, audio: false, video: true });
  errorOf(await pat.call("media:state", { audio: "no" }), "invalid", "media:state malformed");

  // The practitioner ends the consultation.
  okData(await doc.call("room:end", {}), "room:end");
  assert.deepEqual(await pat.waitFor("room:ended"), { reason: "ended-by-practitioner" });
  assert.deepEqual(await doc.waitFor("room:ended"), { reason: "ended-by-practitioner" });
  assert.equal(await c.appointmentStatus(appointment.id), "fulfilled", "room:end fulfils the appointment");
  const after = await pat.call("signal:answer", { to: dj.peerId, sdp: SDP("after-end") });
  assert.equal(after.ok, false, `signals after the end are refused: ${JSON.stringify(after)}`);
  errorOf(await pat.call("room:join", { appointmentId: appointment.id }), "conflict", "joining a fulfilled appointment");

  // Audited.
  const joins = (await c.audit("consultation.join")).filter((e) => e.target === appointment.id);
  assert.ok(joins.some((e) => e.actor === patient.userId && e.outcome.startsWith("success")), JSON.stringify(joins));
  assert.ok(joins.some((e) => e.actor === practitioner.userId && e.outcome.startsWith("success")), JSON.stringify(joins));
  assert.ok(joins.some((e) => e.actor === stranger.patient.userId && e.outcome === "denied"), "a refused join is audited");
  assert.ok(joins.some((e) => e.actor === stranger.practitioner.userId && e.outcome === "denied"));
  const admits = await c.audit("consultation.admit");
  assert.ok(admits.some((e) => e.actor === practitioner.userId && e.target.includes(appointment.id)), JSON.stringify(admits));
  const ends = await c.audit("consultation.end");
  assert.ok(ends.some((e) => e.actor === practitioner.userId && e.target === appointment.id), JSON.stringify(ends));
  // The status changes the room makes are audited under the REST actions' names (one
  // vocabulary, control/src/scheduling/actions.rs; security issue 18, item 10).
  const checkIns = (await c.audit("appointment.check-in")).filter((e) => e.target === appointment.id);
  assert.ok(checkIns.some((e) => e.outcome === "success:signaling"), JSON.stringify(checkIns));
  const completions = (await c.audit("appointment.complete")).filter((e) => e.target === appointment.id);
  assert.ok(completions.some((e) => e.outcome === "success:signaling"), JSON.stringify(completions));
  // The end of the call fulfils the appointment, which revokes the relay credentials both sides
  // got with room:join (issue 20), under the practitioner's name.
  const revoked = (await c.audit("ice.sessions.revoke")).filter((e) => e.target.endsWith(`of:appointment:${appointment.id} why:appointment-fulfilled`));
  assert.equal(revoked.length, 1, JSON.stringify(revoked));
  assert.equal(revoked[0].actor, practitioner.userId);
  assert.ok(Number(revoked[0].target.match(/^turn-sessions:(\d+) /)[1]) >= 2, `both sides' credentials: ${revoked[0].target}`);
  for (const other of ["appointment.checked-in", "appointment.fulfilled", "appointment.arrived"]) {
    assert.equal((await c.audit(other)).length, 0, `no event named ${other}`);
  }
  assert.equal(c.lastChain.verified, true, "the audit hash chain verifies");
  for (const e of [...joins, ...admits, ...ends]) assert.ok(!JSON.stringify(e).includes("v=0"), "no SDP in the audit trail");
});

test("the practitioner is told when a patient arrives, and can deny", async () => {
  const { practitioner, patient, appointment } = await c.pair();
  const doc = await peer(practitioner, "practitioner");
  const dj = okData(await doc.call("room:join", { appointmentId: appointment.id }), "practitioner join");
  assert.deepEqual(dj.waiting, []);
  const pat = await peer(patient, "patient");
  const pj = okData(await pat.call("room:join", { appointmentId: appointment.id }), "patient join");
  assert.equal(pj.state, "waiting");
  const arrived = await doc.waitFor("lobby:patient-arrived");
  assert.deepEqual(arrived, { peerId: pj.peerId, role: "patient" });
  assert.equal(doc.received("room:peer-joined").length, 0, "a waiting patient is not a member");

  okData(await doc.call("lobby:deny", { peerId: pj.peerId }), "deny");
  assert.deepEqual(await pat.waitFor("lobby:denied"), { peerId: pj.peerId });
  assert.deepEqual(await doc.waitFor("room:peer-left"), { peerId: pj.peerId, reason: "denied" });
  assert.equal(pat.received("lobby:admitted").length, 0);
  const late = await pat.call("signal:offer", { to: dj.peerId, sdp: SDP("denied") });
  assert.equal(late.ok, false, "a denied patient cannot signal");
  errorOf(await doc.call("lobby:admit", { peerId: pj.peerId }), "not-found", "admitting a denied patient");
  const denies = await c.audit("consultation.deny");
  assert.ok(denies.some((e) => e.actor === practitioner.userId && e.target.includes(appointment.id)), JSON.stringify(denies));
  assert.equal(await c.appointmentStatus(appointment.id), "arrived", "denying does not check in");
});

test("room:leave tells the others and ends my place", async () => {
  const { practitioner, patient, appointment } = await c.pair();
  const doc = await peer(practitioner, "practitioner");
  const dj = okData(await doc.call("room:join", { appointmentId: appointment.id }));
  const pat = await peer(patient, "patient");
  const pj = okData(await pat.call("room:join", { appointmentId: appointment.id }));
  okData(await doc.call("lobby:admit", { peerId: pj.peerId }));
  await pat.waitFor("lobby:admitted");
  okData(await pat.call("room:leave", {}), "leave");
  assert.deepEqual(await doc.waitFor("room:peer-left"), { peerId: pj.peerId, reason: "left" });
  errorOf(await doc.call("signal:offer", { to: pj.peerId, sdp: SDP("gone") }), "forbidden", "offer to a peer who left");
  errorOf(await pat.call("signal:offer", { to: dj.peerId, sdp: SDP("gone") }), "not-joined", "a peer who left");
});
