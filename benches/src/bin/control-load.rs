//! Load on teletip-control's API and signaling (issue 26 item 4); docs/performance.md, "Control
//! plane under load". Scenarios:
//!
//! - `ice`: workers fetch `POST /v1/ice/credentials` with a valid token for a while.
//! - `login`: workers log one account in, over and over (Argon2id-bound by design).
//! - `book`: workers book the same and overlapping slots of a few practitioners; then every
//!   practitioner's calendar is read back and must hold no two overlapping appointments.
//! - `sockets`: thousands of authenticated /rtc connections held open on one or two instances,
//!   and the latency from a patient's `room:join` to the practitioner's `lobby:patient-arrived`.
//!
//! `--ceiling` runs `ice` or `sockets` against `ceiling http` / `ceiling sio` instead (no
//! accounts; the echo stands for the lobby event). Every run prints one `RESULT key=value …`
//! line on stdout; the server's CPU time comes from `/proc/PID/stat` (`--server-pid`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use hyper::Method;
use serde_json::{Value, json};
use teletip_benches::ctl::clinic::{self, Clinic, Person};
use teletip_benches::ctl::http::Conn;
use teletip_benches::ctl::sio;
use teletip_benches::ctl::usage::{CpuMeter, quantile, rss_kib};
use tokio::sync::{Semaphore, mpsc};

#[derive(Parser)]
struct Cli {
    /// Threads of the generator's runtime (1: the generator holds one core, and says when it
    /// is full).
    #[arg(long, default_value_t = 1, global = true)]
    threads: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Clone)]
struct Common {
    /// The server (one teletip-control, or a ceiling).
    #[arg(long)]
    addr: SocketAddr,
    /// Its process id, for its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A name for the RESULT line.
    #[arg(long, default_value = "control")]
    label: String,
    /// The admin teletip-control's `user add` made (not with --ceiling).
    #[arg(long, default_value = "admin@bench.teletip.test")]
    admin_email: String,
    /// Its password: TELETIP_BENCH_ADMIN_PASSWORD (not an argument, which `ps` shows).
    #[arg(skip = std::env::var("TELETIP_BENCH_ADMIN_PASSWORD").unwrap_or_default())]
    admin_password: String,
    /// The server is a `ceiling`: no accounts, no token.
    #[arg(long)]
    ceiling: bool,
}

#[derive(Subcommand)]
enum Scenario {
    Ice {
        #[command(flatten)]
        common: Common,
        /// Keep-alive connections, one request in flight on each. Each credential waits for its
        /// batch's commit, so the rate is at most this ÷ the commit's latency: enough of them
        /// that the server's CPU, not the wait, is measured (benches/control-load uses 512).
        #[arg(long, default_value_t = 512)]
        workers: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    Login {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 8)]
        workers: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    Book {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 32)]
        workers: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Practitioners whose calendars are fought over.
        #[arg(long, default_value_t = 4)]
        practitioners: usize,
        /// Slot starts per practitioner, 15 minutes apart; each booking lasts 30 minutes, so a
        /// slot overlaps its two neighbours.
        #[arg(long, default_value_t = 400)]
        slots: usize,
    },
    Sockets {
        #[command(flatten)]
        common: Common,
        /// A second instance on the same database and Redis: patients and half the held
        /// connections go there.
        #[arg(long)]
        addr2: Option<SocketAddr>,
        #[arg(long)]
        server_pid2: Option<u32>,
        /// Make the accounts and appointments through this instance (same database and keys)
        /// instead: the measured instances then start their memory count without the Argon2
        /// hashing of the set-up, whose freed buffers the allocator keeps and would hand to the
        /// new connections (a few hundred bytes per socket instead of the true figure).
        #[arg(long)]
        setup_addr: Option<SocketAddr>,
        /// Connections in all (held ones and the pairs' two each).
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Practitioner/patient pairs that measure the lobby event.
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// Connection handshakes in flight at once.
        #[arg(long, default_value_t = 200)]
        in_flight: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(cli.threads.max(1)).enable_all().build()?;
    let threads = cli.threads.max(1);
    rt.block_on(async move {
        match cli.scenario {
            Scenario::Ice { common, workers, duration } => ice(&common, workers, duration, threads).await,
            Scenario::Login { common, workers, duration } => login(&common, workers, duration, threads).await,
            Scenario::Book { common, workers, duration, practitioners, slots } => {
                book(&common, workers, duration, practitioners, slots, threads).await
            }
            Scenario::Sockets { common, addr2, server_pid2, setup_addr, count, pairs, duration, in_flight } => {
                let shape = SocketRun { addr2, pid2: server_pid2, setup_addr, count, pairs, duration, in_flight };
                sockets(&common, &shape, threads).await
            }
        }
    })
}

/// One request shape, sent by every worker.
#[derive(Clone)]
struct Shape {
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<Value>,
}

/// Counts and latencies of the requests that completed inside the measured window.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    latencies_ms: Vec<f64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.errors += other.errors;
        self.latencies_ms.extend(other.latencies_ms);
    }

    fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    fn statuses(&self) -> String {
        self.statuses.iter().map(|(s, n)| format!("{s}:{n}")).collect::<Vec<_>>().join(",")
    }
}

/// `workers` connections send `shape` back to back for 1 s of warm-up, then for `duration`
/// seconds measured (requests completed in the window, and the CPU of both processes in it).
async fn hammer(
    addr: SocketAddr,
    server_pid: Option<u32>,
    workers: usize,
    duration: f64,
    shape: Arc<dyn Fn(usize) -> Shape + Send + Sync>,
) -> anyhow::Result<(Tally, teletip_benches::ctl::usage::CpuUse)> {
    let warm = Duration::from_secs(1);
    let begin = Instant::now() + warm;
    let end = begin + Duration::from_secs_f64(duration);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let shape = shape.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn = Conn::open(addr).await?;
            let mut n = 0usize;
            loop {
                let s = shape(w * 1_000_000 + n);
                n += 1;
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = conn.send(s.method, &s.path, s.token.as_deref(), s.body.as_ref()).await;
                let t1 = Instant::now();
                if t0 < begin || t1 > end {
                    if r.is_err() {
                        conn = Conn::open(addr).await?;
                    }
                    continue;
                }
                match r {
                    Ok((status, _)) => *tally.statuses.entry(status).or_default() += 1,
                    Err(_) => {
                        tally.errors += 1;
                        conn = Conn::open(addr).await?;
                    }
                }
                tally.latencies_ms.push((t1 - t0).as_secs_f64() * 1e3);
            }
            anyhow::Ok(tally)
        }));
    }
    tokio::time::sleep_until(begin.into()).await;
    let meter = CpuMeter::start(server_pid);
    tokio::time::sleep_until(end.into()).await;
    let cpu = meter.stop();
    let mut tally = Tally::default();
    for t in tasks {
        tally.merge(t.await??);
    }
    Ok((tally, cpu))
}

fn report(
    scenario: &str,
    common: &Common,
    ok: u64,
    tally: &mut Tally,
    cpu: &teletip_benches::ctl::usage::CpuUse,
    threads: usize,
    extra: &str,
) {
    let rate = ok as f64 / cpu.wall;
    println!(
        "RESULT scenario={scenario} label={} ok={ok} seconds={:.2} rate={rate:.0} statuses={} errors={} p50_ms={:.2} p99_ms={:.2} {} {extra}",
        common.label,
        cpu.wall,
        tally.statuses(),
        tally.errors,
        quantile(&mut tally.latencies_ms, 0.5),
        quantile(&mut tally.latencies_ms, 0.99),
        cpu.fields(ok, threads),
    );
}

async fn ice(common: &Common, workers: usize, duration: f64, threads: usize) -> anyhow::Result<()> {
    let token = if common.ceiling {
        None
    } else {
        let mut c = Clinic::open(common.addr, &common.admin_email, &common.admin_password).await?;
        Some(c.patient().await?.token)
    };
    let shape = Shape { method: Method::POST, path: "/v1/ice/credentials".into(), token, body: None };
    let (mut tally, cpu) =
        hammer(common.addr, common.server_pid, workers, duration, Arc::new(move |_| shape.clone())).await?;
    let ok = tally.count(200);
    report("ice", common, ok, &mut tally, &cpu, threads, &format!("workers={workers}"));
    Ok(())
}

async fn login(common: &Common, workers: usize, duration: f64, threads: usize) -> anyhow::Result<()> {
    let mut c = Clinic::open(common.addr, &common.admin_email, &common.admin_password).await?;
    let p = c.patient().await?;
    let body = json!({"email": p.email, "password": clinic::PASSWORD});
    let shape = Shape { method: Method::POST, path: "/v1/auth/login".into(), token: None, body: Some(body) };
    let (mut tally, cpu) =
        hammer(common.addr, common.server_pid, workers, duration, Arc::new(move |_| shape.clone())).await?;
    let ok = tally.count(200);
    report("login", common, ok, &mut tally, &cpu, threads, &format!("workers={workers}"));
    Ok(())
}

/// xorshift64*: the slot each attempt picks (reproducible per worker, no dependency).
fn pick(seed: usize, n: usize) -> usize {
    let mut x = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
}

async fn book(
    common: &Common,
    workers: usize,
    duration: f64,
    practitioners: usize,
    slots: usize,
    threads: usize,
) -> anyhow::Result<()> {
    let mut c = Clinic::open(common.addr, &common.admin_email, &common.admin_password).await?;
    let mut docs = Vec::new();
    for _ in 0..practitioners {
        docs.push(c.practitioner().await?.record_id);
    }
    // One patient per worker, so that only the practitioners' calendars are contended.
    let mut patients = Vec::new();
    for _ in 0..workers {
        patients.push(c.patient().await?.record_id);
    }
    // Tomorrow, on a whole minute: inside the default horizon and past any lead time.
    let base = clinic::this_minute() + time::Duration::days(1);
    let admin = c.admin.clone();
    let (docs, patients) = (Arc::new(docs), Arc::new(patients));
    let shape = {
        let docs = docs.clone();
        Arc::new(move |n: usize| {
            let worker = n / 1_000_000;
            let r = pick(n + 1, docs.len() * slots);
            let (doc, slot) = (r % docs.len(), r / docs.len());
            let start = base + time::Duration::minutes(15 * slot as i64);
            Shape {
                method: Method::POST,
                path: "/v1/appointments".into(),
                token: Some(admin.clone()),
                body: Some(clinic::booking(&docs[doc], &patients[worker % patients.len()], start, 30)),
            }
        })
    };
    let (mut tally, cpu) = hammer(common.addr, common.server_pid, workers, duration, shape).await?;
    // Read back every calendar: time-holding appointments must not overlap.
    let mut held = 0usize;
    let mut double = 0usize;
    for doc in docs.iter() {
        let path = format!(
            "/v1/appointments?practitioner={doc}&limit=500&from={}&to={}",
            clinic::rfc3339(base - time::Duration::hours(1)),
            clinic::rfc3339(base + time::Duration::minutes(15 * slots as i64 + 60))
        );
        let list = c.conn.must(Method::GET, &path, Some(&c.admin), None).await?;
        let mut spans: Vec<(time::OffsetDateTime, time::OffsetDateTime)> = Vec::new();
        for a in list.as_array().context("a list")? {
            if matches!(
                a["status"].as_str(),
                Some("cancelled" | "fulfilled" | "noshow" | "no-show" | "entered-in-error")
            ) {
                continue;
            }
            let parse = |f: &str| {
                time::OffsetDateTime::parse(a[f].as_str().unwrap_or(""), &time::format_description::well_known::Rfc3339)
            };
            spans.push((parse("start")?, parse("end")?));
        }
        if spans.len() >= 500 {
            bail!("a calendar holds 500 appointments or more: the read-back is paged; use fewer slots");
        }
        spans.sort();
        double += spans.windows(2).filter(|w| w[0].1 > w[1].0).count();
        held += spans.len();
    }
    // The rate is of attempts answered (booked, 201, or refused as a double booking, 409): the
    // slots run out within seconds, after which nearly every attempt is a conflict, which the
    // server must detect just as surely. `booked` counts the bookings made inside the measured
    // window; the read-back (`held_after`) holds those of the warm-up and of requests that ended
    // after the window as well.
    let (booked, conflicts) = (tally.count(201), tally.count(409));
    let extra = format!(
        "workers={workers} practitioners={practitioners} slots={slots} booked={booked} booked_per_s={:.0} conflicts={conflicts} held_after={held} double_bookings={double}",
        booked as f64 / cpu.wall,
    );
    report("book", common, booked + conflicts, &mut tally, &cpu, threads, &extra);
    if double > 0 {
        bail!("{double} double bookings");
    }
    Ok(())
}

/// A practitioner and a patient of one appointment, each with an event-recording connection.
struct Pair {
    appointment: String,
    doc: sio::Socket,
    doc_events: mpsc::UnboundedReceiver<sio::Incoming>,
    pat: sio::Socket,
    pat_events: mpsc::UnboundedReceiver<sio::Incoming>,
}

const NS: &str = "/rtc";
const WAIT: Duration = Duration::from_secs(30);

fn ack_ok(v: &Value) -> anyhow::Result<()> {
    if v["ok"] == json!(true) { Ok(()) } else { bail!("refused: {v}") }
}

/// The `sockets` scenario's settings.
struct SocketRun {
    addr2: Option<SocketAddr>,
    pid2: Option<u32>,
    setup_addr: Option<SocketAddr>,
    count: usize,
    pairs: usize,
    duration: f64,
    in_flight: usize,
}

async fn sockets(common: &Common, run: &SocketRun, threads: usize) -> anyhow::Result<()> {
    let SocketRun { addr2, pid2, setup_addr, count, pairs, duration, in_flight } = *run;
    let addrs: Vec<String> = std::iter::once(common.addr).chain(addr2).map(|a| a.to_string()).collect();
    let pids: Vec<u32> = common.server_pid.into_iter().chain(pid2).collect();
    let closed = Arc::new(AtomicUsize::new(0));
    // Accounts and appointments (not for the echo).
    let mut people: Vec<(Person, Person, String)> = Vec::new();
    if !common.ceiling {
        let mut c =
            Clinic::open(setup_addr.unwrap_or(common.addr), &common.admin_email, &common.admin_password).await?;
        let start = clinic::this_minute() - time::Duration::minutes(1);
        for _ in 0..pairs {
            let (d, p) = (c.practitioner().await?, c.patient().await?);
            let a = c.appointment(&d, &p, start, 60).await?;
            people.push((d, p, a));
        }
    }
    let rss = |pids: &[u32]| pids.iter().map(|p| rss_kib(*p).unwrap_or(0)).sum::<u64>();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss(&pids);
    let connect_started = Instant::now();
    // The pairs: the practitioner on the first instance, the patient on the last one.
    let mut measured = Vec::new();
    for i in 0..pairs {
        let (doc_auth, pat_auth, appointment) = match people.get(i) {
            Some((d, p, a)) => (Some(json!({"token": d.token})), Some(json!({"token": p.token})), a.clone()),
            None => (None, None, String::new()),
        };
        let (dtx, doc_events) = mpsc::unbounded_channel();
        let (ptx, pat_events) = mpsc::unbounded_channel();
        let doc = sio::connect(&addrs[0], NS, doc_auth.as_ref(), Some(dtx), closed.clone()).await?;
        let pat = sio::connect(addrs.last().unwrap(), NS, pat_auth.as_ref(), Some(ptx), closed.clone()).await?;
        measured.push(Pair { appointment, doc, doc_events, pat, pat_events });
    }
    if !common.ceiling {
        for p in &mut measured {
            let (id, _) = p.doc.emit("room:join", &json!({"appointmentId": p.appointment}))?;
            ack_ok(&sio::await_ack(&mut p.doc_events, NS, id, WAIT).await?)?;
        }
    }
    // The held connections, spread over the instances, `in_flight` handshakes at a time.
    let held = count.saturating_sub(2 * pairs);
    let tokens: Vec<String> = people.iter().flat_map(|(d, p, _)| [d.token.clone(), p.token.clone()]).collect();
    let gate = Arc::new(Semaphore::new(in_flight.max(1)));
    let mut handshakes = Vec::with_capacity(held);
    for i in 0..held {
        let addr = addrs[i % addrs.len()].clone();
        let auth = (!tokens.is_empty()).then(|| json!({"token": tokens[i % tokens.len()]}));
        let (gate, closed) = (gate.clone(), closed.clone());
        handshakes.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            sio::connect(&addr, NS, auth.as_ref(), None, closed).await
        }));
    }
    let mut held_sockets = Vec::with_capacity(held);
    let mut failed = 0usize;
    let mut first_error = None;
    for h in handshakes {
        match h.await? {
            Ok(s) => held_sockets.push(s),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    if let Some(e) = &first_error {
        eprintln!("control-load: {failed} connections failed; the first: {e}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss(&pids);
    let open = 2 * measured.len() + held_sockets.len();
    // The lobby event (or the echo), each pair in turn as fast as it goes, for `duration`.
    let end = Instant::now() + Duration::from_secs_f64(duration);
    let meters: Vec<CpuMeter> = pids.iter().map(|p| CpuMeter::start(Some(*p))).collect();
    let own = CpuMeter::start(None);
    let ceiling = common.ceiling;
    let mut tasks = Vec::new();
    for mut p in measured {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < end {
                if ceiling {
                    let (id, t0) = p.pat.emit("echo", &json!({"n": lat.len()}))?;
                    let (t1, _) = sio::await_event(&mut p.pat_events, NS, "echo", WAIT).await?;
                    ack_ok(&sio::await_ack(&mut p.pat_events, NS, id, WAIT).await?)?;
                    lat.push((t1 - t0).as_secs_f64() * 1e3);
                } else {
                    let (id, t0) = p.pat.emit("room:join", &json!({"appointmentId": p.appointment}))?;
                    let (t1, _) = sio::await_event(&mut p.doc_events, NS, "lobby:patient-arrived", WAIT).await?;
                    ack_ok(&sio::await_ack(&mut p.pat_events, NS, id, WAIT).await?)?;
                    lat.push((t1 - t0).as_secs_f64() * 1e3);
                    let (id, _) = p.pat.emit("room:leave", &json!({}))?;
                    ack_ok(&sio::await_ack(&mut p.pat_events, NS, id, WAIT).await?)?;
                }
            }
            anyhow::Ok((lat, p))
        }));
    }
    let mut lat = Vec::new();
    let mut keep = Vec::new();
    for t in tasks {
        let (l, p) = t.await??;
        lat.extend(l);
        keep.push(p);
    }
    let own = own.stop();
    let wall = own.wall;
    let server_cpu: f64 = meters.iter().filter_map(|m| m.stop().server).sum();
    let events = lat.len();
    let dropped = closed.load(Ordering::Relaxed);
    let per_socket = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / open.max(1) as f64;
    println!(
        "RESULT scenario=sockets label={} instances={} open={open} failed={failed} dropped={dropped} connect_s={connect_secs:.1} \
         rss_before_kib={rss_before} rss_after_kib={rss_after} bytes_per_socket={per_socket:.0} pairs={pairs} events={events} \
         events_per_s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} server_cpu_us_per_event={:.0} generator_cores={:.2} generator_full={}",
        common.label,
        addrs.len(),
        events as f64 / wall,
        quantile(&mut lat, 0.5),
        quantile(&mut lat, 0.99),
        quantile(&mut lat, 1.0),
        if events > 0 { server_cpu * 1e6 / events as f64 } else { 0.0 },
        own.generator / wall,
        own.generator / wall >= 0.9 * threads as f64,
    );
    drop(held_sockets);
    drop(keep);
    if failed > 0 || dropped > 0 {
        bail!("{failed} connections failed and {dropped} dropped");
    }
    Ok(())
}
