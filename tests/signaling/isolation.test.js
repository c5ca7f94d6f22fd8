// Two consultations at once (two practitioners, two patients): nothing of one reaches the other,
// and a peer id of the other room is refused.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Clinic, Peer, okData, errorOf } from "./lib/clinic.js";
import { sleep } from "./lib/env.js";

let c;
const open = [];
before(async () => {
  c = await Clinic.open({ name: "isolation" });
});
after(async () => {
  for (const p of open) p.close();
  await c?.control.stop();
});

async function room(label) {
  const pair = await c.pair({ practitioner: `Dr. ${label}`, patient: `Patient ${label}` });
  const doc = await Peer.connect(c.control.base, pair.practitioner.token, { name: `doc-${label}` });
  const pat = await Peer.connect(c.control.base, pair.patient.token, { name: `pat-${label}` });
  open.push(doc, pat);
  return { ...pair, doc, pat, label };
}

const SDP = (tag) => `v=0\r\ns=${tag}\r\n`;

test("signals never cross between two parallel consultations", async () => {
  const [a, b] = await Promise.all([room("A"), room("B")]);
  // Both practitioners join, then both patients (interleaved).
  a.dj = okData(await a.doc.call("room:join", { appointmentId: a.appointment.id }));
  b.dj = okData(await b.doc.call("room:join", { appointmentId: b.appointment.id }));
  a.pj = okData(await a.pat.call("room:join", { appointmentId: a.appointment.id }));
  b.pj = okData(await b.pat.call("room:join", { appointmentId: b.appointment.id }));
  await a.doc.waitFor("lobby:patient-arrived", (d) => d.peerId === a.pj.peerId);
  await b.doc.waitFor("lobby:patient-arrived", (d) => d.peerId === b.pj.peerId);

  // A's practitioner cannot admit or deny B's patient, nor signal to anyone in B.
  errorOf(await a.doc.call("lobby:admit", { peerId: b.pj.peerId }), "not-found", "admit a patient of another room");
  errorOf(await a.doc.call("lobby:deny", { peerId: b.pj.peerId }), "not-found", "deny a patient of another room");
  okData(await a.doc.call("lobby:admit", { peerId: a.pj.peerId }));
  okData(await b.doc.call("lobby:admit", { peerId: b.pj.peerId }));
  await a.pat.waitFor("lobby:admitted");
  await b.pat.waitFor("lobby:admitted");

  errorOf(await a.doc.call("signal:offer", { to: b.pj.peerId, sdp: SDP("A-to-B") }), "forbidden", "offer to the other room's patient");
  errorOf(await a.doc.call("signal:offer", { to: b.dj.peerId, sdp: SDP("A-to-B-doc") }), "forbidden", "offer to the other room's practitioner");
  errorOf(await b.pat.call("signal:candidate", { to: a.dj.peerId, candidate: { candidate: "x", sdpMid: "0" } }), "forbidden", "candidate across");

  // Each room's full exchange, at the same time.
  for (const r of [a, b]) {
    okData(await r.doc.call("signal:offer", { to: r.pj.peerId, sdp: SDP(`offer-${r.label}`) }));
    okData(await r.pat.call("signal:answer", { to: r.dj.peerId, sdp: SDP(`answer-${r.label}`) }));
    okData(await r.doc.call("signal:candidate", { to: r.pj.peerId, candidate: { candidate: `cand-${r.label}`, sdpMid: "0" } }));
    okData(await r.pat.call("media:state", { audio: r.label === "A", video: true }));
  }
  for (const r of [a, b]) {
    assert.equal((await r.pat.waitFor("signal:offer")).sdp, SDP(`offer-${r.label}`));
    assert.equal((await r.doc.waitFor("signal:answer")).sdp, SDP(`answer-${r.label}`));
    assert.equal((await r.pat.waitFor("signal:candidate")).candidate.candidate, `cand-${r.label}`);
    assert.equal((await r.doc.waitFor("media:state")).audio, r.label === "A");
  }
  // Leave B's patient; end A. Let stray deliveries arrive, then look at everything received.
  okData(await b.pat.call("room:leave", {}));
  okData(await a.doc.call("room:end", {}));
  await b.doc.waitFor("room:peer-left");
  await sleep(500);
  for (const [mine, theirs] of [[a, b], [b, a]]) {
    for (const p of [mine.doc, mine.pat]) {
      const text = JSON.stringify(p.events);
      for (const foreign of [theirs.pj.peerId, theirs.dj.peerId, `-${theirs.label}\\r`, `cand-${theirs.label}`]) {
        assert.ok(!text.includes(foreign), `${p.name} received something of room ${theirs.label} (${foreign}): ${text}`);
      }
      assert.equal(p.received("signal:offer").length + p.received("signal:answer").length, 1, `${p.name}: exactly one SDP`);
    }
  }
  assert.equal(b.pat.received("room:ended").length, 0, "ending A does not end B");
  assert.equal(b.doc.received("room:ended").length, 0, "ending A does not end B");
  assert.equal(await c.appointmentStatus(b.appointment.id), "checked-in", "B still runs");
  assert.equal(await c.appointmentStatus(a.appointment.id), "fulfilled");
});
