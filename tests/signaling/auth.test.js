// The /rtc handshake and token lifetime: connections without, with a bad, an expired or a
// revoked access token are refused with the documented messages; auth:renew extends a
// connection; a token that runs out without renewal gets auth:expired and is disconnected.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Clinic, Peer, okData, forgeToken, decodeJwt } from "./lib/clinic.js";
import { sleep } from "./lib/env.js";

let c;
before(async () => {
  c = await Clinic.open({ name: "auth" });
});
after(async () => {
  await c?.control.stop();
});

async function refused(token, what) {
  const p = new Peer(c.control.base, token, { name: what });
  try {
    const err = await p.connectError();
    return err.message;
  } finally {
    p.close();
  }
}

test("no token: connect_error 'token required'", async () => {
  assert.match(await refused(undefined, "no auth"), /^token required/);
  assert.match(await refused("", "empty token"), /^token required/);
});

test("a garbage or wrongly signed token: 'token refused'", async () => {
  assert.match(await refused("garbage", "garbage"), /^token refused/);
  const u = await c.patient();
  const [h, p] = u.token.split(".");
  assert.match(await refused(`${h}.${p}.${Buffer.from("not the signature").toString("base64url")}`, "bad signature"), /^token refused/);
  // The same claims correctly signed pass: the refusal above was the signature's.
  const ok = await Peer.connect(c.control.base, forgeToken(c.control, u.token, {}), { name: "re-signed" });
  ok.close();
});

test("an expired token: 'token refused (expired)'", async () => {
  const u = await c.patient();
  const now = Math.floor(Date.now() / 1000);
  const expired = forgeToken(c.control, u.token, { iat: now - 700, exp: now - 60 });
  const msg = await refused(expired, "expired");
  assert.match(msg, /^token refused/);
  assert.match(msg, /expired/, msg);
});

test("a token of a logged-out session: 'session ended'", async () => {
  const u = await c.patient();
  // The token works before the logout…
  const before = await Peer.connect(c.control.base, u.token, { name: "before logout" });
  before.close();
  const out = await c.api.post("/v1/auth/logout", u.token);
  assert.equal(out.status, 204, JSON.stringify(out.body));
  // …and not after it, although it has not expired.
  assert.ok(decodeJwt(u.token).payload.exp * 1000 > Date.now() + 60000);
  assert.match(await refused(u.token, "after logout"), /^session ended/);
});

test("a disabled account: 'account disabled'", async () => {
  const u = await c.patient();
  const r = await c.api.req("PATCH", `/v1/users/${u.userId}`, c.admin, { disabled: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  // Disabling revokes the sessions too, so either message is a refusal; the token is not accepted.
  assert.match(await refused(u.token, "disabled"), /^(account disabled|session ended)/);
});

test("auth:renew with a fresh token of the same account; refused for another account or garbage", async () => {
  const u = await c.patient();
  const other = await c.patient();
  const p = await Peer.connect(c.control.base, u.token, { name: "renewer" });
  try {
    const fresh = await c.api.must("POST", "/v1/auth/refresh", null, { refreshToken: u.login.refreshToken });
    const data = okData(await p.call("auth:renew", { token: fresh.accessToken }), "auth:renew");
    assert.ok(Date.parse(data.expiresAt) > Date.now(), `expiresAt in the future: ${data.expiresAt}`);
    assert.ok(Math.abs(Date.parse(data.expiresAt) / 1000 - decodeJwt(fresh.accessToken).payload.exp) <= 1, "expiresAt is the new token's exp");
    const foreign = await p.call("auth:renew", { token: other.token });
    assert.equal(foreign.ok, false, JSON.stringify(foreign));
    assert.equal(foreign.error.code, "forbidden");
    const bad = await p.call("auth:renew", { token: "garbage" });
    assert.equal(bad.ok, false, JSON.stringify(bad));
    const malformed = await p.call("auth:renew", {});
    assert.equal(malformed.ok, false);
    assert.equal(malformed.error.code, "invalid");
    assert.ok(p.socket.connected, "refused renewals do not disconnect");
  } finally {
    p.close();
  }
});

test("a token that runs out gets auth:expired and is disconnected; a renewed one stays", async () => {
  const u = await c.patient();
  const now = Math.floor(Date.now() / 1000);
  const short = forgeToken(c.control, u.token, { iat: now, exp: now + 3 });
  const lapsing = await Peer.connect(c.control.base, short, { name: "lapsing" });
  const renewed = await Peer.connect(c.control.base, short, { name: "renewed" });
  try {
    okData(await renewed.call("auth:renew", { token: u.token }), "auth:renew");
    await lapsing.waitFor("auth:expired", () => true, 20000);
    const reason = await lapsing.waitFor("disconnect", () => true, 5000);
    assert.equal(reason, "io server disconnect");
    await sleep(1500);
    assert.ok(renewed.socket.connected, "the renewed connection is still up");
    assert.equal(renewed.received("auth:expired").length, 0);
  } finally {
    lapsing.close();
    renewed.close();
  }
});
