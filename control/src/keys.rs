//! Key material: configured keys, or keys generated on first start and kept in the data
//! directory (mode 0600) so that restarts do not log everyone out or break relay credentials.

use std::io::Write;
use std::path::Path;

use crate::config::{ControlConfig, KeyConfig};

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `key-id=secret` from `path`, creating it with a fresh random secret if missing. The
/// format is the one `teletip-relay --static-auth-secret-file` reads, so a local relay can
/// share the control plane's generated secret.
fn generated(path: &Path, key_id: &str) -> anyhow::Result<(String, Vec<u8>)> {
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(path)?;
        writeln!(f, "{key_id}={}", random_hex(32))?;
        tracing::info!("generated {}", path.display());
    }
    let text = std::fs::read_to_string(path)?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| anyhow::anyhow!("{} is empty", path.display()))?;
    let secret = crate::config::secret_of_line(line);
    let id = if secret.len() < line.len() { line.split_once('=').map_or(key_id, |(id, _)| id.trim()) } else { key_id };
    Ok((id.to_string(), secret.as_bytes().to_vec()))
}

fn configured(keys: &[KeyConfig]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    keys.iter()
        .map(|k| {
            let secret = k.load()?;
            anyhow::ensure!(secret.len() >= 32, "key {:?} must be at least 32 bytes", k.key_id);
            Ok((k.key_id.clone(), secret.into_bytes()))
        })
        .collect()
}

pub fn jwt_keys(config: &ControlConfig) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    if config.auth.jwt_keys.is_empty() {
        Ok(vec![generated(&config.data_dir.join("jwt.key"), "local")?])
    } else {
        configured(&config.auth.jwt_keys)
    }
}

pub fn ice_secrets(config: &ControlConfig) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    if config.ice.secrets.is_empty() {
        Ok(vec![generated(&config.data_dir.join("relay.secret"), "local")?])
    } else {
        configured(&config.ice.secrets)
    }
}

/// The field-encryption keys: configured, or generated on first start.
pub fn field_keys(config: &ControlConfig) -> anyhow::Result<crate::crypto::FieldKeys> {
    let fe = &config.field_encryption;
    let data = if fe.data_keys.is_empty() {
        vec![generated(&config.data_dir.join("field.key"), "local")?]
    } else {
        configured(&fe.data_keys)?
    };
    let index = match &fe.index_key {
        Some(k) => k.load()?.into_bytes(),
        None => generated(&config.data_dir.join("index.key"), "index")?.1,
    };
    crate::crypto::FieldKeys::from_config(&data, index).map_err(|e| anyhow::anyhow!("field-encryption: {e}"))
}
