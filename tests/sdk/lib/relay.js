// teletip-relay as a hospital runs it: loopback peers refused (the default). Between two clients
// on this host the relay then grants allocations but no permission to the other side, so media
// cannot flow: the situation in which the old reference client opened 94 connections a minute.

import { spawn } from "node:child_process";
import { appendFileSync, createWriteStream, readFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, freePort, sleep } from "../../signaling/lib/env.js";

export async function startRelayDenyingLoopback({ secretFile, port, dir }) {
  const metricsPort = await freePort();
  const minPort = 61000 + Math.floor(Math.random() * 40) * 100;
  const logPath = join(dir, "relay-deny.log");
  const log = createWriteStream(logPath);
  const args = [
    "--static-auth-secret-file", secretFile,
    "--listening-ip", "127.0.0.1",
    "--listening-port", String(port),
    "--min-port", String(minPort),
    "--max-port", String(minPort + 99),
    "--realm", "teletip.local",
    "--prometheus-port", String(metricsPort),
    "--workers", "1",
  ];
  const child = spawn(join(BIN, "teletip-relay"), args, { env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  if (process.env.TELETIP_SIGNALING_TMP) appendFileSync(join(process.env.TELETIP_SIGNALING_TMP, "pids"), `${child.pid} teletip-relay\n`);
  process.on("exit", () => child.kill("SIGKILL"));
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const deadline = Date.now() + 30000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`teletip-relay exited: ${readFileSync(logPath, "utf8")}`);
    try {
      if ((await fetch(metricsUrl)).ok) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error("teletip-relay metrics did not come up");
    await sleep(100);
  }
  return {
    async counter(name) {
      const text = await (await fetch(metricsUrl)).text();
      let sum = 0;
      for (const line of text.split("\n")) {
        const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
        if (m && m[1] === name) sum += Number(m[3]);
      }
      return sum;
    },
    async stop() {
      if (child.exitCode !== null) return;
      const done = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await done;
    },
  };
}
