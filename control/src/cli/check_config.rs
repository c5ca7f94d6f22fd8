//! `teletip-control check-config`: everything `serve` needs, checked without starting it and
//! without creating anything: the settings (already parsed and validated by the caller), every
//! key and certificate file (present, readable, not readable by other users, usable), the
//! database (reachable, set up) and Redis (answering). One plain line per finding; errors make
//! the command fail.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::config::{ControlConfig, KeyConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warning,
    Error,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "error",
        };
        write!(f, "{level}: {}", self.message)
    }
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn push(&mut self, level: Level, message: impl Into<String>) {
        self.0.push(Finding { level, message: message.into() });
    }
}

/// Every finding, in the order checked.
pub async fn run(config: &ControlConfig) -> Vec<Finding> {
    let mut f = Findings::default();
    f.push(Level::Ok, "the settings parse and validate");
    keys(&mut f, "auth.jwt-keys", &config.auth.jwt_keys, &config.data_dir.join("jwt.key"));
    keys(&mut f, "ice.secrets", &config.ice.secrets, &config.data_dir.join("relay.secret"));
    keys(&mut f, "field-encryption.data-keys", &config.field_encryption.data_keys, &config.data_dir.join("field.key"));
    let index: Vec<KeyConfig> = config.field_encryption.index_key.iter().cloned().collect();
    keys(&mut f, "field-encryption.index-key", &index, &config.data_dir.join("index.key"));
    if let Some(link) = &config.relay_link {
        for (what, path) in [("cert", &link.cert), ("key", &link.key), ("client-ca", &link.client_ca)] {
            file(&mut f, &format!("relay-link.{what}"), path, what == "key");
        }
        match teletip_link::tls::server_config(&link.cert, &link.key, &link.client_ca) {
            Ok(_) => f.push(Level::Ok, "relay-link: the certificate, key and client CA make a TLS configuration"),
            Err(e) => f.push(Level::Error, format!("relay-link: {e}")),
        }
    }
    database(&mut f, config).await;
    if let Some(url) = &config.redis_url {
        redis(&mut f, url).await;
    }
    f.0
}

/// Configured keys (inline or in files), or the file generated in the data directory.
fn keys(f: &mut Findings, setting: &str, configured: &[KeyConfig], generated: &Path) {
    if configured.is_empty() {
        if generated.exists() {
            file(f, &format!("{setting} (generated)"), generated, true);
        } else {
            f.push(
                Level::Warning,
                format!("{setting}: none configured; {} will be generated at the first start", generated.display()),
            );
        }
        return;
    }
    for key in configured {
        let name = format!("{setting} {:?}", key.key_id);
        if let Some(path) = &key.secret_file {
            if !file(f, &name, path, true) {
                continue;
            }
        } else {
            f.push(
                Level::Warning,
                format!("{name}: the secret is written in the configuration file; prefer secret-file"),
            );
        }
        match key.load() {
            Ok(secret) if secret.len() >= 32 => {
                f.push(Level::Ok, format!("{name}: a secret of {} bytes", secret.len()))
            }
            Ok(secret) => f.push(Level::Error, format!("{name}: {} bytes; at least 32 are needed", secret.len())),
            Err(e) => f.push(Level::Error, format!("{name}: {e}")),
        }
    }
}

/// A file the service reads: present, readable, and (for secrets) not open to other users.
/// Whether it can be used.
fn file(f: &mut Findings, setting: &str, path: &Path, secret: bool) -> bool {
    let meta = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            f.push(Level::Error, format!("{setting}: {} is not a file", path.display()));
            return false;
        }
        Err(e) => {
            f.push(Level::Error, format!("{setting}: {}: {e}", path.display()));
            return false;
        }
    };
    if let Err(e) = std::fs::File::open(path) {
        f.push(Level::Error, format!("{setting}: {} cannot be read: {e}", path.display()));
        return false;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o002 != 0 {
        f.push(Level::Error, format!("{setting}: {} is writable by every user (mode {mode:o})", path.display()));
        return false;
    }
    if secret && mode & 0o004 != 0 {
        f.push(
            Level::Error,
            format!("{setting}: {} is readable by every user (mode {mode:o}); chmod 600 or 640", path.display()),
        );
        return false;
    }
    f.push(Level::Ok, format!("{setting}: {} (mode {mode:o})", path.display()));
    true
}

/// The database answers and holds the schema; a SQLite file that is not there yet is created
/// by `serve` or `migrate` (not here).
async fn database(f: &mut Findings, config: &ControlConfig) {
    let url = &config.database_url;
    if let Some(missing) = super::database::missing_file(url) {
        f.push(Level::Warning, format!("database: {missing}; `serve` or `migrate` creates it"));
        return;
    }
    let store = match tokio::time::timeout(Duration::from_secs(10), crate::store::open(url)).await {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => return f.push(Level::Error, format!("database: cannot open it: {e}")),
        Err(_) => return f.push(Level::Error, "database: no answer within 10 s"),
    };
    if let Err(e) = store.ping().await {
        return f.push(Level::Error, format!("database: {e}"));
    }
    match super::database::missing_schema(&store).await {
        None => f.push(Level::Ok, format!("database: {} answers and is set up", store.engine())),
        Some(why) => f.push(Level::Warning, format!("database: {why}; `serve` or `migrate` sets it up")),
    }
}

async fn redis(f: &mut Findings, url: &str) {
    let client = match redis::Client::open(url) {
        Ok(c) => c,
        Err(e) => return f.push(Level::Error, format!("redis-url: {e}")),
    };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(5), ping).await {
        Ok(Ok(_)) => f.push(Level::Ok, "redis-url: Redis answers"),
        Ok(Err(e)) => f.push(Level::Error, format!("redis-url: {e}")),
        Err(_) => f.push(Level::Error, "redis-url: no answer within 5 s"),
    }
}
