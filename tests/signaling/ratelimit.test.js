// Two control instances on one Redis share their rate limits: a client that spreads its login
// attempts over both instances (as a load balancer does) meets the same per-address bucket, not
// one bucket per instance. Without Redis each instance would let its own burst through.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Control, redisUrl, tempDir, freshDatabase } from "./lib/env.js";

// A burst of 4 per address, refilled at 1 per second: each instance alone would take 4.
const LIMITS = `[rate-limit]
per-ip-per-second = 1
per-ip-burst = 4
per-account-per-second = 1
per-account-burst = 4
`;

let a;
let b;
before(async () => {
  const redis = await redisUrl();
  const dir = tempDir("teletip-ratelimit-");
  const databaseUrl = freshDatabase(dir);
  const dataDir = join(dir, "data");
  a = await Control.start({ name: "limits-a", dir, databaseUrl, dataDir, redisUrl: redis, extraToml: LIMITS });
  b = await Control.start({ name: "limits-b", dir, databaseUrl, dataDir, redisUrl: redis, extraToml: LIMITS });
});
after(async () => {
  await a?.stop();
  await b?.stop();
});

/** A login attempt that fails fast (an empty body): the limit counts it all the same. */
async function attempt(instance) {
  const res = await fetch(instance.url("/v1/auth/login"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  return { status: res.status, body: await res.json() };
}

test("both instances say they share their rate limits through Redis", async () => {
  for (const inst of [a, b]) assert.match(await inst.output(), /rate limits are shared with the other instances through Redis/, inst.name);
});

test("login attempts spread over two instances meet one per-address bucket", async () => {
  const passed = [];
  let refused;
  for (let i = 0; i < 10 && !refused; i++) {
    const r = await attempt(i % 2 === 0 ? a : b);
    if (r.status === 429) refused = r;
    else passed.push(r.status);
  }
  assert.ok(refused, `no 429 after ${passed.length} attempts over two instances`);
  // 4 (the burst), or 5 if a second went by and refilled one; one bucket per instance would
  // have let 8 through.
  assert.ok(passed.length >= 4 && passed.length <= 5, `passed before the first 429: ${passed.length} (${passed})`);
  assert.ok(passed.every((s) => s === 400 || s === 422), `the attempts that passed reached the handler: ${passed}`);
  assert.equal(refused.body.type, "/problems/rate-limited");
  assert.equal(refused.body.status, 429);
  // Each instance has seen at most 3 of its own: only the shared bucket is empty, on both.
  assert.equal((await attempt(a)).status, 429, "instance A refuses too");
  assert.equal((await attempt(b)).status, 429, "instance B refuses too");
});
