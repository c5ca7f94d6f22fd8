// Web Push end to end, checked by code that is not ours: a local push service (node:http)
// receives what teletip-control sends to a subscribed "browser" whose P-256 key pair and auth
// secret are made here as a browser makes them; the VAPID JWT is verified with `jose` against
// GET /v1/push/vapid-public-key, and the body decrypted with `http_ece` (RFC 8188/8291).
// Also: a push service answering 410 removes the subscription; one answering 500 then 201 gets
// the message once, after a retry.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createECDH, randomBytes } from "node:crypto";
import ece from "http_ece";
import { importJWK, jwtVerify } from "jose";
import { Clinic, Peers, okData } from "./lib/clinic.js";
import { RELAXED_LIMITS, sleep } from "./lib/env.js";

/** The push service: records every POST; answers from each path's script (then 201). */
class PushService {
  constructor() {
    this.received = [];
    this.scripts = new Map();
    this.server = createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        const script = this.scripts.get(req.url) || [];
        const status = script.length ? script.shift() : 201;
        this.received.push({ path: req.url, method: req.method, headers: req.headers, body: Buffer.concat(chunks), status });
        res.writeHead(status).end();
      });
    });
  }

  async listen() {
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.origin = `http://127.0.0.1:${this.server.address().port}`;
  }

  at(path) {
    return this.received.filter((r) => r.path === path);
  }

  async until(what, done, timeoutMs = 30000) {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (done()) return;
      await sleep(100);
    }
    throw new Error(`${what}: not within ${timeoutMs} ms; got ${JSON.stringify(this.received.map((r) => [r.path, r.status]))}`);
  }
}

/** What a browser's PushManager.subscribe() makes: a P-256 key pair and a 16-byte secret. */
function browser(endpoint) {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  const auth = randomBytes(16);
  const json = { endpoint, expirationTime: null, keys: { p256dh: ecdh.getPublicKey().toString("base64url"), auth: auth.toString("base64url") } };
  return { ecdh, auth, json, decrypt: (body) => JSON.parse(ece.decrypt(body, { version: "aes128gcm", privateKey: ecdh, authSecret: auth }).toString("utf8")) };
}

const push = new PushService();
const peers = new Peers();
let c;
let vapidKey;
before(async () => {
  await push.listen();
  const extraToml = `${RELAXED_LIMITS}
[notifications]
web-push = true
vapid-subject = "mailto:ops@teletip.test"
web-push-hosts = ["127.0.0.1"]
web-push-allow-http = true
max-attempts = 3
retry-base-seconds = 1
retry-max-seconds = 1
request-timeout-seconds = 2
poll-interval-ms = 100
`;
  c = await Clinic.open({ name: "push", extraToml });
  vapidKey = (await c.api.must("GET", "/v1/push/vapid-public-key")).publicKey;
});
after(async () => {
  peers.closeAll();
  await c?.control.stop();
  push.server.close();
});

/** Checks the VAPID header (RFC 8292) with jose against the served public key. */
async function verifyVapid(req) {
  const m = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(req.headers.authorization || "");
  assert.ok(m, `a vapid Authorization header: ${req.headers.authorization}`);
  assert.equal(m[2], vapidKey, "k is the key served at /v1/push/vapid-public-key");
  const raw = Buffer.from(vapidKey, "base64url");
  const key = await importJWK(
    { kty: "EC", crv: "P-256", x: raw.subarray(1, 33).toString("base64url"), y: raw.subarray(33, 65).toString("base64url") },
    "ES256",
  );
  const { payload, protectedHeader } = await jwtVerify(m[1], key, { algorithms: ["ES256"], audience: push.origin });
  assert.equal(protectedHeader.alg, "ES256");
  assert.equal(payload.sub, "mailto:ops@teletip.test");
  const left = payload.exp - Date.now() / 1000;
  assert.ok(left > 0 && left <= 24 * 3600, `exp within 24 h: ${left} s`);
}

async function subscribe(practitioner, b) {
  const r = await c.api.post("/v1/me/push-subscriptions", practitioner.token, b.json);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

test("a booking and a waiting patient reach the practitioner's browser, signed and encrypted, carrying no names", async () => {
  const practitioner = await c.practitioner("Dr. Elif Kaya");
  const patient = await c.patient("Ayşe Yılmaz");
  const b = browser(`${push.origin}/push/ok`);
  await subscribe(practitioner, b);

  const appointment = await c.appointment(practitioner, patient, -1);
  await push.until("the booking's push", () => push.at("/push/ok").length >= 1);
  const booked = push.at("/push/ok")[0];
  await verifyVapid(booked);
  assert.equal(booked.method, "POST");
  assert.equal(booked.headers["content-encoding"], "aes128gcm");
  assert.equal(booked.headers.ttl, "86400");
  assert.equal(booked.headers.urgency, "normal");
  const body = b.decrypt(booked.body);
  assert.equal(body.type, "appointment.booked");
  assert.equal(body.appointmentId, appointment.id);
  assert.ok(body.link.endsWith(`/?appointment=${appointment.id}`), body.link);
  assert.deepEqual(Object.keys(body).sort(), ["appointmentId", "id", "link", "type"]);
  const text = JSON.stringify(body);
  for (const secret of ["Ayşe", "Yılmaz", "Kaya", patient.email, patient.patientId, "cardiology"]) {
    assert.ok(!text.includes(secret), `the payload holds no ${secret}: ${text}`);
  }
  assert.ok(!booked.body.includes(Buffer.from(appointment.id)), "the body on the wire is encrypted");

  // The patient enters the lobby: urgent, short-lived.
  const pat = await peers.connect(c.control, patient, "patient");
  okData(await pat.call("room:join", { appointmentId: appointment.id }), "patient join");
  await push.until("the lobby's push", () => push.at("/push/ok").some((r) => b.decrypt(r.body).type === "lobby.patient-waiting"));
  const waiting = push.at("/push/ok").find((r) => b.decrypt(r.body).type === "lobby.patient-waiting");
  await verifyVapid(waiting);
  assert.equal(waiting.headers.urgency, "high");
  assert.equal(waiting.headers.ttl, "600");
  assert.equal(b.decrypt(waiting.body).appointmentId, appointment.id);
});

test("a push service answering 410 removes the subscription, audited", async () => {
  const practitioner = await c.practitioner("Dr. Gone");
  const patient = await c.patient("Gone Patient");
  push.scripts.set("/push/gone", [410]);
  const sub = await subscribe(practitioner, browser(`${push.origin}/push/gone`));
  await c.appointment(practitioner, patient, 120);
  await push.until("the attempt at the gone subscription", () => push.at("/push/gone").length >= 1);
  const end = Date.now() + 10000;
  let mine;
  do {
    mine = await c.api.must("GET", "/v1/me/push-subscriptions", practitioner.token);
    if (mine.length === 0) break;
    await sleep(100);
  } while (Date.now() < end);
  assert.deepEqual(mine, [], "the subscription is removed");
  const audited = await c.audit("push.subscription.gone");
  assert.ok(audited.some((e) => e.target === `push-subscription:${sub.id}`), JSON.stringify(audited));
  await sleep(1500);
  assert.equal(push.at("/push/gone").length, 1, "no retry at a gone subscription");
});

test("a push service answering 500 then 201 gets the message once, after a retry", async () => {
  const practitioner = await c.practitioner("Dr. Flaky");
  const patient = await c.patient("Flaky Patient");
  push.scripts.set("/push/flaky", [500]);
  const b = browser(`${push.origin}/push/flaky`);
  await subscribe(practitioner, b);
  const appointment = await c.appointment(practitioner, patient, 180);
  await push.until("the retried push", () => push.at("/push/flaky").length >= 2);
  await sleep(2500);
  const attempts = push.at("/push/flaky");
  assert.deepEqual(attempts.map((r) => r.status), [500, 201], "one failure, one delivery, nothing after");
  const [first, second] = attempts.map((r) => b.decrypt(r.body));
  assert.equal(second.type, "appointment.booked");
  assert.equal(second.appointmentId, appointment.id);
  assert.equal(second.id, first.id, "the same event (its id), encrypted afresh");
  assert.notDeepEqual(attempts[0].body, attempts[1].body);
  const subs = await c.api.must("GET", "/v1/me/push-subscriptions", practitioner.token);
  assert.equal(subs.length, 1, "a failure does not remove the subscription");
});
