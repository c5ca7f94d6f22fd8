// An event sent the moment the socket is connected must be handled and acknowledged (the web
// client sends room:join from its connect handler, and again on every reconnect). Repeated,
// because a lost event is a race: socketioxide sends CONNECT before it runs the (spawned) connect
// handler, so event handlers registered there could miss the first packets; the server
// registers them in the handshake middleware instead.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Clinic, Peer } from "./lib/clinic.js";

let c;
before(async () => {
  c = await Clinic.open({ name: "connect" });
});
after(async () => {
  await c?.control.stop();
});

test("an event emitted right after connect is always acknowledged", async () => {
  const u = await c.patient();
  const lost = [];
  const rounds = 250;
  for (let i = 0; i < rounds; i++) {
    const p = new Peer(c.control.base, u.token, { name: `quick-${i}`, transports: i % 5 === 0 ? ["polling", "websocket"] : ["websocket"] });
    try {
      await p.connected();
      // Emitted in the same tick as the connect event, as the web client does.
      const ack = await p.call("auth:renew", { token: u.token }, 2000).catch((e) => ({ lost: e.message }));
      if (!ack || ack.ok !== true) lost.push({ i, ack });
    } finally {
      p.close();
    }
  }
  assert.deepEqual(lost, [], `${lost.length} of ${rounds} events sent right after connect got no acknowledgement`);
});
