// Redis restarts (maintenance, a crash) while two control instances serve consultations: once
// it is back, with its data (append-only file), the instances carry on without a restart of
// their own: events cross between them again and the room directory answers.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Clinic, okData, Peers } from "./lib/clinic.js";
import { Control, RedisServer, tempDir, freshDatabase, sleep } from "./lib/env.js";

let redis;
let a;
let b;
let ca;
const peers = new Peers();
before(async () => {
  const dir = tempDir("teletip-redis-restart-");
  redis = await RedisServer.start({ dir: join(dir, "redis") });
  const databaseUrl = freshDatabase(dir);
  const dataDir = join(dir, "data");
  a = await Control.start({ name: "instance-a", dir, databaseUrl, dataDir, redisUrl: redis.url });
  a.createAdmin();
  b = await Control.start({ name: "instance-b", dir, databaseUrl, dataDir, redisUrl: redis.url });
  ca = await Clinic.open({ control: a });
});
after(async () => {
  peers.closeAll();
  await a?.stop();
  await b?.stop();
  await redis?.stop();
});

const peer = (control, user, name) => peers.connect(control, user, name);

test("after a Redis restart, a patient on A reaches the practitioner on B again", async () => {
  const { practitioner, patient, appointment } = await ca.pair();
  const doc = await peer(b, practitioner, "practitioner@B");
  const dj = okData(await doc.call("room:join", { appointmentId: appointment.id }), "practitioner joins on B");

  await redis.stop();
  await sleep(500);
  await redis.restart();
  // Give the instances' clients time to notice and reconnect.
  let arrived = null;
  const deadline = Date.now() + 30000;
  while (!arrived && Date.now() < deadline) {
    const pat = await peer(a, patient, "patient@A");
    const joined = await pat.call("room:join", { appointmentId: appointment.id });
    if (joined.ok) {
      arrived = await doc.waitFor("lobby:patient-arrived", () => true, 3000).catch(() => null);
      if (arrived) {
        okData(await doc.call("lobby:admit", { peerId: joined.data.peerId }), "admit across the instances");
        await pat.waitFor("lobby:admitted");
        // The practitioner's place, written before the restart, is still in the directory:
        // the patient may signal to it, and the offer crosses from A to B.
        okData(await pat.call("signal:offer", { to: dj.peerId, sdp: "v=0\r\ns=after-restart\r\n" }), "offer A→B");
        assert.equal((await doc.waitFor("signal:offer")).sdp, "v=0\r\ns=after-restart\r\n");
        break;
      }
    }
    pat.close();
    await sleep(1000);
  }
  assert.ok(arrived, "no lobby:patient-arrived crossed from A to B within 30 s of Redis coming back");
});
