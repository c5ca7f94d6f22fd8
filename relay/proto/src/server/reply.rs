//! Building responses: success and error answers, signed when the request was authenticated.

use crate::IntegrityKey;
use crate::codec::{Class, EncodeError, IntegrityKind, Message, MessageWriter, attr};

/// How to sign the answer to an authenticated request: with the same integrity attribute and
/// key that authenticated it (RFC 8489 §9.2.4).
pub(crate) struct Signer<'k> {
    pub kind: IntegrityKind,
    pub key: &'k IntegrityKey,
}

/// The reason phrase sent with each error code in a signed answer. Unsigned answers (to
/// requests that have not passed message integrity) carry none: see [`respond_error`].
pub(crate) const fn reason_phrase(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthenticated",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        486 => "Allocation Quota Reached",
        508 => "Insufficient Capacity",
        _ => "Server Error",
    }
}

/// Writes a response to `request` into `out`: `body` adds the attributes, then come
/// MESSAGE-INTEGRITY(-SHA256) if `signer` is given and FINGERPRINT if the request had one.
/// `None` if it does not fit (the caller drops the request).
pub(crate) fn respond(
    out: &mut [u8],
    request: &Message<'_>,
    class: Class,
    signer: Option<&Signer<'_>>,
    body: impl FnOnce(&mut MessageWriter<'_>) -> Result<(), EncodeError>,
) -> Option<usize> {
    let build = || -> Result<usize, EncodeError> {
        let mut w = MessageWriter::new(out, request.method(), class, request.transaction_id())?;
        body(&mut w)?;
        if let Some(s) = signer {
            w.integrity(s.kind, s.key)?;
        }
        if request.has_fingerprint() { w.finish_with_fingerprint() } else { Ok(w.finish()) }
    };
    build().ok()
}

/// An error response with ERROR-CODE `code` and whatever `extra` adds. An unsigned answer has
/// an empty reason phrase: RFC 8489 §14.8 allows it (the phrase is for humans, the code is what
/// clients act on), and to an unauthenticated request every byte of the answer is reflection
/// amplification (docs/relay-security.md §5).
pub(crate) fn respond_error(
    out: &mut [u8],
    request: &Message<'_>,
    code: u16,
    signer: Option<&Signer<'_>>,
    extra: impl FnOnce(&mut MessageWriter<'_>) -> Result<(), EncodeError>,
) -> Option<usize> {
    let reason = if signer.is_some() { reason_phrase(code) } else { "" };
    respond(out, request, Class::Error, signer, |w| {
        w.error_code(code, reason)?;
        extra(w)
    })
}

/// The PASSWORD-ALGORITHMS value this server offers: SHA-256 first (preferred), then MD5, each
/// without parameters.
pub(crate) const OFFERED_PASSWORD_ALGORITHMS: [u8; 8] = [0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];

/// Adds REALM, NONCE and, when the nonce carries the cookie, PASSWORD-ALGORITHMS (RFC 8489
/// §9.2.4: the two go together): what a 401, 438 or 300 must carry so that the client can
/// (re)try.
pub(crate) fn challenge_attributes(w: &mut MessageWriter<'_>, realm: &str, nonce: &[u8]) -> Result<(), EncodeError> {
    w.bytes(attr::REALM, realm.as_bytes())?;
    w.bytes(attr::NONCE, nonce)?;
    if crate::nonce::offered_password_algorithms(nonce) {
        w.bytes(attr::PASSWORD_ALGORITHMS, &OFFERED_PASSWORD_ALGORITHMS)?;
    }
    Ok(())
}
