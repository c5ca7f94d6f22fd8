//! A private `redis-server` for the tests that need one.

#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private `redis-server` on a Unix socket in its own directory (a TCP port picked here could
/// be picked by a test running alongside too), stopped on drop.
pub struct RedisServer {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our own Redis, or `None` (with a message) where none is installed; in CI it must be.
pub fn redis_server() -> Option<RedisServer> {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("redis.sock");
    let spawned = Command::new("redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(&socket)
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "redis-server is required in CI: {e}");
            eprintln!("SKIPPED the Redis half: cannot start redis-server ({e}); apt-get install redis-server");
            return None;
        }
    };
    let server = RedisServer { child, url: format!("redis+unix://{}", socket.display()), _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen on {} within 10 s", socket.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}
