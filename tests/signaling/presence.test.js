// practitioner:status: a waiting patient is told where their practitioner is (offline, online,
// busy with another patient, here in this consultation's room), on joining and at each change;
// on one instance and across two on Redis. A patient of another practitioner hears nothing of
// it, and a patient once admitted hears no more. And lobby:admit and room:end: the appointment
// is checked in (fulfilled) in the database before lobby:admitted (room:ended) or the
// acknowledgement reaches anyone (read at once, repeated).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Clinic, okData, Peers } from "./lib/clinic.js";
import { Control, redisUrl, tempDir, freshDatabase, sleep } from "./lib/env.js";

let c;
let a;
let b;
let ca;
const peers = new Peers();
before(async () => {
  c = await Clinic.open({ name: "presence" });
  const redis = await redisUrl();
  const dir = tempDir("teletip-presence-");
  const databaseUrl = freshDatabase(dir);
  const dataDir = join(dir, "data");
  a = await Control.start({ name: "presence-a", dir, databaseUrl, dataDir, redisUrl: redis });
  a.createAdmin();
  b = await Control.start({ name: "presence-b", dir, databaseUrl, dataDir, redisUrl: redis });
  ca = await Clinic.open({ control: a });
});
after(async () => {
  peers.closeAll();
  await c?.control.stop();
  await a?.stop();
  await b?.stop();
});

const STATUS = "practitioner:status";

/** The statuses a peer was told, in order. */
const told = (p) => p.received(STATUS).map((m) => m.status);

/** Waits until the last status a peer was told is `want`. */
async function hears(p, want, what) {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    if (told(p).at(-1) === want) return;
    await sleep(25);
  }
  assert.fail(`${what}: ${p.name} expected ${want}, was told ${JSON.stringify(told(p))}`);
}

test("a waiting patient hears their practitioner go online, busy, here and offline; nobody else does", async () => {
  const doctor = await c.practitioner("Dr. Presence");
  const first = await c.patient("Waiting First");
  const second = await c.patient("Waiting Second");
  // Two back-to-back appointments of one practitioner, both open for joining now.
  const mine = await c.appointment(doctor, first, -1, 10);
  const other = await c.appointment(doctor, second, 9, 10);
  // Another practitioner's patient, waiting at the same time.
  const stranger = await c.pair({ practitioner: "Dr. Elsewhere", patient: "Unrelated Patient" });

  const pat = await peers.connect(c.control, first, "patient");
  okData(await pat.call("room:join", { appointmentId: mine.id }), "patient joins");
  await hears(pat, "offline", "on joining, the practitioner not connected");
  const outsider = await peers.connect(c.control, stranger.patient, "unrelated patient");
  okData(await outsider.call("room:join", { appointmentId: stranger.appointment.id }), "unrelated patient joins");
  await hears(outsider, "offline", "the unrelated patient's own practitioner");

  // The practitioner connects (not in any room yet): online.
  const doc = await peers.connect(c.control, doctor, "practitioner");
  await hears(pat, "online", "practitioner connected");

  // In the other appointment's room, with its patient waiting there: that patient hears
  // "here"; this one still "online".
  okData(await doc.call("room:join", { appointmentId: other.id }), "practitioner joins the other room");
  const pat2 = await peers.connect(c.control, second, "other patient");
  const p2 = okData(await pat2.call("room:join", { appointmentId: other.id }), "other patient joins");
  await hears(pat2, "here", "the other patient, whose room the practitioner is in");
  await sleep(200);
  assert.equal(told(pat).at(-1), "online", "not here for the first patient");

  // The other patient admitted: the practitioner is in a call, busy for the first patient.
  okData(await doc.call("lobby:admit", { peerId: p2.peerId }), "admit the other patient");
  await hears(pat, "busy", "in a call with another patient");
  const heardByAdmitted = told(pat2).length;

  // The call ends: online again; then the practitioner opens this patient's room: here.
  okData(await doc.call("room:end", {}), "end the other consultation");
  await hears(pat, "online", "the other consultation ended");
  okData(await doc.call("room:join", { appointmentId: mine.id }), "practitioner opens this room");
  await hears(pat, "here", "practitioner in this room");
  // Leaving this room again, then disconnecting.
  okData(await doc.call("room:leave", {}), "practitioner leaves");
  await hears(pat, "online", "practitioner left the room, still connected");
  doc.close();
  await hears(pat, "offline", "practitioner disconnected");

  // Nothing about this practitioner reached the unrelated patient, the admitted patient heard
  // nothing after the admission, and no message carries more than the status.
  await sleep(300);
  assert.deepEqual(told(outsider), ["offline"], "the unrelated patient heard only their own practitioner, once");
  assert.equal(told(pat2).length, heardByAdmitted, "an admitted patient hears no more presence");
  for (const m of [...pat.received(STATUS), ...pat2.received(STATUS), ...outsider.received(STATUS)]) {
    assert.deepEqual(Object.keys(m), ["status"], `only the status: ${JSON.stringify(m)}`);
  }
  // In order (a state may be repeated when something else changed, e.g. the other room).
  const changes = told(pat).filter((s, i, l) => s !== l[i - 1]);
  assert.deepEqual(changes, ["offline", "online", "busy", "online", "here", "online", "offline"], "the first patient's statuses");
});

test("across two instances on Redis: the patient on A hears the practitioner on B", async () => {
  const { practitioner, patient, appointment } = await ca.pair({ practitioner: "Dr. Remote", patient: "Patient On A" });
  const pat = await peers.connect(a, patient, "patient@A");
  okData(await pat.call("room:join", { appointmentId: appointment.id }), "patient joins on A");
  await hears(pat, "offline", "practitioner not connected anywhere");
  const doc = await peers.connect(b, practitioner, "practitioner@B");
  await hears(pat, "online", "practitioner connected to B");
  okData(await doc.call("room:join", { appointmentId: appointment.id }), "practitioner joins on B");
  await hears(pat, "here", "practitioner in the room, on B");
  // A second patient joining on B (the first's replacement connection, on the other instance)
  // is told the current state on joining.
  const again = await peers.connect(b, patient, "patient@B");
  okData(await again.call("room:join", { appointmentId: appointment.id, resume: true }), "patient joins again on B");
  await hears(again, "here", "the current state on joining, on B");
  doc.close();
  await hears(again, "offline", "practitioner gone from B");
});

test("lobby:admit and room:end: the appointment reads checked-in, then fulfilled, at once on the event and after the ack", async () => {
  for (let i = 0; i < 5; i++) {
    const { practitioner, patient, appointment } = await c.pair({ practitioner: `Dr. End ${i}`, patient: `Patient End ${i}` });
    const doc = await peers.connect(c.control, practitioner, `practitioner ${i}`);
    const pat = await peers.connect(c.control, patient, `patient ${i}`);
    okData(await doc.call("room:join", { appointmentId: appointment.id }), "practitioner joins");
    const pj = okData(await pat.call("room:join", { appointmentId: appointment.id }), "patient joins");
    // The patient reads as soon as lobby:admitted arrives, before the practitioner's ack.
    const readOnAdmitted = new Promise((resolve) => {
      pat.socket.once("lobby:admitted", () => resolve(c.appointmentStatus(appointment.id)));
    });
    okData(await doc.call("lobby:admit", { peerId: pj.peerId }), "admit");
    assert.equal(await c.appointmentStatus(appointment.id), "checked-in", `round ${i}: read after the admit's ack`);
    assert.equal(await readOnAdmitted, "checked-in", `round ${i}: read on lobby:admitted`);
    // The patient reads as soon as room:ended arrives, before the practitioner's ack.
    const readOnEnded = new Promise((resolve) => {
      pat.socket.once("room:ended", () => resolve(c.appointmentStatus(appointment.id)));
    });
    okData(await doc.call("room:end", {}), "end");
    const afterAck = await c.appointmentStatus(appointment.id);
    assert.equal(await readOnEnded, "fulfilled", `round ${i}: read on room:ended`);
    assert.equal(afterAck, "fulfilled", `round ${i}: read after the ack`);
    doc.close();
    pat.close();
  }
});
