//! TURN requests (RFC 8656 §7-§12) and STUN Binding (RFC 8489).

use std::net::SocketAddr;

use super::allocation::{Allocation, Channel, Relayed};
use super::auth::Authenticated;
use super::reply::{Signer, challenge_attributes, respond, respond_error};
use super::{
    Action, AllocFailure, AuthFailure, BindError, BindRequest, DefaultFamily, DropReason, Family, FiveTuple, Payload,
    RelayBinder, Shard, Transport,
};
use crate::codec::{self, Class, Message, MessageWriter, Method, attr, decode_xor_address};
use crate::limits::{QuotaRefusal, TokenBucket};
use crate::time::Millis;

/// The outcome of a request handler: a response length in `out`, or nothing to send.
type Handled = Option<usize>;

impl<B: RelayBinder> Shard<B> {
    pub(crate) fn request(&mut self, now: Millis, tuple: FiveTuple, msg: &Message<'_>, out: &mut [u8]) -> Action {
        match msg.method() {
            Method::BINDING => return self.binding(now, &tuple, msg, out),
            Method::ALLOCATE | Method::REFRESH | Method::CREATE_PERMISSION | Method::CHANNEL_BIND => {}
            _ => return self.unauthenticated_error(now, &tuple, msg, out, 400),
        }
        if !msg.has_integrity() {
            // Requests that can never succeed get no 401 challenge: it is the largest answer an
            // unauthenticated source can draw, so it goes only to requests a real client sends.
            // An Allocate without REQUESTED-TRANSPORT gets the short 400 it would get anyway;
            // the other methods without an allocation on this 5-tuple get nothing (a client
            // whose allocation expired sends credentials and gets its 437).
            if msg.method() == Method::ALLOCATE && !msg.has(attr::REQUESTED_TRANSPORT) {
                return self.unauthenticated_error(now, &tuple, msg, out, 400);
            }
            if msg.method() != Method::ALLOCATE && !self.by_client.contains_key(&tuple) {
                self.stats.drop(DropReason::NoAllocation);
                return Action::None;
            }
        }
        let auth = match self.authenticate(now, &tuple, msg, out) {
            Ok(a) => a,
            Err(action) => return action,
        };
        // The nonce proved that a client receives at this address: its crowd earns answers.
        self.controls.budgets.earn(now, tuple.client.ip(), &self.config.unauth_limits());
        // RFC 5389 §7.3: unknown comprehension-required attributes are looked at once the
        // request is authenticated, and the 420 is signed.
        let mut unknown = [0u16; codec::MAX_ATTRIBUTES];
        let mut n = 0;
        for t in msg.unknown_required() {
            unknown[n] = t;
            n += 1;
        }
        let handled = if n > 0 {
            if msg.method() == Method::ALLOCATE {
                self.stats.alloc_failed(AllocFailure::UnknownAttribute);
            }
            respond_error(out, msg, 420, Some(&auth.signer()), |w| w.unknown_attributes(&unknown[..n]).map(drop))
        } else {
            match msg.method() {
                Method::ALLOCATE => self.allocate(now, &tuple, msg, &auth, out),
                Method::REFRESH => self.refresh(now, &tuple, msg, &auth, out),
                Method::CREATE_PERMISSION => self.create_permission(now, &tuple, msg, &auth, out),
                _ => self.channel_bind(now, &tuple, msg, &auth, out),
            }
        };
        match handled {
            Some(len) => Action::ToClient { tuple, payload: Payload::Output(len) },
            None => Action::None,
        }
    }

    /// Binding: the client's reflexive address, unauthenticated, with FINGERPRINT. Within the
    /// amplification bound by construction: 40 bytes (IPv4) or 52 (IPv6) to a request of 20 or
    /// more.
    fn binding(&mut self, now: Millis, tuple: &FiveTuple, msg: &Message<'_>, out: &mut [u8]) -> Action {
        if !self.within_unauth_budget(now, tuple) {
            return Action::None;
        }
        if msg.unknown_required().next().is_some() {
            let mut unknown = [0u16; codec::MAX_ATTRIBUTES];
            let n = msg.unknown_required().zip(unknown.iter_mut()).map(|(t, slot)| *slot = t).count();
            let len = respond_error(out, msg, 420, None, |w| w.unknown_attributes(&unknown[..n]).map(drop));
            return self.unauthenticated_answer(tuple, msg, len);
        }
        self.stats.bindings += 1;
        let mut build = || -> Result<usize, codec::EncodeError> {
            let mut w = MessageWriter::new(out, Method::BINDING, Class::Success, msg.transaction_id())?;
            w.xor_address(attr::XOR_MAPPED_ADDRESS, tuple.client)?;
            w.finish_with_fingerprint()
        };
        let len = build().ok();
        self.unauthenticated_answer(tuple, msg, len)
    }

    fn allocate(
        &mut self,
        now: Millis,
        tuple: &FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated<'_>,
        out: &mut [u8],
    ) -> Handled {
        let signer = auth.signer();
        if let Some(&index) = self.by_client.get(tuple) {
            let a = &self.allocations[index];
            if a.txid == msg.transaction_id() {
                // A retransmitted Allocate: answer as the first time (RFC 8656 §7.2).
                return allocate_success(out, msg, &signer, a, now);
            }
            return self.allocate_failed(out, msg, &signer, AllocFailure::Mismatch, 437);
        }
        if self.controls.draining() {
            return self.turn_away_while_draining(now, tuple, msg, &signer, out);
        }
        let Some(transport) = msg.get(attr::REQUESTED_TRANSPORT) else {
            return self.allocate_failed(out, msg, &signer, AllocFailure::BadRequest, 400);
        };
        if transport.len() != 4 {
            return self.allocate_failed(out, msg, &signer, AllocFailure::BadRequest, 400);
        }
        if transport[0] != codec::TRANSPORT_UDP {
            return self.allocate_failed(out, msg, &signer, AllocFailure::UnsupportedTransport, 442);
        }
        let even_port = msg.get(attr::EVEN_PORT);
        let reservation = msg.get(attr::RESERVATION_TOKEN);
        let requested_family = msg.get(attr::REQUESTED_ADDRESS_FAMILY);
        let additional_family =
            msg.get(attr::ADDITIONAL_ADDRESS_FAMILY).or_else(|| msg.get(attr::ADDITIONAL_ADDRESS_FAMILY_DRAFT));
        let bad_combination = (even_port.is_some() && reservation.is_some())
            || (requested_family.is_some() && reservation.is_some())
            || (requested_family.is_some() && additional_family.is_some());
        if bad_combination || even_port.is_some_and(|v| v.len() != 1) || reservation.is_some_and(|v| v.len() != 8) {
            return self.allocate_failed(out, msg, &signer, AllocFailure::BadRequest, 400);
        }
        let family = match requested_family {
            None if additional_family.is_some() => Family::V4,
            None => match self.config.default_family {
                DefaultFamily::Ipv4 => Family::V4,
                DefaultFamily::Ipv6 => Family::V6,
                DefaultFamily::Keep => Family::of(&tuple.client),
            },
            Some(v) if v.len() != 4 => return self.allocate_failed(out, msg, &signer, AllocFailure::BadRequest, 400),
            Some(v) if v[0] == codec::FAMILY_IPV4 => Family::V4,
            Some(v) if v[0] == codec::FAMILY_IPV6 => Family::V6,
            Some(_) => return self.allocate_failed(out, msg, &signer, AllocFailure::AddressFamily, 440),
        };
        // ADDITIONAL-ADDRESS-FAMILY asks for an IPv6 relayed address besides the IPv4 one (RFC
        // 8656 §7.2); any other value, or a reservation (which holds one port of one family),
        // makes the request malformed.
        let dual = match additional_family {
            None => false,
            Some(v) if v.len() == 4 && v[0] == codec::FAMILY_IPV6 && reservation.is_none() => true,
            Some(_) => return self.allocate_failed(out, msg, &signer, AllocFailure::BadRequest, 400),
        };
        let lifetime = self.config.granted_lifetime(msg.u32_value(attr::LIFETIME));
        let request = BindRequest {
            now,
            family,
            even_port: even_port.is_some(),
            reserve_next: even_port.is_some_and(|v| v[0] & 0x80 != 0),
            reservation: reservation.map(|v| u64::from_be_bytes(v.try_into().expect("8 bytes"))),
            dont_fragment: msg.has(attr::DONT_FRAGMENT),
        };
        // One quota unit per allocation, dual or not: a dual allocation is one client's one
        // allocation.
        match self.quotas.acquire(auth.user_id, tuple.client.ip()) {
            Ok(()) => {}
            Err(QuotaRefusal::User) => return self.allocate_failed(out, msg, &signer, AllocFailure::UserQuota, 486),
            Err(QuotaRefusal::ClientIp) => return self.allocate_failed(out, msg, &signer, AllocFailure::IpQuota, 486),
            Err(QuotaRefusal::Total) => return self.allocate_failed(out, msg, &signer, AllocFailure::Capacity, 508),
        }
        let first = self.binder.bind(&request);
        let second = dual.then(|| {
            self.binder.bind(&BindRequest { family: Family::V6, reserve_next: false, reservation: None, ..request })
        });
        // A dual request succeeds when either family could be bound; the other one is named in
        // ADDRESS-ERROR-CODE (RFC 8656 §7.2).
        let (bound, additional, address_error) = match (first, second) {
            (Ok(b), None) => (b, None, None),
            (Ok(b), Some(Ok(v6))) => (b, Some(Relayed { id: v6.id, addr: v6.addr }), None),
            (Ok(b), Some(Err(e))) => (b, None, Some((Family::V6, bind_error_code(e)))),
            (Err(e), Some(Ok(v6))) => (v6, None, Some((Family::V4, bind_error_code(e)))),
            (Err(e), None | Some(Err(_))) => {
                self.quotas.release(auth.user_id, tuple.client.ip());
                let reason = if e == BindError::FamilyUnsupported {
                    AllocFailure::AddressFamily
                } else {
                    AllocFailure::Capacity
                };
                return self.allocate_failed(out, msg, &signer, reason, bind_error_code(e));
            }
        };
        let max_bps = self.config.max_bps;
        let allocation = Allocation {
            tuple: *tuple,
            relay: bound.id,
            relay_addr: bound.addr,
            additional,
            address_error,
            username: auth.username.into(),
            user_id: auth.user_id.into(),
            key: (auth.algorithm, auth.key.clone()),
            secret_slot: auth.secret_slot,
            expires: now.plus_secs(u64::from(lifetime)),
            txid: msg.transaction_id(),
            lifetime,
            reservation_token: bound.reservation_token,
            permissions: Vec::new(),
            channels: Vec::new(),
            bucket: (max_bps > 0).then(|| TokenBucket::new(max_bps, max_bps, now)),
            dont_fragment: request.dont_fragment,
        };
        let index = self.allocations.insert(allocation);
        self.by_client.insert(*tuple, index);
        for relayed in self.allocations[index].relayed_addresses() {
            self.by_relay.insert(relayed.id, index);
            self.by_relay_addr.insert(relayed.addr, index);
        }
        self.stats.allocations_created += 1;
        self.offload_changed(*tuple);
        for relayed in self.allocations[index].relayed_addresses() {
            self.stats.relayed_created[Family::of(&relayed.addr).index()] += 1;
        }
        self.stats.allocations_active = self.allocations.len() as u64;
        self.allocation_peak = self.allocation_peak.max(self.allocations.len());
        allocate_success(out, msg, &signer, &self.allocations[index], now)
    }

    /// A draining relay's answer to a new Allocate: 300 Try Alternate with ALTERNATE-SERVER
    /// (RFC 8489 §10, RFC 8656 §7.2) when an alternate of the client's address family is
    /// configured for its transport, else 508 Insufficient Capacity; either way the client
    /// moves on to another server.
    fn turn_away_while_draining(
        &mut self,
        now: Millis,
        tuple: &FiveTuple,
        msg: &Message<'_>,
        signer: &Signer<'_>,
        out: &mut [u8],
    ) -> Handled {
        self.stats.alloc_failed(AllocFailure::Draining);
        let alternates = match tuple.transport {
            Transport::Tls => &self.config.tls_alternate_servers,
            Transport::Udp | Transport::Tcp => &self.config.alternate_servers,
        };
        // ALTERNATE-SERVER's family must be the request's source's (RFC 8489 §14.15).
        match alternates.iter().find(|a| a.is_ipv4() == tuple.client.is_ipv4()) {
            Some(&alternate) => {
                // A fresh nonce and the realm too: libwebrtc takes them from the 300 into its
                // Allocate at the alternate, and gives up on a 438 there. The alternate accepts
                // the nonce when the relays share nonce-key-file.
                let mut nonce = [0u8; 64];
                let n = self.config.nonces.issue(now, tuple.transport.code(), tuple.client, true, &mut nonce);
                let realm = &self.config.realm;
                respond_error(out, msg, 300, Some(signer), |w| {
                    w.address(attr::ALTERNATE_SERVER, alternate)?;
                    challenge_attributes(w, realm, &nonce[..n])
                })
            }
            None => respond_error(out, msg, 508, Some(signer), |_| Ok(())),
        }
    }

    fn allocate_failed(
        &mut self,
        out: &mut [u8],
        msg: &Message<'_>,
        signer: &Signer<'_>,
        reason: AllocFailure,
        code: u16,
    ) -> Handled {
        self.stats.alloc_failed(reason);
        respond_error(out, msg, code, Some(signer), |_| Ok(()))
    }

    /// The allocation on this 5-tuple for a request by `auth`, or the error to answer
    /// (437 none, 441 another user's).
    fn own_allocation(
        &mut self,
        tuple: &FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated<'_>,
        out: &mut [u8],
    ) -> Result<usize, Handled> {
        let signer = auth.signer();
        let Some(&index) = self.by_client.get(tuple) else {
            return Err(respond_error(out, msg, 437, Some(&signer), |_| Ok(())));
        };
        if &*self.allocations[index].username != auth.username {
            self.stats.auth_failed(AuthFailure::WrongCredentials);
            return Err(respond_error(out, msg, 441, Some(&signer), |_| Ok(())));
        }
        Ok(index)
    }

    fn refresh(
        &mut self,
        now: Millis,
        tuple: &FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated<'_>,
        out: &mut [u8],
    ) -> Handled {
        let index = match self.own_allocation(tuple, msg, auth, out) {
            Ok(i) => i,
            Err(handled) => return handled,
        };
        let signer = auth.signer();
        if let Some(v) = msg.get(attr::REQUESTED_ADDRESS_FAMILY) {
            let asked = match v.first() {
                Some(&codec::FAMILY_IPV4) => Some(Family::V4),
                Some(&codec::FAMILY_IPV6) => Some(Family::V6),
                _ => None,
            };
            // Both addresses of a dual allocation are refreshed (and deleted) together: naming
            // either family refreshes the allocation.
            let a = &self.allocations[index];
            if v.len() != 4 || asked.is_none_or(|f| a.relayed(f).is_none()) {
                return respond_error(out, msg, 443, Some(&signer), |_| Ok(()));
            }
        }
        let requested = msg.u32_value(attr::LIFETIME);
        if requested == Some(0) {
            self.remove_allocation(index);
            self.stats.allocations_deleted += 1;
            return respond(out, msg, Class::Success, Some(&signer), |w| w.u32(attr::LIFETIME, 0).map(drop));
        }
        let lifetime = self.config.granted_lifetime(requested);
        let a = &mut self.allocations[index];
        a.expires = now.plus_secs(u64::from(lifetime));
        a.lifetime = lifetime;
        self.offload_changed(*tuple);
        respond(out, msg, Class::Success, Some(&signer), |w| w.u32(attr::LIFETIME, lifetime).map(drop))
    }

    fn create_permission(
        &mut self,
        now: Millis,
        tuple: &FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated<'_>,
        out: &mut [u8],
    ) -> Handled {
        let index = match self.own_allocation(tuple, msg, auth, out) {
            Ok(i) => i,
            Err(handled) => return handled,
        };
        let signer = auth.signer();
        let txid = msg.transaction_id();
        let mut peers = [None; codec::MAX_ATTRIBUTES];
        let mut count = 0;
        for value in msg.get_all(attr::XOR_PEER_ADDRESS) {
            let Some(peer) = decode_xor_address(value, &txid) else {
                return respond_error(out, msg, 400, Some(&signer), |_| Ok(()));
            };
            if let Some(code) = self.peer_refusal(index, peer) {
                return respond_error(out, msg, code, Some(&signer), |_| Ok(()));
            }
            peers[count] = Some(peer);
            count += 1;
        }
        if count == 0 {
            return respond_error(out, msg, 400, Some(&signer), |_| Ok(()));
        }
        let a = &self.allocations[index];
        let new = peers[..count]
            .iter()
            .flatten()
            .enumerate()
            .filter(|(i, p)| !a.has_permission_entry(p.ip()) && !peers[..*i].iter().flatten().any(|q| q.ip() == p.ip()))
            .count();
        if a.permissions.len() + new > self.config.max_permissions_per_allocation {
            return respond_error(out, msg, 508, Some(&signer), |_| Ok(()));
        }
        let expires = now.plus_secs(u64::from(self.config.permission_lifetime));
        let a = &mut self.allocations[index];
        for peer in peers[..count].iter().flatten() {
            if a.permit(peer.ip(), expires) {
                self.stats.permissions_created += 1;
            }
        }
        self.offload_changed(*tuple);
        respond(out, msg, Class::Success, Some(&signer), |_| Ok(()))
    }

    /// 443 if allocation `index` has no relayed address of the peer's family, 403 if policy
    /// denies the peer.
    fn peer_refusal(&mut self, index: usize, peer: SocketAddr) -> Option<u16> {
        if self.allocations[index].relayed(Family::of(&peer)).is_none() {
            return Some(443);
        }
        match self.config.policy.check(peer.ip()) {
            Ok(()) => None,
            Err(class) => {
                self.stats.denied(class);
                Some(403)
            }
        }
    }

    fn channel_bind(
        &mut self,
        now: Millis,
        tuple: &FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated<'_>,
        out: &mut [u8],
    ) -> Handled {
        let index = match self.own_allocation(tuple, msg, auth, out) {
            Ok(i) => i,
            Err(handled) => return handled,
        };
        let signer = auth.signer();
        let number = match msg.get(attr::CHANNEL_NUMBER) {
            Some(v) if v.len() == 4 => u16::from_be_bytes([v[0], v[1]]),
            _ => return respond_error(out, msg, 400, Some(&signer), |_| Ok(())),
        };
        let peer = msg.get(attr::XOR_PEER_ADDRESS).and_then(|v| decode_xor_address(v, &msg.transaction_id()));
        let Some(peer) = peer else {
            return respond_error(out, msg, 400, Some(&signer), |_| Ok(()));
        };
        if !codec::is_channel_number(number) || number > self.config.max_channel_number {
            return respond_error(out, msg, 400, Some(&signer), |_| Ok(()));
        }
        if let Some(code) = self.peer_refusal(index, peer) {
            return respond_error(out, msg, code, Some(&signer), |_| Ok(()));
        }
        let a = &self.allocations[index];
        // RFC 8656 §12.2: the number must not be bound (or cooling down) to another peer, and
        // the peer must not be bound (or cooling down) to another number.
        let conflict = a.channels.iter().any(|c| (c.number == number) != (c.peer == peer));
        if conflict {
            return respond_error(out, msg, 400, Some(&signer), |_| Ok(()));
        }
        let existing = a.channels.iter().position(|c| c.number == number);
        let new_permission = !a.has_permission_entry(peer.ip());
        if (existing.is_none() && a.channels.len() >= self.config.max_channels_per_allocation)
            || (new_permission && a.permissions.len() >= self.config.max_permissions_per_allocation)
        {
            return respond_error(out, msg, 508, Some(&signer), |_| Ok(()));
        }
        let channel_expires = now.plus_secs(u64::from(self.config.channel_lifetime));
        let permission_expires = now.plus_secs(u64::from(self.config.permission_lifetime));
        let a = &mut self.allocations[index];
        match existing {
            Some(i) => a.channels[i].expires = channel_expires,
            None => {
                a.channels.push(Channel { number, peer, expires: channel_expires });
                self.stats.channels_bound += 1;
            }
        }
        if a.permit(peer.ip(), permission_expires) {
            self.stats.permissions_created += 1;
        }
        self.offload_changed(*tuple);
        respond(out, msg, Class::Success, Some(&signer), |_| Ok(()))
    }
}

fn allocate_success(out: &mut [u8], msg: &Message<'_>, signer: &Signer<'_>, a: &Allocation, now: Millis) -> Handled {
    respond(out, msg, Class::Success, Some(signer), |w| allocate_success_attributes(w, a, now))
}

fn allocate_success_attributes(
    w: &mut MessageWriter<'_>,
    a: &Allocation,
    now: Millis,
) -> Result<(), codec::EncodeError> {
    for relayed in a.relayed_addresses() {
        w.xor_address(attr::XOR_RELAYED_ADDRESS, relayed.addr)?;
    }
    if let Some((family, code)) = a.address_error {
        // ADDRESS-ERROR-CODE (RFC 8656 §18.12): family, reserved, class, number, reason.
        let reason = super::reply::reason_phrase(code);
        let mut value = [0u8; 4 + 64];
        let n = reason.len().min(64);
        value[0] = match family {
            Family::V4 => codec::FAMILY_IPV4,
            Family::V6 => codec::FAMILY_IPV6,
        };
        value[2] = (code / 100) as u8;
        value[3] = (code % 100) as u8;
        value[4..4 + n].copy_from_slice(&reason.as_bytes()[..n]);
        w.bytes(attr::ADDRESS_ERROR_CODE, &value[..4 + n])?;
    }
    w.u32(attr::LIFETIME, now.secs_until(a.expires) as u32)?;
    if let Some(token) = a.reservation_token {
        w.bytes(attr::RESERVATION_TOKEN, &token.to_be_bytes())?;
    }
    w.xor_address(attr::XOR_MAPPED_ADDRESS, a.tuple.client)?;
    Ok(())
}

/// The error code for an Allocate whose relayed socket could not be bound: 440 for a family the
/// relay does not serve, 508 when its ports are used up.
fn bind_error_code(e: BindError) -> u16 {
    match e {
        BindError::FamilyUnsupported => 440,
        BindError::NoPorts | BindError::UnknownReservation => 508,
    }
}
