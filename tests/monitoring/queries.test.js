// Every query runs: a real Prometheus (Debian's package) scrapes a real teletip-relay and a real
// teletip-control (with the control link between them, TURN over TLS on) while a little traffic
// flows: allocations by coturn's turnutils_uclient, and a consultation over Socket.IO (patient
// waits in the lobby, practitioner joins, admits, ends), a booking and a double booking, an
// audit read; the booking is delivered to a webhook receiver. Then every panel query of every dashboard in monitoring/grafana/dashboards must
// answer without error and with series, and every rule of monitoring/prometheus must be loaded,
// evaluate without error, and answer its expression without error. The new series carry the
// values the traffic made, and the control plane's metrics name none of the people, rooms or
// peers involved; a TURN certificate renewed and reloaded (SIGHUP) shows its new expiry.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync, spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { createWriteStream, readFileSync, readdirSync, writeFileSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { Control, Relay, tempDir, freePort, freeUdpPort, sleep, RELAXED_LIMITS, ROOT } from "../signaling/lib/env.js";
import { Clinic, Peers, okData } from "../signaling/lib/clinic.js";

const RATE_INTERVAL = "1m";
let dir, control, relay, prometheus, promBase, c, turnCertExpiry, webhooks;
const peers = new Peers();
const facts = {};

function openssl(args) {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

/** The control link's PKI as docs/operations.md section 9 makes it, and a TURN-over-TLS certificate. */
function makeCertificates() {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-days", "2", "-subj", "/CN=test relay CA", "-keyout", "ca.key", "-out", "ca.pem"]);
  for (const [name, usage] of [["control.test", "serverAuth"], ["relay1.test", "clientAuth"]]) {
    openssl(["req", ...ec, "-subj", `/CN=${name}`, "-keyout", `${name}.key`, "-out", `${name}.csr`]);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=DNS:${name}\nextendedKeyUsage=${usage}\n`);
    openssl(["x509", "-req", "-days", "2", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-extfile", `${name}.ext`, "-out", `${name}.pem`]);
  }
  openssl(["req", "-x509", ...ec, "-days", "30", "-subj", "/CN=turn.test", "-keyout", "turn.key", "-out", "turn.pem"]);
  const end = execFileSync("openssl", ["x509", "-noout", "-enddate", "-in", join(dir, "turn.pem")], { encoding: "utf8" });
  turnCertExpiry = Date.parse(end.trim().replace(/^notAfter=/, "")) / 1000;
}

async function promQuery(expr) {
  const res = await fetch(`${promBase}/api/v1/query?query=${encodeURIComponent(expr)}`);
  return res.json();
}

async function metricsText(url) {
  return (await fetch(url)).text();
}

function sample(text, series) {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function startPrometheus() {
  const port = await freePort();
  const controlTarget = new URL(control.base).host;
  const config = `global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - ${join(ROOT, "monitoring/prometheus/relay.rules.yml")}
  - ${join(ROOT, "monitoring/prometheus/control.rules.yml")}
scrape_configs:
  - job_name: teletip-relay
    static_configs: [{targets: ["127.0.0.1:${relay.metricsPort}"]}]
  - job_name: teletip-control
    static_configs: [{targets: ["${controlTarget}"]}]
`;
  writeFileSync(join(dir, "prometheus.yml"), config);
  const log = createWriteStream(join(dir, "prometheus.log"));
  const tsdb = mkdtempSync(join(dir, "tsdb-"));
  prometheus = spawn("prometheus", [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${tsdb}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "pipe"] });
  prometheus.stdout.pipe(log);
  prometheus.stderr.pipe(log);
  if (process.env.TELETIP_SIGNALING_TMP) writeFileSync(join(process.env.TELETIP_SIGNALING_TMP, "pids"), `${prometheus.pid} prometheus\n`, { flag: "a" });
  promBase = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60000;
  for (;;) {
    try {
      const up = await promQuery("up == 1");
      if (up.status === "success" && up.data.result.length === 2) return;
    } catch {
      /* not yet */
    }
    if (prometheus.exitCode !== null || Date.now() > deadline) {
      throw new Error(`Prometheus did not scrape both targets: ${readFileSync(join(dir, "prometheus.log"), "utf8").slice(-3000)}`);
    }
    await sleep(250);
  }
}

before(async () => {
  dir = tempDir("teletip-monitoring-");
  makeCertificates();
  const linkPort = await freeUdpPort();
  // A webhook receiver that accepts every event, so the notification series have an endpoint.
  webhooks = createServer((req, res) => req.resume().on("end", () => res.writeHead(200).end()));
  await new Promise((resolve) => webhooks.listen(0, "127.0.0.1", resolve));
  writeFileSync(join(dir, "webhook.secret"), "whsec-0123456789abcdef0123456789\n");
  const notifications = `[notifications]\nallow-insecure-http = true\npoll-interval-ms = 200\n[[notifications.webhooks]]\nname = "crm"\nurl = "http://127.0.0.1:${webhooks.address().port}/hook"\nsecret-file = "${join(dir, "webhook.secret")}"\n`;
  control = await Control.start({
    name: "control",
    dir,
    extraToml: `${RELAXED_LIMITS}\n${notifications}[relay-link]\nlisten = "127.0.0.1:${linkPort}"\ncert = "${join(dir, "control.test.pem")}"\nkey = "${join(dir, "control.test.key")}"\nclient-ca = "${join(dir, "ca.pem")}"\nreport-seconds = 1\n`,
  });
  control.createAdmin();
  c = await Clinic.open({ control });
  relay = await Relay.start({
    secretFile: join(control.dataDir, "relay.secret"),
    dir,
    extraArgs: [
      "--control-server", `127.0.0.1:${linkPort}`, "--control-server-name", "control.test",
      "--control-ca", join(dir, "ca.pem"), "--control-cert", join(dir, "relay1.test.pem"), "--control-key", join(dir, "relay1.test.key"),
      "--cert", join(dir, "turn.pem"), "--pkey", join(dir, "turn.key"), "--tls-listening-port", String(await freePort()),
    ],
  });
  for (let i = 0; (await relay.counter("teletip_control_link_up")) !== 1; i++) {
    if (i > 200) throw new Error(`the relay did not register: ${readFileSync(relay.logPath, "utf8")}`);
    await sleep(100);
  }
  await startPrometheus();

  // Traffic while Prometheus scrapes: a consultation with a lobby wait, a booking conflict, an
  // audit read, then allocations relaying data through turnutils_uclient.
  const { practitioner, patient, appointment } = await c.pair();
  facts.ids = [appointment.id, practitioner.userId, patient.userId, practitioner.practitionerId, patient.patientId, practitioner.email, patient.email];
  const clash = await c.api.post("/v1/appointments", c.admin, { practitionerId: practitioner.practitionerId, patientId: patient.patientId, start: appointment.start, end: appointment.end });
  assert.equal(clash.status, 409, JSON.stringify(clash.body));
  const pat = await peers.connect(control, patient, "patient");
  const joined = okData(await pat.call("room:join", { appointmentId: appointment.id }), "patient join");
  facts.ids.push(joined.peerId);
  facts.turn = joined.ice.iceServers.find((x) => x.username && [].concat(x.urls).some((u) => u.startsWith("turn:")));
  await sleep(1200); // a lobby wait of at least a second
  const doc = await peers.connect(control, practitioner, "practitioner");
  okData(await doc.call("room:join", { appointmentId: appointment.id }), "practitioner join");
  facts.socketsDuringCall = sample(await metricsText(control.url("/metrics")), "teletip_signaling_sockets");
  okData(await doc.call("lobby:admit", { peerId: joined.peerId }), "admit");
  // The patient's own relay credentials from the join (TURN REST, long-term): four clients
  // relaying to each other through the relay.
  const uclient = spawnSync("timeout", ["60", "turnutils_uclient", "-y", "-u", facts.turn.username, "-w", facts.turn.credential,
    "-p", String(relay.port), "-n", "20", "-m", "4", "-l", "160", "-z", "5", "-L", "127.0.0.1", "-e", "127.0.0.1", "127.0.0.1"], { encoding: "utf8" });
  if (uclient.status !== 0) {
    const refused = (await metricsText(relay.metricsUrl())).split("\n").filter((l) => /failed_total|failures_total|dropped/.test(l) && !/ 0$/.test(l) && !l.startsWith("#"));
    assert.fail(`turnutils_uclient: ${uclient.stdout.slice(-1500)}${uclient.stderr}\nrelay refusals: ${refused.join("\n")}`);
  }
  // Ending the consultation revokes its relay credentials (issue 20): after the relaying.
  okData(await doc.call("room:end", {}), "end");
  await c.audit("consultation.end");

  await sleep(4000); // the relay publishes every second; Prometheus scrapes every second
});

after(async () => {
  peers.closeAll();
  if (prometheus && prometheus.exitCode === null) {
    const done = new Promise((r) => prometheus.once("exit", r));
    prometheus.kill("SIGTERM");
    await done;
  }
  await relay?.stop();
  await control?.stop();
  webhooks?.close();
});

test("every dashboard panel query answers with series", async () => {
  const failures = [];
  let queries = 0;
  const dashboards = join(ROOT, "monitoring/grafana/dashboards");
  for (const file of readdirSync(dashboards).filter((f) => f.endsWith(".json"))) {
    const d = JSON.parse(readFileSync(join(dashboards, file), "utf8"));
    for (const p of d.panels) {
      for (const t of p.targets) {
        const expr = t.expr.replaceAll("$__rate_interval", RATE_INTERVAL).replaceAll("$instance", ".*");
        queries++;
        const r = await promQuery(expr);
        if (r.status !== "success") failures.push(`${file} / ${p.title}: ${expr}: ${r.error}`);
        else if (r.data.result.length === 0) failures.push(`${file} / ${p.title}: ${expr}: no series`);
      }
    }
  }
  console.log(`${queries} panel queries ran`);
  assert.ok(queries >= 40, `only ${queries} panel queries`);
  assert.deepEqual(failures, [], failures.join("\n"));
});

test("every rule is loaded, evaluates without error, and its expression runs", async () => {
  let rules = [];
  for (let i = 0; i < 100; i++) {
    const r = await (await fetch(`${promBase}/api/v1/rules`)).json();
    rules = r.data.groups.flatMap((g) => g.rules);
    if (rules.length === 24 && rules.every((x) => x.health === "ok")) break;
    await sleep(200);
  }
  assert.equal(rules.length, 24, "9 relay and 15 control rules loaded");
  const failures = [];
  for (const rule of rules) {
    if (rule.health !== "ok") failures.push(`${rule.name}: health ${rule.health}: ${rule.lastError}`);
    const r = await promQuery(rule.query);
    if (r.status !== "success") failures.push(`${rule.name}: ${rule.query}: ${r.error}`);
  }
  assert.deepEqual(failures, [], failures.join("\n"));
  // Healthy traffic fires none of them (target down, unregistered relay, 5xx, ICE 503, …).
  const firing = rules.filter((r) => r.state === "firing").map((r) => r.name);
  assert.deepEqual(firing, [], `alerts firing on a healthy test system: ${firing}`);
});

test("the traffic shows in the new series, and no series names a person, room or peer", async () => {
  const text = await metricsText(control.url("/metrics"));
  const expect = {
    'teletip_bookings_total{outcome="booked"}': 1,
    'teletip_bookings_total{outcome="conflict"}': 1,
    'teletip_consultation_joins_total{role="patient"}': 1,
    'teletip_consultation_joins_total{role="practitioner"}': 1,
    "teletip_consultations_ended_total": 1,
    "teletip_lobby_wait_seconds_count": 1,
    'teletip_relays{state="serving"}': 1,
    'teletip_audit_chain_verifications_total{outcome="intact"}': 1,
    'teletip_ice_answers_total{outcome="issued"}': 2,
  };
  for (const [series, value] of Object.entries(expect)) assert.equal(sample(text, series), value, `${series} in\n${text}`);
  assert.equal(facts.socketsDuringCall, 2, "two sockets open during the call");
  assert.ok(sample(text, "teletip_lobby_wait_seconds_sum") >= 1.2, "the patient waited at least 1.2 s");
  const certExpiry = sample(text, 'teletip_tls_certificate_expiry_timestamp_seconds{certificate="relay_link"}');
  assert.ok(certExpiry > Date.now() / 1000, `relay_link certificate expiry ${certExpiry}`);
  for (const id of facts.ids) assert.ok(!text.includes(id), `${id} appears in the control plane's metrics`);

  const relayText = await metricsText(relay.metricsUrl());
  assert.equal(sample(relayText, 'teletip_tls_certificate_expiry_timestamp_seconds{certificate="turn_tls"}'), turnCertExpiry, "the TURN certificate's notAfter, as openssl reads it");
  assert.ok(sample(relayText, 'teletip_tls_certificate_expiry_timestamp_seconds{certificate="control_link"}') > Date.now() / 1000);
  // total-quota unset: 10,000 or the relay port range, whichever is smaller.
  assert.equal(sample(relayText, "teletip_allocations_quota"), Math.min(10000, relay.maxPort - relay.minPort + 1));
  assert.equal(sample(relayText, "teletip_relay_ports"), relay.maxPort - relay.minPort + 1);
  assert.ok(sample(relayText, "teletip_allocations_created_total") >= 4, `turnutils_uclient's four allocations: ${sample(relayText, "teletip_allocations_created_total")}`);
  assert.ok(sample(relayText, 'teletip_relayed_packets_total{direction="client_to_peer"}') >= 80, "turnutils_uclient's data");
  for (const t of [text, relayText]) {
    assert.ok(sample(t, "process_start_time_seconds") > 1.7e9, "process start time");
    assert.ok(sample(t, "process_open_fds") > 0, "open fds");
    assert.ok(sample(t, "process_resident_memory_bytes") > 0, "resident memory");
  }
});

test("a renewed TURN certificate's expiry is exported after SIGHUP", async () => {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-days", "90", "-subj", "/CN=turn.test", "-keyout", "turn.key.next", "-out", "turn.pem.next"]);
  const end = execFileSync("openssl", ["x509", "-noout", "-enddate", "-in", join(dir, "turn.pem.next")], { encoding: "utf8" });
  const renewed = Date.parse(end.trim().replace(/^notAfter=/, "")) / 1000;
  assert.ok(renewed > turnCertExpiry);
  execFileSync("mv", [join(dir, "turn.key.next"), join(dir, "turn.key")]);
  execFileSync("mv", [join(dir, "turn.pem.next"), join(dir, "turn.pem")]);
  relay.signal("SIGHUP");
  let seen;
  for (let i = 0; i < 100; i++) {
    seen = sample(await metricsText(relay.metricsUrl()), 'teletip_tls_certificate_expiry_timestamp_seconds{certificate="turn_tls"}');
    if (seen === renewed) break;
    await sleep(100);
  }
  assert.equal(seen, renewed, "the renewed certificate's notAfter");
});
