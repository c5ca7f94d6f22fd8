//! The backup file: a short plain header naming what the file holds, then the dump encrypted
//! with AES-256-GCM under the backup key. The header is the associated data, so it is
//! authenticated with the contents: a changed engine, schema version or date fails to
//! decrypt like a changed byte of the dump.
//!
//! ```text
//! TELETIP-BACKUP\n
//! {"format":1,"engine":"postgres","schemaVersion":7,"createdAt":"…","keyId":"…","nonce":"…"}\n
//! AES-256-GCM(key, nonce, aad = the two lines above, dump) ‖ tag
//! ```
//!
//! The nonce is 96 random bits per file. The key id is a fingerprint of the key (not the key),
//! so that a file made under another key is named as such instead of as a damaged file.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::BackupError;

const MAGIC: &[u8] = b"TELETIP-BACKUP\n";
/// The version of this layout and of the dump inside it.
pub const FORMAT: u32 = 1;
const KEY_LEN: usize = 32;

/// What a backup file says about itself, readable without the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Header {
    pub format: u32,
    /// `sqlite` or `postgres`: a backup is restored into the engine it was made from.
    pub engine: String,
    /// The last migration applied to the database the backup was made from.
    pub schema_version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub key_id: String,
    nonce: String,
}

/// The 256-bit backup key, read from the key file: 64 hex digits or the base64 of 32 bytes
/// (`openssl rand -base64 32`). It is not any of the database's keys.
pub struct BackupKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl BackupKey {
    pub fn parse(text: &str) -> Result<BackupKey, BackupError> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..KEY_LEN).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex checked")).collect()
        } else {
            STANDARD.decode(text).map_err(|_| BackupError::BadKey)?
        };
        let bytes = Zeroizing::new(bytes);
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| BackupError::BadKey)?;
        Ok(BackupKey { key: Zeroizing::new(key) })
    }

    pub fn read(path: &std::path::Path) -> Result<BackupKey, BackupError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| BackupError::KeyFile { path: path.to_owned(), reason: e.to_string() })?,
        );
        BackupKey::parse(&text)
    }

    /// A non-secret fingerprint of the key, written into every file it seals.
    pub fn id(&self) -> String {
        let digest =
            Sha256::new().chain_update(b"teletip-backup-key-id\0").chain_update(self.key.as_slice()).finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.key.as_slice()))
    }
}

/// Encrypts `dump` into a backup file's bytes.
pub fn seal(
    key: &BackupKey,
    engine: &str,
    schema_version: i64,
    created_at: OffsetDateTime,
    dump: &[u8],
) -> Result<Vec<u8>, BackupError> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let header = Header {
        format: FORMAT,
        engine: engine.into(),
        schema_version,
        created_at,
        key_id: key.id(),
        nonce: STANDARD.encode(nonce),
    };
    let mut out = MAGIC.to_vec();
    serde_json::to_writer(&mut out, &header).expect("a header serialises");
    out.push(b'\n');
    let sealed = key.cipher().encrypt(&nonce, Payload { msg: dump, aad: &out }).map_err(|_| BackupError::Encrypt)?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The header of a backup file, checked for shape only (nothing is authenticated yet).
pub fn header(file: &[u8]) -> Result<(Header, usize), BackupError> {
    let rest = file.strip_prefix(MAGIC).ok_or(BackupError::NotABackup)?;
    let end = rest.iter().position(|&b| b == b'\n').ok_or(BackupError::NotABackup)?;
    let header: Header = serde_json::from_slice(&rest[..end]).map_err(|_| BackupError::NotABackup)?;
    if header.format != FORMAT {
        return Err(BackupError::Format(header.format));
    }
    Ok((header, MAGIC.len() + end + 1))
}

/// The header and the dump of a backup file, once the key and the authentication tag agree.
pub fn open(key: &BackupKey, file: &[u8]) -> Result<(Header, Zeroizing<Vec<u8>>), BackupError> {
    let (header, body_at) = header(file)?;
    if header.key_id != key.id() {
        return Err(BackupError::ForeignKey { file: header.key_id, ours: key.id() });
    }
    let nonce = STANDARD.decode(&header.nonce).ok().filter(|n| n.len() == 12).ok_or(BackupError::Tampered)?;
    let dump = key
        .cipher()
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &file[body_at..], aad: &file[..body_at] })
        .map_err(|_| BackupError::Tampered)?;
    Ok((header, Zeroizing::new(dump)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> BackupKey {
        BackupKey::parse(&STANDARD.encode([byte; 32])).unwrap()
    }

    fn sealed() -> Vec<u8> {
        seal(&key(1), "sqlite", 7, OffsetDateTime::UNIX_EPOCH, b"the dump").unwrap()
    }

    #[test]
    fn a_sealed_file_opens_under_its_key() {
        let (header, dump) = open(&key(1), &sealed()).unwrap();
        assert_eq!(dump.as_slice(), b"the dump");
        assert_eq!((header.engine.as_str(), header.schema_version), ("sqlite", 7));
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let file = sealed();
        for i in MAGIC.len()..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(open(&key(1), &bad).is_err(), "byte {i} changed, still opened");
        }
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let file = sealed();
        assert!(matches!(open(&key(1), &file[..file.len() - 1]), Err(BackupError::Tampered)));
    }

    #[test]
    fn another_key_is_named_as_such() {
        assert!(matches!(open(&key(2), &sealed()), Err(BackupError::ForeignKey { .. })));
    }

    #[test]
    fn keys_are_hex_or_base64_of_32_bytes() {
        assert_eq!(BackupKey::parse(&"ab".repeat(32)).unwrap().id(), key(0xab).id());
        assert!(matches!(BackupKey::parse("c2hvcnQ="), Err(BackupError::BadKey)));
        assert!(matches!(BackupKey::parse("not a key"), Err(BackupError::BadKey)));
    }
}
