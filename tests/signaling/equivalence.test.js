// The two doors into a consultation, POST /v1/appointments/{id}/session (HTTP) and room:join on
// /rtc (Socket.IO), are one rule (control/src/domain/consultation.rs): for every refusal
// reason, and for a caller failing two checks, both give the same decision (each in its own
// words: an HTTP status, a Socket.IO code), the same audit outcome, and the same first reason.
//
// Written here rather than in Rust: socket.io-client is already this suite's client, and the
// control tests would need a second Socket.IO client crate built on a shared machine for one
// test. The window's far side ("closed") needs the time to pass: the test clock
// (TELETIP_CONTROL_TEST_CLOCK, an offset file honoured by debug builds) moves it instead.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Clinic, Peer, Peers } from "./lib/clinic.js";
import { ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, tempDir } from "./lib/env.js";

const clockFile = join(tempDir(), "clock-offset");
process.env.TELETIP_CONTROL_TEST_CLOCK = clockFile;
const setClock = (minutes) => writeFileSync(clockFile, `${Math.round(minutes * 60)}\n`);
setClock(0);

/** Each reason in both transports' words (the translation tables of session.rs and handlers.rs). */
const REASONS = {
  "not a participant": { http: 403, socket: "forbidden", outcome: "denied" },
  status: { http: 409, socket: "conflict", outcome: "refused:status" },
  "consent missing": { http: 403, socket: "consent-required", outcome: "refused:consent" },
  "too early": { http: 403, socket: "closed", outcome: "refused:too-early" },
  closed: { http: 403, socket: "closed", outcome: "refused:closed" },
  success: { http: 200, socket: null, outcome: "success" },
};

let c;
const peers = new Peers();
before(async () => {
  c = await Clinic.open({ name: "equivalence" });
  await c.api.must("POST", "/v1/privacy-notices", c.admin, {
    version: "eq-1",
    language: "tr",
    title: "Aydınlatma metni",
    body: "Sağlık verileriniz yalnızca görüntülü muayene için işlenir.",
    purposes: [{ code: "health-data-processing", required: true, description: "the video consultation" }],
  });
});
after(async () => {
  peers.closeAll();
  await c?.control.stop();
});

async function consentingPatient(name) {
  const p = await c.patient(name);
  await c.api.must("POST", "/v1/me/consents", p.token, { noticeVersion: "eq-1", purpose: "health-data-processing", decision: "given" });
  return p;
}

/**
 * Asks both doors for `user` at the current test clock, with fresh credentials (a login at the
 * moved time), and returns each answer and each new audit row.
 */
async function askBoth(user, appointment) {
  const token = (await c.api.login(user.email, user.password || PASSWORD)).accessToken;
  const http = await c.api.post(`/v1/appointments/${appointment.id}/session`, token, {});
  const peer = await peers.connect(c.control, { ...user, token }, "asker");
  const ack = await peer.call("room:join", { appointmentId: appointment.id });
  peer.close();
  const mine = (e) => e.target === appointment.id && e.actor === user.userId;
  const httpAudit = (await c.audit("consultation.session")).filter(mine);
  const socketAudit = (await c.audit("consultation.join")).filter(mine);
  return { http, ack, httpAudit, socketAudit };
}

/** The reason each door gave, by its translation table. */
function reasonOf({ http, ack }) {
  const fromHttp = Object.entries(REASONS).filter(([, r]) => r.http === http.status && (http.status === 200 || http.body?.detail));
  const fromSocket = Object.entries(REASONS).filter(([, r]) => (ack.ok ? r.socket === null : r.socket === ack.error.code));
  return { fromHttp: fromHttp.map(([k]) => k), fromSocket: fromSocket.map(([k]) => k) };
}

async function expectSame(what, user, appointment, reason) {
  const r = await askBoth(user, appointment);
  const want = REASONS[reason];
  const { fromHttp, fromSocket } = reasonOf(r);
  assert.ok(fromHttp.includes(reason), `${what}: HTTP ${r.http.status} ${JSON.stringify(r.http.body)} is not "${reason}"`);
  assert.ok(fromSocket.includes(reason), `${what}: room:join ${JSON.stringify(r.ack)} is not "${reason}"`);
  // One audit row per door, with the same outcome (a success names how the room took the caller in).
  assert.equal(r.httpAudit.length, 1, `${what}: one consultation.session row: ${JSON.stringify(r.httpAudit)}`);
  assert.equal(r.socketAudit.length, 1, `${what}: one consultation.join row: ${JSON.stringify(r.socketAudit)}`);
  const [h, s] = [r.httpAudit[0].outcome, r.socketAudit[0].outcome];
  if (reason === "success") {
    assert.ok(h === "success" && s.startsWith("success:"), `${what}: ${h} / ${s}`);
  } else {
    assert.equal(h, want.outcome, `${what}: HTTP audit outcome`);
    assert.equal(s, want.outcome, `${what}: Socket.IO audit outcome`);
    // The same words too: both doors tell the caller the rule's message.
    assert.equal(r.http.body.detail, r.ack.error.message, `${what}: the same message`);
  }
}

test("each refusal reason and the success: the same decision and audit row over HTTP and Socket.IO", async () => {
  const doctor = await c.practitioner();
  const patient = await consentingPatient("Ayşe Yılmaz");
  const now = await c.appointment(doctor, patient, -1, 30);
  await expectSame("a participant inside the window", patient, now, "success");
  await expectSame("its practitioner inside the window", doctor, now, "success");

  await expectSame("another patient", await consentingPatient("Stranger"), now, "not a participant");
  await expectSame("the clinic's admin", await adminUser(), now, "not a participant");

  const cancelled = await c.appointment(doctor, patient, 60, 30);
  await c.api.must("POST", `/v1/appointments/${cancelled.id}/cancel`, c.admin, { reason: "patient called" });
  await expectSame("a cancelled appointment", patient, cancelled, "status");

  const unconsented = await c.patient("Without Consent");
  await expectSame("a patient without consent", unconsented, await c.appointment(doctor, unconsented, 120, 30), "consent missing");

  await expectSame("three hours ahead", patient, await c.appointment(doctor, patient, 180, 30), "too early");

  const past = await c.appointment(doctor, patient, 240, 20);
  setClock(240 + 20 + 31); // the end plus join-after-minutes (30), and a minute
  try {
    await expectSame("after the window closed", patient, past, "closed");
  } finally {
    setClock(0);
  }
});

test("a caller failing two checks gets the same first reason on both doors", async () => {
  const doctor = await c.practitioner("Dr. Order");
  const patient = await consentingPatient("Order Patient");
  const stranger = await consentingPatient("Order Stranger");
  const cancelledEarly = await c.appointment(doctor, patient, 300, 30);
  await c.api.must("POST", `/v1/appointments/${cancelledEarly.id}/cancel`, c.admin, { reason: "moved" });
  // Not a participant, and cancelled, and too early: not a participant.
  await expectSame("a stranger to a cancelled, future appointment", stranger, cancelledEarly, "not a participant");
  // Cancelled and too early: the status.
  await expectSame("a cancelled, future appointment", patient, cancelledEarly, "status");
  // Without consent and too early: the consent (the patient can fix it before the room opens).
  const unconsented = await c.patient("Early Without Consent");
  await expectSame("early and without consent", unconsented, await c.appointment(doctor, unconsented, 360, 30), "consent missing");
});

/** The admin as a user of askBoth: its id from its own profile. */
async function adminUser() {
  const me = await c.api.must("GET", "/v1/me", c.admin);
  return { email: ADMIN_EMAIL, password: ADMIN_PASSWORD, userId: me.id };
}
