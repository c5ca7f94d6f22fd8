// Processes for the signaling tests: teletip-control instances (each with its own config file),
// teletip-relay, redis-server when the runner did not start one; a fresh database per
// environment (a new PostgreSQL database when TELETIP_TEST_DATABASE_URL is set, else a SQLite
// file). Every child is killed when the test process ends, and its pid is written to
// $TELETIP_SIGNALING_TMP/pids so that `run` can kill it even if this process dies.

import { spawn, spawnSync } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, appendFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createServer, Socket } from "node:net";
import { createSocket } from "node:dgram";
import { randomBytes } from "node:crypto";

export const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, "..", "..", "..");
export const BIN = process.env.TELETIP_BIN_DIR || join(ROOT, "target", "debug");
export const ADMIN_EMAIL = "admin@teletip.test";
export const ADMIN_PASSWORD = "correct horse battery staple";
export const PASSWORD = "a long enough passphrase";

export const RELAXED_LIMITS = `[rate-limit]
per-ip-per-second = 1000
per-ip-burst = 1000
per-account-per-second = 1000
per-account-burst = 1000
`;

const children = new Set();
const tempDirs = [];
const KEEP = process.env.TELETIP_KEEP_TMP === "1";

// This test process itself, so that `run` can stop it (and through it, the browser).
if (process.env.TELETIP_SIGNALING_TMP) appendFileSync(join(process.env.TELETIP_SIGNALING_TMP, "pids"), `${process.pid} node\n`);

function track(child, what) {
  children.add(child);
  const pidFile = process.env.TELETIP_SIGNALING_TMP && join(process.env.TELETIP_SIGNALING_TMP, "pids");
  if (pidFile) appendFileSync(pidFile, `${child.pid} ${what}\n`);
  child.on("exit", () => children.delete(child));
}

function killAll() {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch {
      /* already gone */
    }
  }
  children.clear();
  if (!KEEP) for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
}
process.on("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

export function tempDir(prefix = "teletip-sig-") {
  const base = process.env.TELETIP_SIGNALING_TMP || tmpdir();
  const d = mkdtempSync(join(base, prefix));
  tempDirs.push(d);
  return d;
}

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

export function freeUdpPort() {
  return new Promise((res, rej) => {
    const s = createSocket("udp4");
    s.on("error", rej);
    s.bind(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A new, empty database: a PostgreSQL database when the runner gave a server, else SQLite. */
export function freshDatabase(dir) {
  const base = process.env.TELETIP_TEST_DATABASE_URL;
  if (!base) return `sqlite://${join(dir, "teletip-control.db")}`;
  const name = `sig_${randomBytes(8).toString("hex")}`;
  const r = spawnSync("psql", [base, "-v", "ON_ERROR_STOP=1", "-qc", `CREATE DATABASE ${name}`], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`psql CREATE DATABASE failed: ${r.stderr}`);
  return `${base.slice(0, base.lastIndexOf("/"))}/${name}`;
}

/** A running `teletip-control --config FILE serve`, its output captured in a log file. */
export class Control {
  static async start({ name = "control", dir = tempDir(), databaseUrl, dataDir, redisUrl, extraToml = RELAXED_LIMITS, rustLog = "info" } = {}) {
    databaseUrl = databaseUrl || freshDatabase(dir);
    dataDir = dataDir || join(dir, "data");
    const configPath = join(dir, `${name}.toml`);
    const lines = [`listen = "127.0.0.1:0"`, `database-url = "${databaseUrl}"`, `data-dir = "${dataDir}"`];
    if (redisUrl) lines.push(`redis-url = "${redisUrl}"`);
    writeFileSync(configPath, `${lines.join("\n")}\n${extraToml}\n`);
    const logPath = join(dir, `${name}.log`);
    const log = createWriteStream(logPath);
    const child = spawn(join(BIN, "teletip-control"), ["--config", configPath, "serve"], {
      env: { ...process.env, RUST_LOG: rustLog, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    track(child, `teletip-control ${name}`);
    const base = await new Promise((res, rej) => {
      let out = "";
      const timer = setTimeout(() => rej(new Error(`${name} did not say where it listens; log: ${logPath}`)), 60000);
      child.stdout.on("data", (chunk) => {
        log.write(chunk);
        out += chunk.toString();
        const m = /teletip-control listening on (http:\/\/\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          res(m[1]);
        }
      });
      child.on("exit", (code) => {
        clearTimeout(timer);
        rej(new Error(`${name} exited with ${code}: ${safeRead(logPath)}`));
      });
    });
    child.stderr.on("data", (chunk) => log.write(chunk));
    const c = new Control();
    Object.assign(c, { name, dir, child, base, configPath, logPath, databaseUrl, dataDir, log });
    return c;
  }

  url(path = "") {
    return `${this.base}${path}`;
  }

  /** Runs a teletip-control subcommand with this instance's configuration. */
  cli(args, stdin = "") {
    return spawnSync(join(BIN, "teletip-control"), ["--config", this.configPath, ...args], {
      input: stdin,
      encoding: "utf8",
      env: { ...process.env, RUST_LOG: "warn", NO_COLOR: "1" },
    });
  }

  createAdmin() {
    const r = this.cli(["user", "add", "--role", "admin", "--email", ADMIN_EMAIL, "--name", "Ada Admin"], `${ADMIN_PASSWORD}\n`);
    if (r.status !== 0) throw new Error(`user add: ${r.stderr}`);
  }

  /** Everything the process wrote to stdout and stderr so far. */
  async output() {
    await new Promise((r) => setTimeout(r, 200));
    return safeRead(this.logPath);
  }

  async stop() {
    if (this.child.exitCode !== null) return;
    const done = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await done;
    clearTimeout(t);
    await new Promise((r) => this.log.end(r));
  }
}

function safeRead(p) {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return "";
  }
}

/** teletip-relay on loopback with the control plane's generated relay secret. */
export class Relay {
  static async start({ secretFile, port, dir = tempDir("teletip-relay-"), name = "relay", ip = "127.0.0.1", extraArgs = [] }) {
    port = port || (await freeUdpPort());
    const metricsPort = await freePort();
    // Relay ports above the kernel's ephemeral range (32768-60999), so they never collide
    // with the browsers' own sockets; a random slice so that parallel runs rarely meet.
    const minPort = 61000 + Math.floor(Math.random() * 40) * 100;
    const maxPort = minPort + 99;
    const logPath = join(dir, `${name}.log`);
    const log = createWriteStream(logPath);
    const args = [
      "--static-auth-secret-file", secretFile,
      "--listening-ip", ip,
      "--listening-port", String(port),
      "--min-port", String(minPort),
      "--max-port", String(maxPort),
      "--realm", "teletip.local",
      "--allow-loopback-peers", "true",
      "--prometheus-port", String(metricsPort),
      "--workers", "1",
      ...extraArgs,
    ];
    const child = spawn(join(BIN, "teletip-relay"), args, { env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
    track(child, "teletip-relay");
    child.stdout.pipe(log);
    child.stderr.pipe(log);
    const r = new Relay();
    Object.assign(r, { child, port, metricsPort, logPath, minPort, maxPort });
    const deadline = Date.now() + 30000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`teletip-relay exited: ${safeRead(logPath)}`);
      try {
        const res = await fetch(r.metricsUrl());
        if (res.ok) break;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) throw new Error(`teletip-relay metrics did not come up: ${safeRead(logPath)}`);
      await sleep(100);
    }
    return r;
  }

  metricsUrl() {
    return `http://127.0.0.1:${this.metricsPort}/metrics`;
  }

  /** Sends a signal (SIGUSR1: drain, SIGUSR2: end the drain, SIGHUP: reload). */
  signal(name) {
    this.child.kill(name);
  }

  /** Sum of a counter over all its label sets. */
  async counter(name) {
    const text = await (await fetch(this.metricsUrl())).text();
    let sum = 0;
    for (const line of text.split("\n")) {
      if (line.startsWith("#")) continue;
      const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (m && m[1] === name) sum += Number(m[3]);
    }
    return sum;
  }

  async stop() {
    if (this.child.exitCode !== null) return;
    const done = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await done;
    clearTimeout(t);
  }
}

/** A redis-server of the caller's own, killed when the test process exits (unref'd, so it does
 * not keep the process alive): test files that run side by side must not share one (keys and
 * pub/sub channels). */
export async function redisUrl() {
  const r = await RedisServer.start();
  r.child.unref();
  return r.url;
}

/** A redis-server of a test's own, which the test may stop and start again on the same port. */
export class RedisServer {
  static async start({ port, dir } = {}) {
    const r = new RedisServer();
    r.port = port || (await freePort());
    r.dir = dir || tempDir("teletip-redis-");
    mkdirSync(r.dir, { recursive: true });
    r.url = `redis://127.0.0.1:${r.port}/`;
    await r.restart();
    return r;
  }

  /** Starts it (again): an append-only file in `dir` keeps the data over a restart. */
  async restart() {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", this.dir];
    this.child = spawn("redis-server", args, { stdio: "ignore" });
    track(this.child, "redis-server");
    for (let i = 0; i < 100; i++) {
      const ok = await new Promise((r) => {
        const s = new Socket();
        s.once("error", () => r(false));
        s.connect(this.port, "127.0.0.1", () => {
          s.end();
          r(true);
        });
      });
      if (ok) return;
      await sleep(100);
    }
    throw new Error("redis-server did not start");
  }

  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    const done = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGTERM");
    await done;
  }
}

