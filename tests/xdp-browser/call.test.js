// A headless Chromium call relayed by teletip-relay's XDP offload. Two network namespaces joined
// by a veth pair: R holds the relay with its program on r0 (generic mode), C holds Chromium
// (launched through a wrapper that runs it there; playwright-core talks to it over a pipe). In
// one page, two RTCPeerConnections with iceTransportPolicy "relay" and TURN REST credentials
// computed from the relay's secret send Chromium's fake camera from one to the other, so every
// media datagram goes client -> relay -> client: the same-relay short circuit, in the kernel.
// Checked: the receiver decodes video frames, both selected candidate pairs are relay <-> relay,
// teletip_xdp_relayed_packets_total rose by hundreds during the call, and frames keep being
// decoded while the relay process is frozen (SIGSTOP) for two seconds: only the kernel can have
// relayed them. Root only (namespaces, XDP): skipped with a message otherwise (CI runs as root).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { chmodSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = process.env.TELETIP_BIN_DIR || join(ROOT, "target", "debug");
const CHROMIUM = process.env.TELETIP_CHROMIUM || "/usr/bin/chromium";
const SECRET = "xdp-browser-test-secret-0123456789abcdef";
const R = `ttbr-${process.pid}`;
const C = `ttbc-${process.pid}`;
const RELAY_IP = "10.78.0.1";
const METRICS_PORT = 19651;

const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : "network namespaces and XDP need root (CI runs as root)";

let dir;
let relay;
let browser;

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr || r.error}`);
  return r.stdout;
}

function relayLog() {
  try {
    return readFileSync(join(dir, "relay.log"), "utf8");
  } catch {
    return "";
  }
}

/** The sum of a metric's samples (all label sets), read inside R where the relay serves it. */
function metric(name) {
  const text = run("ip", ["netns", "exec", R, "curl", "-sf", `http://127.0.0.1:${METRICS_PORT}/metrics`]);
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(name) && /^[{ ]/.test(line.slice(name.length))) sum += Number(line.split(" ").pop());
  }
  return sum;
}

async function until(what, fn, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; relay log:\n${relayLog()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function removeNamespaces() {
  for (const ns of [R, C]) spawnSync("ip", ["netns", "del", ns], { stdio: "ignore" });
}

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), "teletip-xdp-browser-"));
  removeNamespaces();
  for (const ns of [R, C]) {
    run("ip", ["netns", "add", ns]);
    run("ip", ["-n", ns, "link", "set", "lo", "up"]);
  }
  run("ip", ["-n", R, "link", "add", "r0", "type", "veth", "peer", "name", "c0", "netns", C]);
  run("ip", ["-n", R, "addr", "add", `${RELAY_IP}/24`, "dev", "r0"]);
  run("ip", ["-n", C, "addr", "add", "10.78.0.2/24", "dev", "c0"]);
  // The kernel's FIB helper answers the program only where forwarding is on (relay-config.md).
  run("ip", ["netns", "exec", R, "sysctl", "-qw", "net.ipv4.conf.r0.forwarding=1"]);
  run("ip", ["-n", R, "link", "set", "r0", "up"]);
  run("ip", ["-n", C, "link", "set", "c0", "up"]);
  // Chromium's datagrams would otherwise leave C with partial UDP checksums (CHECKSUM_PARTIAL,
  // left to a "hardware" a veth does not have), which the program's rewrite cannot update
  // (relay-security.md §13); from a network card they carry full checksums.
  run("ip", ["netns", "exec", C, "ethtool", "-K", "c0", "tx", "off"]);

  const log = openSync(join(dir, "relay.log"), "w");
  // `ip netns exec` execs the relay: the child's pid is the relay's (SIGSTOP reaches it).
  relay = spawn(
    "ip",
    [
      ...["netns", "exec", R, join(BIN, "teletip-relay")],
      ...["--listening-ip", RELAY_IP, "--listening-port", "3478", "--relay-ip", RELAY_IP],
      ...["--min-port", "50000", "--max-port", "50100", "--realm", "teletip.test"],
      ...["--static-auth-secret", SECRET, "--prometheus-port", String(METRICS_PORT), "--no-tcp", "true"],
      // Both peers of each allocation are the relay's own relayed addresses, on a private
      // network the default peer policy denies.
      ...["--allowed-peer-ip", `${RELAY_IP}/32`],
      ...["--xdp-offload", "r0", "--xdp-mode", "generic"],
      // Overload control would drop, as late, what waited while the relay was frozen.
      ...["--max-queue-delay-ms", "0"],
    ],
    { stdio: ["ignore", "ignore", log], env: { ...process.env, RUST_LOG: "info" } },
  );
  await until("the relay's metrics", () => {
    try {
      return metric("teletip_xdp_offloaded_allocations") === 0 && relayLog().includes("XDP OFFLOAD ON");
    } catch {
      return false;
    }
  });

  const wrapper = join(dir, "chromium-in-c");
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${C} ${CHROMIUM} "$@"\n`);
  chmodSync(wrapper, 0o755);
  browser = await chromium.launch({
    executablePath: wrapper,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
    ],
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  if (relay && relay.exitCode === null) {
    relay.kill("SIGCONT");
    relay.kill("SIGKILL");
  }
  if (!skip) removeNamespaces();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("a Chromium call relayed in the kernel: video decoded, relay candidates, the kernel's counter, the relay frozen", { skip }, async () => {
  const context = await browser.newContext({ permissions: ["camera", "microphone"] });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  // A secure origin for getUserMedia without any network: the page is answered by playwright.
  await page.route("http://localhost/", (route) => route.fulfill({ contentType: "text/html", body: "<!doctype html><title>xdp</title>" }));
  await page.goto("http://localhost/");

  // TURN REST credentials, as the control plane issues them: "<expiry>:<id>", HMAC-SHA1.
  const username = `${Math.floor(Date.now() / 1000) + 600}:xdp-browser`;
  const credential = createHmac("sha1", SECRET).update(username).digest("base64");
  const kernelBefore = metric("teletip_xdp_relayed_packets_total");
  await page.evaluate(
    async ({ url, username, credential }) => {
      const config = { iceServers: [{ urls: url, username, credential }], iceTransportPolicy: "relay" };
      const sender = new RTCPeerConnection(config);
      const receiver = new RTCPeerConnection(config);
      sender.onicecandidate = (e) => e.candidate && receiver.addIceCandidate(e.candidate);
      receiver.onicecandidate = (e) => e.candidate && sender.addIceCandidate(e.candidate);
      const media = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } });
      for (const track of media.getTracks()) sender.addTrack(track, media);
      await sender.setLocalDescription();
      await receiver.setRemoteDescription(sender.localDescription);
      await receiver.setLocalDescription();
      await sender.setRemoteDescription(receiver.localDescription);
      window.pcs = { sender, receiver };
    },
    { url: `turn:${RELAY_IP}:3478?transport=udp`, username, credential },
  );

  const framesDecoded = () =>
    page.evaluate(async () => {
      const report = await window.pcs.receiver.getStats();
      return [...report.values()].find((s) => s.type === "inbound-rtp" && s.kind === "video")?.framesDecoded ?? 0;
    });
  await until("30 decoded frames", async () => (await framesDecoded()) >= 30);

  const pairs = await page.evaluate(async () => {
    const selected = async (pc) => {
      const report = await pc.getStats();
      const stats = [...report.values()];
      const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
      const pair = transport && report.get(transport.selectedCandidatePairId);
      return pair && [report.get(pair.localCandidateId)?.candidateType, report.get(pair.remoteCandidateId)?.candidateType];
    };
    return [await selected(window.pcs.sender), await selected(window.pcs.receiver)];
  });
  assert.deepEqual(pairs, [["relay", "relay"], ["relay", "relay"]], "both selected pairs are relay <-> relay");

  // The relay frozen: whatever is still decoded came through the kernel alone.
  const beforeFreeze = await framesDecoded();
  relay.kill("SIGSTOP");
  await new Promise((r) => setTimeout(r, 2000));
  const duringFreeze = (await framesDecoded()) - beforeFreeze;
  relay.kill("SIGCONT");
  console.log(`frames decoded while the relay was frozen for 2 s: ${duringFreeze}`);
  assert.ok(duringFreeze >= 10, `frames kept coming with the relay frozen: ${duringFreeze}`);

  // Counters are collected from the maps once a second.
  const kernel = await until("the kernel's counter", async () => {
    const v = metric("teletip_xdp_relayed_packets_total") - kernelBefore;
    return v >= 300 && v;
  });
  const all = metric("teletip_relayed_packets_total");
  console.log(`relayed in the kernel during the call: ${kernel} of ${all} datagrams`);
  assert.ok(kernel >= 300, `the kernel relayed the media: ${kernel}`);
  await context.close();
});
