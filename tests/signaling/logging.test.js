// SDP and ICE candidates carry IP addresses: the server relays them and never logs them. A
// whole consultation (and refused and malformed signals) with distinctive markers in every SDP
// and candidate; then the control process's entire stdout and stderr must not contain them.
// The instance logs at debug level for teletip_control, more than production's info, in JSON
// (log-format = "json"): every line must parse, and no line may hold an e-mail address, a
// name, a password or a token of the run (issue 22).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Clinic, Peer, okData } from "./lib/clinic.js";
import { ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, RELAXED_LIMITS } from "./lib/env.js";

let c;
const open = [];
before(async () => {
  c = await Clinic.open({ name: "logging", rustLog: "info,teletip_control=debug", extraToml: `log-format = "json"\n${RELAXED_LIMITS}` });
});
after(async () => {
  for (const p of open) p.close();
  await c?.control.stop();
});

test("no SDP or candidate reaches the logs", async () => {
  const marker = `SDPMARK${randomBytes(6).toString("hex")}`;
  const ip = "198.51.100.77"; // TEST-NET-2: appears nowhere else
  const sdp = (kind) => `v=0\r\no=- 1 2 IN IP4 ${ip}\r\ns=${marker}-${kind}\r\nc=IN IP4 ${ip}\r\nt=0 0\r\na=candidate:1 1 udp 2122260223 ${ip} 50000 typ host\r\n`;
  const candidate = { candidate: `candidate:${marker} 1 udp 2122260223 ${ip} 50001 typ host`, sdpMid: "0", sdpMLineIndex: 0 };

  const { practitioner, patient, appointment } = await c.pair();
  const doc = await Peer.connect(c.control.base, practitioner.token, { name: "practitioner" });
  const pat = await Peer.connect(c.control.base, patient.token, { name: "patient" });
  open.push(doc, pat);
  const dj = okData(await doc.call("room:join", { appointmentId: appointment.id }));
  const pj = okData(await pat.call("room:join", { appointmentId: appointment.id }));
  // Refused while waiting, and malformed: the refusal must not log the payload either.
  await pat.call("signal:offer", { to: dj.peerId, sdp: sdp("refused") });
  await doc.call("signal:offer", { to: pj.peerId, sdp: sdp("to-lobby") });
  await doc.call("signal:offer", { to: 42, sdp: sdp("malformed") });
  await doc.call("signal:candidate", { to: pj.peerId, candidate, extra: sdp("unknown-field") });
  okData(await doc.call("lobby:admit", { peerId: pj.peerId }));
  await pat.waitFor("lobby:admitted");
  okData(await doc.call("signal:offer", { to: pj.peerId, sdp: sdp("offer") }));
  okData(await pat.call("signal:answer", { to: dj.peerId, sdp: sdp("answer") }));
  okData(await doc.call("signal:candidate", { to: pj.peerId, candidate }));
  okData(await pat.call("signal:candidate", { to: dj.peerId, candidate }));
  await doc.call("signal:offer", { to: "no-such-peer", sdp: sdp("unknown-peer") });
  await pat.waitFor("signal:candidate");
  assert.ok((await pat.waitFor("signal:offer")).sdp.includes(marker), "the marker did travel");
  okData(await doc.call("room:end", {}));
  pat.close();
  doc.close();

  await c.control.stop();
  const log = await c.control.output();
  assert.ok(log.length > 0, "the log was captured");
  assert.ok(log.includes("listening on"), "the capture is the control process's output");
  assert.ok(!log.includes(marker), `SDP or candidate text in the control log:\n${log.split("\n").filter((l) => l.includes(marker)).join("\n")}`);
  assert.ok(!log.includes(ip), `a candidate address in the control log:\n${log.split("\n").filter((l) => l.includes(ip)).join("\n")}`);
  // The log lines are JSON (stdout's one "listening on" line aside), and none holds personal
  // data or a secret of the run.
  const lines = log.split("\n").filter((l) => l.trim() && !l.startsWith("teletip-control listening on"));
  for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `not a JSON log line: ${line}`);
  const secrets = [ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, c.admin];
  for (const who of [practitioner, patient]) {
    secrets.push(who.email, who.name, who.token, who.login.refreshToken);
  }
  for (const secret of secrets.filter(Boolean)) {
    assert.ok(!log.includes(secret), `${secret} in the control log:\n${lines.filter((l) => l.includes(secret)).join("\n")}`);
  }
  // And none in the audit trail either.
  const c2 = await Clinic.open({ name: "logging-audit", databaseUrl: c.control.databaseUrl, dataDir: c.control.dataDir, skipAdmin: true });
  try {
    const all = await c2.api.must("GET", "/v1/audit?limit=1000", c2.admin);
    assert.ok(all.events.some((e) => e.action === "consultation.admit"), "the trail holds the consultation");
    assert.ok(!JSON.stringify(all).includes(marker), "no SDP in the audit trail");
  } finally {
    await c2.control.stop();
  }
});
