// A role that must use two-factor authentication (auth.mfa-required-roles): until the account
// enrolls a TOTP second factor, its session is refused at the /rtc handshake with the
// enrollment message; once a code from the app confirms the enrollment, the same session
// connects. Codes are computed here (RFC 6238, HMAC-SHA-1) as an authenticator app does.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { Clinic, Peer } from "./lib/clinic.js";
import { RELAXED_LIMITS, sleep } from "./lib/env.js";

let c;
before(async () => {
  c = await Clinic.open({ name: "mfa", extraToml: `${RELAXED_LIMITS}\n[auth]\nmfa-required-roles = ["practitioner"]\n` });
});
after(async () => {
  await c?.control.stop();
});

function base32Decode(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of text.replace(/=+$/, "")) bits += alphabet.indexOf(ch).toString(2).padStart(5, "0");
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function totp(secret, unixSeconds = Math.floor(Date.now() / 1000)) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSeconds / 30)));
  const digest = createHmac("sha1", base32Decode(secret)).update(counter).digest();
  const at = digest[19] & 0x0f;
  return String((digest.readUInt32BE(at) & 0x7fffffff) % 1000000).padStart(6, "0");
}

test("a practitioner without MFA is refused at /rtc until the enrollment is confirmed", async () => {
  const u = await c.user("practitioner", "Dr. Elif Kaya");
  assert.equal(u.login.mfaEnrollmentRequired, true);
  const p = new Peer(c.control.base, u.token, { name: "not enrolled" });
  try {
    const err = await p.connectError();
    assert.match(err.message, /two-factor authentication/, err.message);
  } finally {
    p.close();
  }
  const ice = await c.api.req("POST", "/v1/ice/credentials", u.token, {});
  assert.equal(ice.status, 403);
  assert.equal(ice.body.type, "/problems/mfa-enrollment-required");

  const enrollment = await c.api.must("POST", "/v1/auth/mfa/enroll", u.token, {});
  assert.match(enrollment.otpauthUri, /^otpauth:\/\/totp\//);
  // Not at the edge of a 30-s step, so the code is checked in the step it was made for.
  while (Math.floor(Date.now() / 1000) % 30 >= 27) await sleep(200);
  const confirmed = await c.api.must("POST", "/v1/auth/mfa/confirm", u.token, { code: totp(enrollment.secret) });
  assert.equal(confirmed.recoveryCodes.length, 10);
  const ok = await Peer.connect(c.control.base, u.token, { name: "enrolled" });
  ok.close();
});
