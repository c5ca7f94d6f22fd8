// A clinic over the HTTP API (as control/tests/support/clinic.rs builds it): an admin from the
// CLI, practitioners and patients with accounts and records, appointments booked by the admin.
// And Socket.IO helpers: connect to /rtc, emit with an acknowledgement, record every event.

import { randomBytes, createHmac, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { io } from "socket.io-client";
import { ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, Control } from "./env.js";

export class Api {
  constructor(base) {
    this.base = base;
  }

  async req(method, path, token, body) {
    const headers = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${this.base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: res.status, body: json, headers: res.headers };
  }

  get(path, token) {
    return this.req("GET", path, token);
  }

  post(path, token, body = {}) {
    return this.req("POST", path, token, body);
  }

  async must(method, path, token, body, expected = [200, 201, 204]) {
    const r = await this.req(method, path, token, body);
    if (!expected.includes(r.status)) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  login(email, password) {
    return this.must("POST", "/v1/auth/login", null, { email, password });
  }
}

const uniq = () => randomBytes(4).toString("hex");

/** RFC 3339 with whole seconds. */
export function iso(ms) {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

export class Clinic {
  /** Starts a control instance (or uses the given one), creates the admin, logs in. */
  static async open(options = {}) {
    const control = options.control || (await Control.start(options));
    if (!options.control && !options.skipAdmin) control.createAdmin();
    const c = new Clinic();
    c.control = control;
    c.api = new Api(control.base);
    c.admin = (await c.api.login(ADMIN_EMAIL, ADMIN_PASSWORD)).accessToken;
    return c;
  }

  /** A fresh admin token (for instances with short access tokens). */
  async relogin() {
    this.admin = (await this.api.login(ADMIN_EMAIL, ADMIN_PASSWORD)).accessToken;
  }

  /** The same clinic (database, accounts) seen through another instance. */
  async via(control) {
    const c = new Clinic();
    c.control = control;
    c.api = new Api(control.base);
    c.admin = (await c.api.login(ADMIN_EMAIL, ADMIN_PASSWORD)).accessToken;
    return c;
  }

  async user(role, name) {
    const email = `${role}-${uniq()}@teletip.test`;
    const u = await this.api.must("POST", "/v1/users", this.admin, { email, displayName: name, role, password: PASSWORD });
    const login = await this.api.login(email, PASSWORD);
    return { email, userId: u.id, token: login.accessToken, login, name };
  }

  async practitioner(name = "Dr. Elif Kaya") {
    const u = await this.user("practitioner", name);
    const p = await this.api.must("POST", "/v1/practitioners", this.admin, {
      displayName: name,
      specialty: "cardiology",
      timeZone: "Europe/Istanbul",
      userId: u.userId,
    });
    // Without a working pattern nothing is bookable: every whole minute a slot boundary.
    await this.api.must("PUT", `/v1/practitioners/${p.id}/availability`, this.admin, allHours());
    return { ...u, practitionerId: p.id };
  }

  async patient(name = "Ayşe Yılmaz") {
    const u = await this.user("patient", name);
    const p = await this.api.must("POST", "/v1/patients", u.token, { displayName: name, userId: u.userId });
    return { ...u, patientId: p.id };
  }

  /** An appointment booked by the admin, starting `startsInMinutes` from the current whole
   * minute (`minutes` a multiple of 10: the slots of `allHours`). */
  async appointment(practitioner, patient, startsInMinutes = -1, minutes = 30) {
    const start = Math.floor(Date.now() / 60000) * 60000 + startsInMinutes * 60000;
    return this.api.must("POST", "/v1/appointments", this.admin, {
      practitionerId: practitioner.practitionerId,
      patientId: patient.patientId,
      start: iso(start),
      end: iso(start + minutes * 60000),
    });
  }

  /** A practitioner, a patient and an appointment open for joining now. */
  async pair(names = {}) {
    const practitioner = await this.practitioner(names.practitioner);
    const patient = await this.patient(names.patient);
    const appointment = await this.appointment(practitioner, patient);
    return { practitioner, patient, appointment };
  }

  async appointmentStatus(id) {
    return (await this.api.must("GET", `/v1/appointments/${id}`, this.admin)).status;
  }

  /** Audit events of one action, newest first; `chain` is the hash chain's verification. */
  async audit(action) {
    const page = await this.api.must("GET", `/v1/audit?action=${encodeURIComponent(action)}&limit=500`, this.admin);
    this.lastChain = page.chain;
    return page.events;
  }
}

// ---------------------------------------------------------------------------------------------
// Socket.IO
// ---------------------------------------------------------------------------------------------

/** A /rtc client that records every server event it receives. */
/** The peers one test file opens, closed together when it ends. */
export class Peers {
  constructor() {
    this.open = [];
  }

  async connect(control, user, name) {
    const p = await Peer.connect(control.base, user.token, { name });
    this.open.push(p);
    return p;
  }

  closeAll() {
    for (const p of this.open) p.close();
  }
}

export class Peer {
  constructor(base, token, { name = "peer", transports = ["websocket"] } = {}) {
    this.name = name;
    this.events = [];
    this.waiters = [];
    this.socket = io(`${base}/rtc`, {
      auth: token === undefined ? undefined : { token },
      transports,
      reconnection: false,
      forceNew: true,
      timeout: 10000,
    });
    this.socket.onAny((event, ...args) => {
      const ev = { event, data: args[0], at: Date.now() };
      this.events.push(ev);
      for (const w of [...this.waiters]) w(ev);
    });
    this.socket.on("disconnect", (reason) => {
      const ev = { event: "disconnect", data: reason, at: Date.now() };
      this.events.push(ev);
      for (const w of [...this.waiters]) w(ev);
    });
  }

  /** Resolves on connect; rejects with the connect_error. */
  static async connect(base, token, opts) {
    const p = new Peer(base, token, opts);
    await p.connected();
    return p;
  }

  connected() {
    return new Promise((res, rej) => {
      if (this.socket.connected) return res(this);
      const ok = () => {
        this.socket.off("connect_error", bad);
        res(this);
      };
      const bad = (err) => {
        this.socket.off("connect", ok);
        rej(err);
      };
      this.socket.once("connect", ok);
      this.socket.once("connect_error", bad);
    });
  }

  /** The connect_error's message, or a failure if it connected. */
  connectError() {
    return new Promise((res, rej) => {
      this.socket.once("connect", () => rej(new Error(`${this.name} connected but should have been refused`)));
      this.socket.once("connect_error", (err) => res(err));
    });
  }

  get id() {
    return this.socket.id;
  }

  /** Emits and resolves with the acknowledgement. */
  async call(event, payload = {}, timeoutMs = 10000) {
    try {
      return await this.socket.timeout(timeoutMs).emitWithAck(event, payload);
    } catch (e) {
      const shown = JSON.stringify(payload).slice(0, 200);
      throw new Error(`${this.name}: ${event} ${shown}: ${e.message}`);
    }
  }

  /** The first recorded event (past or future) that matches. */
  waitFor(event, pred = () => true, timeoutMs = 10000) {
    const found = this.events.find((e) => e.event === event && pred(e.data));
    if (found) return Promise.resolve(found.data);
    return new Promise((res, rej) => {
      const waiter = (e) => {
        if (e.event === event && pred(e.data)) {
          clearTimeout(timer);
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          res(e.data);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        rej(new Error(`${this.name}: no ${event} within ${timeoutMs} ms; got ${JSON.stringify(this.events.map((x) => x.event))}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  received(event) {
    return this.events.filter((e) => e.event === event).map((e) => e.data);
  }

  close() {
    this.socket.close();
  }
}

/** Expects an acknowledgement `{ok: true}`; returns its data. */
export function okData(ack, what = "ack") {
  if (!ack || ack.ok !== true) throw new Error(`${what}: expected ok, got ${JSON.stringify(ack)}`);
  return ack.data;
}

/** Expects an acknowledgement `{ok: false, error: {code}}`; returns the error. */
export function errorOf(ack, code, what = "ack") {
  if (!ack || ack.ok !== false || !ack.error || ack.error.code !== code) {
    throw new Error(`${what}: expected error ${code}, got ${JSON.stringify(ack)}`);
  }
  if (typeof ack.error.message !== "string") throw new Error(`${what}: the error has no message: ${JSON.stringify(ack)}`);
  return ack.error;
}

// ---------------------------------------------------------------------------------------------
// Tokens made here with the instance's own key (data-dir/jwt.key): an expired one, a short one
// ---------------------------------------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString("base64url");

export function decodeJwt(token) {
  const [h, p] = token.split(".");
  return { header: JSON.parse(Buffer.from(h, "base64url")), payload: JSON.parse(Buffer.from(p, "base64url")) };
}

/** Re-signs a real access token's claims with changes, using the generated HS256 key. */
export function forgeToken(control, token, changes) {
  const line = readFileSync(join(control.dataDir, "jwt.key"), "utf8")
    .split("\n")
    .find((l) => l.trim() && !l.startsWith("#"));
  const eq = line.indexOf("=");
  const kid = line.slice(0, eq).trim();
  const secret = line.slice(eq + 1).trim();
  const { header, payload } = decodeJwt(token);
  const h = b64url(JSON.stringify({ ...header, kid }));
  const p = b64url(JSON.stringify({ ...payload, jti: randomUUID(), ...changes }));
  const sig = createHmac("sha256", secret).update(`${h}.${p}`).digest("base64url");
  return `${h}.${p}.${sig}`;
}

/** A working pattern on which every whole minute is a slot boundary: ten runs of extra hours
 * from 2000 to 2100 with 10-minute slots, offset by 0 to 9 minutes (a practitioner without a
 * pattern is not bookable). */
export function allHours() {
  const exceptions = [];
  for (let m = 0; m < 10; m++) {
    exceptions.push({ kind: "extraHours", from: `2000-01-01T00:0${m}:00Z`, to: "2100-01-01T00:00:00Z", slotMinutes: 10 });
  }
  return { rules: [], exceptions };
}
