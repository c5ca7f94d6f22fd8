// Two control instances on one Redis and one database (and one data directory, so they share
// the JWT and relay keys): the patient on instance A, the practitioner on instance B. The lobby,
// admission, signals, resume onto the other instance, and the end all work across them.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Clinic, okData, errorOf, Peers } from "./lib/clinic.js";
import { Control, redisUrl, tempDir, freshDatabase, sleep } from "./lib/env.js";

let a;
let b;
let ca;
let cb;
const peers = new Peers();
before(async () => {
  const redis = await redisUrl();
  const dir = tempDir("teletip-redis-");
  const databaseUrl = freshDatabase(dir);
  const dataDir = join(dir, "data");
  a = await Control.start({ name: "instance-a", dir, databaseUrl, dataDir, redisUrl: redis });
  a.createAdmin();
  b = await Control.start({ name: "instance-b", dir, databaseUrl, dataDir, redisUrl: redis });
  ca = await Clinic.open({ control: a });
  cb = await ca.via(b);
});
after(async () => {
  peers.closeAll();
  await a?.stop();
  await b?.stop();
});

const peer = (control, user, name) => peers.connect(control, user, name);

test("both instances use Redis", async () => {
  for (const inst of [a, b]) assert.match(await inst.output(), /Redis/i, `${inst.name} says it fans out through Redis`);
});

test("lobby, admission, signals and end across two instances", async () => {
  const { practitioner, patient, appointment } = await ca.pair();
  const doc = await peer(b, practitioner, "practitioner@B");
  const dj = okData(await doc.call("room:join", { appointmentId: appointment.id }), "practitioner joins on B");
  const pat = await peer(a, patient, "patient@A");
  const pj = okData(await pat.call("room:join", { appointmentId: appointment.id }), "patient joins on A");
  assert.equal(pj.state, "waiting");
  assert.deepEqual(await doc.waitFor("lobby:patient-arrived"), { peerId: pj.peerId, role: "patient" });
  assert.equal(await cb.appointmentStatus(appointment.id), "arrived");

  // Room state is shared: a waiting patient on A may not signal to the practitioner on B.
  errorOf(await pat.call("signal:offer", { to: dj.peerId, sdp: "v=0\r\ns=early\r\n" }), "forbidden", "waiting patient on A");
  errorOf(await doc.call("signal:offer", { to: pj.peerId, sdp: "v=0\r\ns=early\r\n" }), "forbidden", "offer to a waiting patient on A");

  okData(await doc.call("lobby:admit", { peerId: pj.peerId }), "admit from B");
  const la = await pat.waitFor("lobby:admitted");
  assert.deepEqual(la.peers, [{ peerId: dj.peerId, role: "practitioner" }]);
  assert.equal((await doc.waitFor("room:peer-joined")).peerId, pj.peerId);
  assert.equal(await ca.appointmentStatus(appointment.id), "checked-in");

  okData(await doc.call("signal:offer", { to: pj.peerId, sdp: "v=0\r\ns=offer-B-to-A\r\n" }), "offer B→A");
  assert.deepEqual(await pat.waitFor("signal:offer"), { from: dj.peerId, sdp: "v=0\r\ns=offer-B-to-A\r\n" });
  okData(await pat.call("signal:answer", { to: dj.peerId, sdp: "v=0\r\ns=answer-A-to-B\r\n" }), "answer A→B");
  assert.deepEqual(await doc.waitFor("signal:answer"), { from: pj.peerId, sdp: "v=0\r\ns=answer-A-to-B\r\n" });
  const cand = { candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host", sdpMid: "0", sdpMLineIndex: 0 };
  okData(await pat.call("signal:candidate", { to: dj.peerId, candidate: cand }));
  assert.deepEqual(await doc.waitFor("signal:candidate"), { from: pj.peerId, candidate: cand });
  okData(await doc.call("signal:candidate", { to: pj.peerId, candidate: cand }));
  assert.deepEqual(await pat.waitFor("signal:candidate"), { from: dj.peerId, candidate: cand });
  okData(await pat.call("media:state", { audio: true, video: false }));
  assert.deepEqual(await doc.waitFor("media:state"), { from: pj.peerId, audio: true, video: false });

  // The patient drops off A and resumes on B: same place.
  pat.close();
  assert.deepEqual(await doc.waitFor("room:peer-left"), { peerId: pj.peerId, reason: "disconnected" });
  const pat2 = await peer(b, patient, "patient@B");
  const rj = okData(await pat2.call("room:join", { appointmentId: appointment.id, resume: true }), "resume on B");
  assert.equal(rj.peerId, pj.peerId);
  assert.equal(rj.state, "admitted");
  await doc.waitFor("room:peer-joined", () => doc.received("room:peer-joined").length >= 2);
  okData(await doc.call("signal:offer", { to: pj.peerId, sdp: "v=0\r\ns=after-move\r\n" }));
  assert.equal((await pat2.waitFor("signal:offer")).sdp, "v=0\r\ns=after-move\r\n");

  // The practitioner on B ends; the patient, now also on B, and a fresh look from A agree.
  okData(await doc.call("room:end", {}));
  assert.deepEqual(await pat2.waitFor("room:ended"), { reason: "ended-by-practitioner" });
  assert.equal(await ca.appointmentStatus(appointment.id), "fulfilled");
  await ca.audit("consultation.end");
  assert.equal(ca.lastChain.verified, true, "one audit chain for both instances");
});

test("a second connection on the other instance replaces the first", async () => {
  const { practitioner, patient, appointment } = await ca.pair();
  const doc = await peer(a, practitioner, "practitioner@A");
  const dj = okData(await doc.call("room:join", { appointmentId: appointment.id }));
  const first = await peer(a, patient, "patient@A");
  const pj = okData(await first.call("room:join", { appointmentId: appointment.id }));
  okData(await doc.call("lobby:admit", { peerId: pj.peerId }));
  await first.waitFor("lobby:admitted");
  const second = await peer(b, patient, "patient@B");
  const sj = okData(await second.call("room:join", { appointmentId: appointment.id, resume: true }));
  assert.equal(sj.peerId, pj.peerId);
  await first.waitFor("disconnect", () => true, 5000);
  await sleep(300);
  okData(await doc.call("signal:offer", { to: pj.peerId, sdp: "v=0\r\ns=x\r\n" }));
  await second.waitFor("signal:offer");
  assert.equal(first.received("signal:offer").length, 0);
  assert.equal(dj.state, "admitted");
});
