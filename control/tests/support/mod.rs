//! Shared by the control plane's tests: which databases to run against (SQLite always,
//! PostgreSQL from `TELETIP_TEST_DATABASE_URL`, which `.ci/with-postgres` sets; required in
//! CI), a fresh database per test, and the real `teletip-control` binary as a process.

#![allow(dead_code)]

pub mod clinic;
pub mod http;
pub mod link_peer;
pub mod pki;
pub mod redis_server;
pub mod relay;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The engines to test: SQLite, and PostgreSQL when a server is given. In CI a missing
/// PostgreSQL is an error, never a silent skip.
pub fn engines() -> Vec<Engine> {
    match std::env::var("TELETIP_TEST_DATABASE_URL") {
        Ok(_) => vec![Engine::Sqlite, Engine::Postgres],
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "TELETIP_TEST_DATABASE_URL is required in CI (run the tests through .ci/with-postgres)"
            );
            eprintln!("SKIPPED the PostgreSQL half: TELETIP_TEST_DATABASE_URL is not set (use .ci/with-postgres)");
            vec![Engine::Sqlite]
        }
    }
}

/// A new, empty database for one test: a file in `dir` for SQLite, a new database on the
/// PostgreSQL server otherwise.
pub async fn fresh_database(engine: Engine, dir: &Path) -> String {
    match engine {
        Engine::Sqlite => format!("sqlite://{}", dir.join(format!("t-{}.db", uuid::Uuid::new_v4())).display()),
        Engine::Postgres => {
            let base = std::env::var("TELETIP_TEST_DATABASE_URL").expect("checked by engines()");
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&base).await.expect("connect to the test PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create a test database");
            let (prefix, _) = base.rsplit_once('/').expect("a database URL ends in /dbname");
            format!("{prefix}/{name}")
        }
    }
}

/// A running `teletip-control serve`.
pub struct Control {
    child: Child,
    pub base: String,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub database_url: String,
}

impl Control {
    /// Writes `extra_toml` after the generated basics (listen on a free port, the database,
    /// a data directory) and starts the service.
    pub fn start(dir: &Path, database_url: &str, extra_toml: &str) -> Control {
        Control::start_with(dir, database_url, extra_toml, "warn", Stdio::inherit())
    }

    /// As `start`, at log level `rust_log`, with standard error (the log) into `log`.
    pub fn start_logging(dir: &Path, database_url: &str, extra_toml: &str, rust_log: &str, log: &Path) -> Control {
        let file = std::fs::File::create(log).unwrap();
        Control::start_with(dir, database_url, extra_toml, rust_log, Stdio::from(file))
    }

    fn start_with(dir: &Path, database_url: &str, extra_toml: &str, rust_log: &str, stderr: Stdio) -> Control {
        let config_path = dir.join("control.toml");
        let data_dir = dir.join("data");
        std::fs::write(
            &config_path,
            format!(
                "listen = \"127.0.0.1:0\"\ndatabase-url = \"{database_url}\"\ndata-dir = \"{}\"\n{extra_toml}\n",
                data_dir.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_teletip-control"))
            .args(["--config", config_path.to_str().unwrap(), "serve"])
            .env("RUST_LOG", rust_log)
            // The test clock (control/src/clock.rs): offset 0 until `set_clock` writes the file.
            .env("TELETIP_CONTROL_TEST_CLOCK", dir.join("clock-offset"))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start teletip-control");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("teletip-control listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(30)).expect("teletip-control printed where it listens");
        Control { child, base, dir: dir.to_owned(), config_path, database_url: database_url.into() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Moves the service's clock to the real time plus `offset` (whole seconds), instead of
    /// waiting for time to pass or backdating rows.
    pub fn set_clock(&self, offset: time::Duration) {
        std::fs::write(self.dir.join("clock-offset"), format!("{}\n", offset.whole_seconds())).unwrap();
    }

    /// The process id of the running service (to read its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs a `teletip-control` subcommand with this instance's configuration.
    pub fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        cli(&self.config_path, args, stdin)
    }

    /// Stops this control plane (SIGTERM) and starts it again with the same configuration,
    /// database and data directory.
    pub fn restart(self) -> Control {
        let (dir, database_url, config) = (self.dir.clone(), self.database_url.clone(), self.config_path.clone());
        self.stop();
        // `start` writes listen, database-url and data-dir itself, first.
        let extra: String =
            std::fs::read_to_string(&config).unwrap().lines().skip(3).map(|l| format!("{l}\n")).collect();
        Control::start(&dir, &database_url, &extra)
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

/// Runs `teletip-control --config CONFIG ARGS` with `stdin`, to its end.
pub fn cli(config: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_teletip-control"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Control {
    fn drop(&mut self) {
        end_child(&mut self.child);
    }
}

/// Ends a daemon a test started. Under coverage (`cargo llvm-cov` sets `cfg(coverage)`) a
/// process writes its profile only when it exits by itself, so it is asked with SIGTERM first
/// and killed only if it has not stopped within 5 s; otherwise it is killed at once.
pub fn end_child(child: &mut Child) {
    #[cfg(coverage)]
    {
        // SAFETY: signalling our own child process.
        unsafe { libc_kill(child.id() as i32, 15) };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
