//! The long-term credential check of RFC 8489 §9.2.4 with TURN REST usernames.

use super::reply::{OFFERED_PASSWORD_ALGORITHMS, Signer, challenge_attributes, respond_error};
use super::{Action, AuthFailure, DropReason, FiveTuple, Payload, RelayBinder, Shard, within_amplification_bound};
use crate::IntegrityKey;
use crate::codec::{IntegrityKind, Message, attr};
use crate::credentials::{PasswordAlgorithm, long_term_key, parse_rest_username, rest_password};
use crate::nonce::{NonceCheck, offered_password_algorithms};
use crate::time::Millis;

/// A request whose credentials checked out.
pub(crate) struct Authenticated<'m> {
    pub username: &'m str,
    pub user_id: &'m str,
    pub algorithm: PasswordAlgorithm,
    pub key: IntegrityKey,
    pub kind: IntegrityKind,
    /// The counter slot of the secret's key id (`SecretRing`).
    pub secret_slot: usize,
}

impl Authenticated<'_> {
    pub fn signer(&self) -> Signer<'_> {
        Signer { kind: self.kind, key: &self.key }
    }
}

impl<B: RelayBinder> Shard<B> {
    /// Authenticates a TURN request, or returns the answer (401, 438, 400) to send instead.
    pub(crate) fn authenticate<'m>(
        &mut self,
        now: Millis,
        tuple: &FiveTuple,
        msg: &Message<'m>,
        out: &mut [u8],
    ) -> Result<Authenticated<'m>, Action> {
        if !msg.has_integrity() {
            // The normal first step of every TURN client, not a failure.
            self.stats.challenges += 1;
            return Err(self.challenge(now, tuple, msg, out, 401));
        }
        let (Some(username), Some(_realm), Some(nonce)) =
            (msg.text(attr::USERNAME), msg.get(attr::REALM), msg.get(attr::NONCE))
        else {
            self.stats.auth_failed(AuthFailure::MissingAttributes);
            return Err(self.unauthenticated_error(now, tuple, msg, out, 400));
        };
        if self.config.nonces.check(now, tuple.transport.code(), tuple.client, nonce) != NonceCheck::Valid {
            self.stats.auth_failed(AuthFailure::StaleNonce);
            return Err(self.challenge(now, tuple, msg, out, 438));
        }
        let Some(algorithm) = negotiated_algorithm(msg, nonce) else {
            self.stats.auth_failed(AuthFailure::BadPasswordAlgorithm);
            return Err(self.unauthenticated_error(now, tuple, msg, out, 400));
        };
        let rest = match parse_rest_username(username) {
            Ok(r) => r,
            Err(_) => return Err(self.refuse(now, tuple, msg, out, AuthFailure::BadUsername)),
        };
        let now_secs = now.unix_secs();
        if now_secs >= rest.expiry {
            return Err(self.refuse(now, tuple, msg, out, AuthFailure::Expired));
        }
        let max = self.config.max_credential_lifetime;
        if max != 0 && rest.expiry > now_secs.saturating_add(max) {
            return Err(self.refuse(now, tuple, msg, out, AuthFailure::LifetimeTooLong));
        }
        // Before the key reuse below: a revoked session is refused on every request, as if its
        // credentials had expired (its allocations are being ended by the same order).
        if self.controls.revocations.is_revoked(rest.id, now_secs) {
            return Err(self.refuse(now, tuple, msg, out, AuthFailure::Revoked));
        }
        // The allocation on this 5-tuple already knows the key for its username.
        if let Some(&index) = self.by_client.get(tuple) {
            let a = &self.allocations[index];
            if &*a.username == username && a.key.0 == algorithm {
                if let Some(kind) = msg.verify_integrity(&a.key.1) {
                    let (key, secret_slot) = (a.key.1.clone(), a.secret_slot);
                    return Ok(Authenticated { username, user_id: rest.id, algorithm, key, kind, secret_slot });
                }
            }
        }
        // The set as it is now: a rotation published meanwhile applies from the next request.
        let secrets = self.controls.secrets.current();
        for accepted in &secrets.accepted {
            let password = rest_password(accepted.secret.value(), username);
            let key = long_term_key(algorithm, username, &self.config.realm, &password);
            if let Some(kind) = msg.verify_integrity(&key) {
                self.stats.count_auth_success(accepted.slot);
                let secret_slot = accepted.slot;
                return Ok(Authenticated { username, user_id: rest.id, algorithm, key, kind, secret_slot });
            }
        }
        Err(self.refuse(now, tuple, msg, out, AuthFailure::BadIntegrity))
    }

    fn refuse(
        &mut self,
        now: Millis,
        tuple: &FiveTuple,
        msg: &Message<'_>,
        out: &mut [u8],
        why: AuthFailure,
    ) -> Action {
        self.stats.auth_failed(why);
        self.challenge(now, tuple, msg, out, 401)
    }

    /// A 401 or 438 carrying a fresh nonce and the realm, and PASSWORD-ALGORITHMS (SHA-256
    /// offered) when it fits within the amplification bound: the cookie and the attribute cost
    /// 28 bytes, more than a 401 to the smallest Allocate (28 bytes, so 84 at most) has room
    /// for. Such a client gets a nonce without the cookie and uses MD5, as every TURN client
    /// in use does; a request of 36 bytes or more (FINGERPRINT, SOFTWARE, or credentials, as
    /// every 438 answers) gets the offer.
    fn challenge(&mut self, now: Millis, tuple: &FiveTuple, msg: &Message<'_>, out: &mut [u8], code: u16) -> Action {
        if !self.within_unauth_budget(now, tuple) {
            return Action::None;
        }
        let config = &self.config;
        let mut answer = |cookie: bool| {
            let mut nonce = [0u8; 64];
            let n = config.nonces.issue(now, tuple.transport.code(), tuple.client, cookie, &mut nonce);
            respond_error(out, msg, code, None, |w| challenge_attributes(w, &config.realm, &nonce[..n]))
        };
        let len = match answer(true) {
            Some(len) if within_amplification_bound(msg, len) => Some(len),
            _ => answer(false),
        };
        self.unauthenticated_answer(tuple, msg, len)
    }

    /// An unsigned error answer to an unauthenticated request, within the per-source limit.
    pub(crate) fn unauthenticated_error(
        &mut self,
        now: Millis,
        tuple: &FiveTuple,
        msg: &Message<'_>,
        out: &mut [u8],
        code: u16,
    ) -> Action {
        if !self.within_unauth_budget(now, tuple) {
            return Action::None;
        }
        let len = respond_error(out, msg, code, None, |_| Ok(()));
        self.unauthenticated_answer(tuple, msg, len)
    }

    /// Whether the client's source address may draw one more answer to an unauthenticated
    /// request (`source_budget.rs`); counts the drop if not.
    pub(crate) fn within_unauth_budget(&mut self, now: Millis, tuple: &FiveTuple) -> bool {
        let allowed = self.controls.budgets.allow(now, tuple.client.ip(), &self.config.unauth_limits());
        if !allowed {
            self.stats.drop(DropReason::RateLimited);
        }
        allowed
    }

    /// The last step of every answer to a request that has not passed message integrity: sent
    /// only within the amplification bound, else dropped and counted (`amplification`). The
    /// answers are built small enough for the smallest requests that draw them (test
    /// `unauthenticated_answers_stay_within_three_times_the_request`); this guard makes the
    /// bound hold whatever the configuration (a realm too long for it) or a later change.
    pub(crate) fn unauthenticated_answer(
        &mut self,
        tuple: &FiveTuple,
        msg: &Message<'_>,
        len: Option<usize>,
    ) -> Action {
        match len {
            Some(len) if within_amplification_bound(msg, len) => {
                Action::ToClient { tuple: *tuple, payload: Payload::Output(len) }
            }
            Some(_) => {
                self.stats.drop(DropReason::Amplification);
                Action::None
            }
            None => Action::None,
        }
    }
}

/// RFC 8489 §9.2.4. A nonce sent with the cookie came with PASSWORD-ALGORITHMS: the request
/// either has neither PASSWORD-ALGORITHM nor PASSWORD-ALGORITHMS (MD5, as RFC 5389 clients do)
/// or has both, with PASSWORD-ALGORITHMS exactly as we sent it and PASSWORD-ALGORITHM one of
/// them. A nonce without the cookie came without PASSWORD-ALGORITHMS, so the request must have
/// neither (the value "sent in the response that sent this NONCE" was none): MD5. The nonce
/// checked out, so its cookie is ours (the MAC covers it).
fn negotiated_algorithm(msg: &Message<'_>, nonce: &[u8]) -> Option<PasswordAlgorithm> {
    match (msg.get(attr::PASSWORD_ALGORITHM), msg.get(attr::PASSWORD_ALGORITHMS)) {
        (None, None) => Some(PasswordAlgorithm::Md5),
        (Some(chosen), Some(offered))
            if offered_password_algorithms(nonce) && offered == OFFERED_PASSWORD_ALGORITHMS && chosen.len() == 4 =>
        {
            let (algorithm, params_len) =
                (u16::from_be_bytes([chosen[0], chosen[1]]), u16::from_be_bytes([chosen[2], chosen[3]]));
            if params_len != 0 {
                return None;
            }
            PasswordAlgorithm::from_wire(algorithm)
        }
        _ => None,
    }
}
