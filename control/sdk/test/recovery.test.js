import { test } from "node:test";
import assert from "node:assert/strict";
import { RecoveryPolicy, diagnose, CallError, FAILURE_ADVICE } from "../dist/index.js";

test("a failure is met first by an ICE restart, then by new connections after a doubling, capped wait, then it stops", () => {
  const p = new RecoveryPolicy({ maxNewConnectionsPerMinute: 4, initialBackoffMs: 1000, maxBackoffMs: 3000 });
  let now = 0;
  assert.ok(p.mayCreate(now));
  p.recordCreated(now);
  assert.deepEqual(p.onFailure(now, true), { action: "ice-restart" });
  const steps = [];
  for (;;) {
    now += 5000;
    const step = p.onFailure(now, true);
    steps.push(step);
    if (step.action !== "new-connection") break;
    now += step.delayMs;
    p.recordCreated(now);
    now += 5000;
    assert.deepEqual(p.onFailure(now, true), { action: "ice-restart" }, "each new connection gets its ICE restart");
  }
  assert.deepEqual(steps, [
    { action: "new-connection", delayMs: 1000 },
    { action: "new-connection", delayMs: 2000 },
    { action: "new-connection", delayMs: 3000 },
    { action: "give-up" },
  ]);
  assert.equal(p.createdInLastMinute(now), 4);
});

test("the budget is a sliding minute: an hour of failures makes at most N connections a minute", () => {
  const p = new RecoveryPolicy({ maxNewConnectionsPerMinute: 3, initialBackoffMs: 0, maxBackoffMs: 0 });
  const made = [];
  for (let now = 0; now < 3_600_000; now += 500) {
    if (p.mayCreate(now)) {
      p.recordCreated(now);
      made.push(now);
    }
  }
  for (const t of made) assert.ok(made.filter((u) => u > t - 60_000 && u <= t).length <= 3);
  assert.ok(made.length <= 3 * 61);
});

test("a connection that worked resets the restart and the backoff, not the budget", () => {
  const p = new RecoveryPolicy({ maxNewConnectionsPerMinute: 2, initialBackoffMs: 1000, maxBackoffMs: 8000 });
  p.recordCreated(0);
  assert.equal(p.onFailure(10, true).action, "ice-restart");
  assert.deepEqual(p.onFailure(20, true), { action: "new-connection", delayMs: 1000 });
  p.recordCreated(1020);
  p.recordConnected();
  assert.equal(p.onFailure(2000, true).action, "ice-restart");
  assert.deepEqual(p.onFailure(3000, true), { action: "give-up" }, "two connections in the minute already");
  assert.deepEqual(p.onFailure(60_000, true), { action: "new-connection", delayMs: 1000 }, "the first one has left the window by the time the wait ends");
});

test("bad limits are refused", () => {
  assert.throws(() => new RecoveryPolicy({ maxNewConnectionsPerMinute: 0, initialBackoffMs: 0, maxBackoffMs: 0 }), RangeError);
  assert.throws(() => new RecoveryPolicy({ maxNewConnectionsPerMinute: 1, initialBackoffMs: 5, maxBackoffMs: 1 }), RangeError);
});

test("each failure cause is told apart, with a plain message and a way forward", () => {
  const base = { now: 1000, credentialsExpireAt: 2000, candidateErrorCodes: [], relayCandidateSeen: true, peerPresent: true, networkChanged: false };
  assert.equal(diagnose(base), "media-path-failed");
  assert.equal(diagnose({ ...base, peerPresent: false }), "peer-left");
  assert.equal(diagnose({ ...base, now: 2000 }), "credentials-expired");
  assert.equal(diagnose({ ...base, candidateErrorCodes: [701, 401] }), "credentials-revoked");
  assert.equal(diagnose({ ...base, candidateErrorCodes: [486] }), "relay-full");
  assert.equal(diagnose({ ...base, candidateErrorCodes: [508] }), "relay-full");
  assert.equal(diagnose({ ...base, networkChanged: true }), "network-changed");
  assert.equal(diagnose({ ...base, relayCandidateSeen: false, candidateErrorCodes: [701] }), "relay-unreachable");
  for (const [cause, advice] of Object.entries(FAILURE_ADVICE)) {
    const e = new CallError(cause, "detail");
    assert.equal(e.cause, cause);
    assert.ok(e.message.startsWith(advice.message));
    assert.ok(e.nextStep.length > 10);
  }
});
