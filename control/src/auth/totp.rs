//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): HMAC-SHA-1, 6 digits, 30 s
//! steps, the codes of the step before and after accepted for clock drift. Sans-IO: the time
//! is an argument, and which step was last used (replay refusal) is the caller's to keep.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Seconds per step (RFC 6238 section 5.2's recommended X).
pub const STEP_SECONDS: i64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Bytes of a new secret: 160 bits, the HMAC-SHA-1 output size (RFC 4226 section 4 R6).
pub const SECRET_BYTES: usize = 20;
/// Steps accepted before and after the current one.
const DRIFT_STEPS: i64 = 1;

/// Why a code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("the code is not 6 digits")]
    Malformed,
    #[error("the code is wrong")]
    Wrong,
    #[error("the code was already used")]
    Replayed,
}

/// A shared TOTP secret. Never shown in `Debug`.
pub struct Totp {
    secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Totp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Totp(<secret>)")
    }
}

impl Totp {
    pub fn new(secret: Vec<u8>) -> Totp {
        Totp { secret: Zeroizing::new(secret) }
    }

    /// A secret from its base32 text (RFC 4648, the `secret` of an `otpauth://` URI; case,
    /// spaces and padding are ignored).
    pub fn from_base32(text: &str) -> Option<Totp> {
        let cleaned: String =
            text.chars().filter(|c| !c.is_whitespace() && *c != '=').map(|c| c.to_ascii_uppercase()).collect();
        data_encoding::BASE32_NOPAD.decode(cleaned.as_bytes()).ok().filter(|s| !s.is_empty()).map(Totp::new)
    }

    /// The secret as base32 without padding, as authenticator apps take it.
    pub fn base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.secret)
    }

    /// The step a Unix time falls in.
    pub fn step_at(unix_seconds: i64) -> i64 {
        unix_seconds.div_euclid(STEP_SECONDS)
    }

    /// HOTP (RFC 4226 section 5.3) of `counter` with `digits` digits.
    fn hotp(&self, counter: u64, digits: u32) -> u32 {
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(&counter.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let offset = (digest[19] & 0x0f) as usize;
        let binary =
            u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
        binary % 10u32.pow(digits)
    }

    /// The code of `step`, zero-padded.
    pub fn code_at_step(&self, step: i64) -> String {
        format!("{:0width$}", self.hotp(step as u64, DIGITS), width = DIGITS as usize)
    }

    /// Checks `code` at `unix_seconds`: the step it belongs to (within one step of now), which
    /// the caller records as used. A step at or before `last_used_step` is a replay: a code
    /// observed once (over a shoulder, in a log) cannot be used again, nor an older one.
    pub fn verify(&self, code: &str, unix_seconds: i64, last_used_step: Option<i64>) -> Result<i64, TotpError> {
        let code = code.trim();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TotpError::Malformed);
        }
        let now = Totp::step_at(unix_seconds);
        let matched = (now - DRIFT_STEPS..=now + DRIFT_STEPS)
            .filter(|step| *step >= 0)
            .find(|step| bool::from(self.code_at_step(*step).as_bytes().ct_eq(code.as_bytes())))
            .ok_or(TotpError::Wrong)?;
        if last_used_step.is_some_and(|last| matched <= last) {
            return Err(TotpError::Replayed);
        }
        Ok(matched)
    }

    /// The `otpauth://totp/` URI (the Key Uri Format authenticator apps read, usually as a QR
    /// code): label `issuer:account`, and every parameter spelled out.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let issuer = percent_encode(issuer);
        format!(
            "otpauth://totp/{issuer}:{}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            percent_encode(account),
            self.base32()
        )
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, the SHA-1 rows: (time, 8-digit TOTP).
    const RFC6238_SHA1: [(i64, u32); 6] = [
        (59, 94287082),
        (1111111109, 7081804),
        (1111111111, 14050471),
        (1234567890, 89005924),
        (2000000000, 69279037),
        (20000000000, 65353130),
    ];

    fn rfc_key() -> Totp {
        Totp::new(b"12345678901234567890".to_vec())
    }

    #[test]
    fn the_rfc_6238_test_vectors_hold() {
        let totp = rfc_key();
        for (time, expected) in RFC6238_SHA1 {
            assert_eq!(totp.hotp(Totp::step_at(time) as u64, 8), expected, "T = {time}");
            // Six digits are the last six of the eight (the modulus is taken of the same number).
            assert_eq!(totp.code_at_step(Totp::step_at(time)), format!("{:06}", expected % 1_000_000));
        }
    }

    #[test]
    fn one_step_of_drift_is_accepted_two_are_not() {
        let totp = rfc_key();
        let now = 1234567890;
        let step = Totp::step_at(now);
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = totp.code_at_step(step + offset);
            assert_eq!(totp.verify(&code, now, None).is_ok(), accepted, "offset {offset}");
        }
        assert_eq!(totp.verify(&totp.code_at_step(step), now, None), Ok(step));
    }

    #[test]
    fn a_used_step_is_refused_as_a_replay() {
        let totp = rfc_key();
        let now = 2000000000;
        let step = Totp::step_at(now);
        let code = totp.code_at_step(step);
        assert_eq!(totp.verify(&code, now, Some(step)), Err(TotpError::Replayed));
        // An older code after a newer one was used is a replay as well.
        assert_eq!(totp.verify(&totp.code_at_step(step - 1), now, Some(step)), Err(TotpError::Replayed));
        assert_eq!(totp.verify(&totp.code_at_step(step + 1), now, Some(step)), Ok(step + 1));
    }

    #[test]
    fn malformed_and_wrong_codes_are_told_apart() {
        let totp = rfc_key();
        assert_eq!(totp.verify("12345", 59, None), Err(TotpError::Malformed));
        assert_eq!(totp.verify("12a456", 59, None), Err(TotpError::Malformed));
        let right = totp.code_at_step(1);
        let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
        assert_eq!(totp.verify(&wrong, 59, None), Err(TotpError::Wrong));
    }

    #[test]
    fn the_base32_secret_and_uri_round_trip() {
        let totp = rfc_key();
        assert_eq!(totp.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let again = Totp::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(again.code_at_step(7), totp.code_at_step(7));
        assert_eq!(
            totp.otpauth_uri("teletip", "dr.a@hospital.test"),
            "otpauth://totp/teletip:dr.a%40hospital.test?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=teletip&algorithm=SHA1&digits=6&period=30"
        );
        assert!(Totp::from_base32("not base32!").is_none());
    }
}
