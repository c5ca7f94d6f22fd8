// The join window and the appointment's status: too early is `closed` with the opening time,
// a cancelled appointment is a `conflict`; both refusals are audited.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Clinic, Peer, errorOf, okData, iso } from "./lib/clinic.js";

let c;
const open = [];
before(async () => {
  c = await Clinic.open({ name: "window" });
});
after(async () => {
  for (const p of open) p.close();
  await c?.control.stop();
});

test("three hours ahead: closed, and the message says when the room opens", async () => {
  const practitioner = await c.practitioner();
  const patient = await c.patient();
  const appointment = await c.appointment(practitioner, patient, 180, 30);
  const opensAt = Date.parse(appointment.start) - 15 * 60000; // the default join-before-minutes
  for (const [who, user] of [["patient", patient], ["practitioner", practitioner]]) {
    const p = await Peer.connect(c.control.base, user.token, { name: who });
    open.push(p);
    const err = errorOf(await p.call("room:join", { appointmentId: appointment.id }), "closed", `${who} too early`);
    // The opening time, as RFC 3339 (seconds and a fraction optional).
    const at = iso(opensAt).slice(0, 16); // YYYY-MM-DDTHH:MM
    assert.ok(err.message.includes(at), `"${err.message}" names the opening time ${iso(opensAt)}`);
    assert.match(err.message, /open/i);
    errorOf(await p.call("signal:offer", { to: "x", sdp: "v=0" }), "not-joined", "a refused join joins nothing");
  }
  const refused = (await c.audit("consultation.join")).filter((e) => e.target === appointment.id);
  assert.ok(refused.length >= 2 && refused.every((e) => e.outcome.startsWith("refused")), JSON.stringify(refused));
  assert.equal(await c.appointmentStatus(appointment.id), "booked", "a refused join does not mark arrival");
});

test("a cancelled appointment has no consultation: conflict", async () => {
  const { practitioner, patient, appointment } = await c.pair();
  await c.api.must("POST", `/v1/appointments/${appointment.id}/cancel`, c.admin, { reason: "patient called" });
  const p = await Peer.connect(c.control.base, patient.token, { name: "patient" });
  open.push(p);
  errorOf(await p.call("room:join", { appointmentId: appointment.id }), "conflict", "join a cancelled appointment");
  const d = await Peer.connect(c.control.base, practitioner.token, { name: "practitioner" });
  open.push(d);
  errorOf(await d.call("room:join", { appointmentId: appointment.id }), "conflict", "practitioner joins a cancelled appointment");
  // docs/signaling.md: "Audited: every join (and refused join)".
  const refused = (await c.audit("consultation.join")).filter((e) => e.target === appointment.id);
  assert.equal(refused.length, 2, `both refused joins are audited: ${JSON.stringify(refused)}`);
  assert.ok(refused.every((e) => !e.outcome.startsWith("success")), JSON.stringify(refused));
});

test("inside the window (started 3 to 4 minutes ago): joins, closesAt is the end plus 30 minutes", async () => {
  const practitioner = await c.practitioner();
  const patient = await c.patient();
  const appointment = await c.appointment(practitioner, patient, -3, 20);
  const p = await Peer.connect(c.control.base, patient.token, { name: "patient" });
  open.push(p);
  const j = okData(await p.call("room:join", { appointmentId: appointment.id }));
  assert.equal(Date.parse(j.closesAt), Date.parse(appointment.end) + 30 * 60000);
});
