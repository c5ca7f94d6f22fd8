//! The `/rtc` namespace: the handshake check, one handler per client event, the disconnect
//! handler and each connection's timers. Every handler answers through its ack (see `reply`).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;
use time::OffsetDateTime;
use uuid::Uuid;

use super::conn::{Conn, Joined};
use super::directory::{Participant, PeerState};
use super::presence;
use super::reply::{Code, EventResult, Refusal, ack_body};
use super::{EXPIRY_WARNING, RESUME_WINDOW, Signaling, rooms};
use crate::audit::Audit;
use crate::auth::ended::Ended;
use crate::auth::extract::{TokenRefusal, authenticate as check_token, still_live as caller_still_live};
use crate::domain::appointment::RoomEvent;
use crate::domain::consultation::{AUDIT_JOIN, Admission, JoinRefusal, rfc3339};
use crate::problem::ApiError;
use crate::scheduling::session::JoinError;
use crate::state::ClientIp;
use crate::store::{AppointmentStatus, Role};

fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The Socket.IO answer to each refusal of the consultation access rule.
fn socket_refusal(r: JoinRefusal) -> Refusal {
    let code = match r {
        JoinRefusal::NotParticipant => Code::Forbidden,
        JoinRefusal::Status(_) => Code::Conflict,
        JoinRefusal::ConsentMissing(_) => Code::ConsentRequired,
        JoinRefusal::TooEarly { .. } | JoinRefusal::Closed { .. } => Code::Closed,
    };
    Refusal::new(code, r.message())
}

#[derive(Debug, Deserialize)]
pub struct Handshake {
    token: Option<String>,
}

#[derive(Debug)]
pub struct HandshakeRefused(String);

impl std::fmt::Display for HandshakeRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn client_ip<A: Adapter>(s: &SocketRef<A>) -> IpAddr {
    s.req_parts()
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(a)| a.ip())
}

/// Connect middleware: the handshake's `auth.token` must be a live access token.
pub async fn authenticate<A: Adapter>(
    s: SocketRef<A>,
    TryData(auth): TryData<Handshake>,
    State(sig): State<Signaling>,
) -> Result<(), HandshakeRefused> {
    let token = auth.ok().and_then(|h| h.token).filter(|t| !t.is_empty());
    let token =
        token.ok_or_else(|| HandshakeRefused("token required: connect with auth: {token: <access token>}".into()))?;
    match check_token(&sig.app, &token).await {
        Ok((caller, expires)) => {
            s.extensions.insert(Conn::new(caller, client_ip(&s), expires));
            // Handlers are registered here, before the CONNECT packet goes out: the connect
            // handler runs in a spawned task, and an event arriving before it ran would find no
            // handler and be dropped without an ack.
            register_events(&s);
            Ok(())
        }
        Err(TokenRefusal::Store(e)) => {
            tracing::error!(error = %e, "signaling handshake: store failed");
            Err(HandshakeRefused("internal error".into()))
        }
        Err(refusal) => Err(HandshakeRefused(refusal.to_string())),
    }
}

macro_rules! on {
    ($s:expr, $event:literal, $handler:ident) => {
        $s.on(
            $event,
            async |s: SocketRef<A>,
                   TryData(data): TryData<Value>,
                   ack: AckSender<A>,
                   State(sig): State<Signaling>,
                   io: SocketIo<A>| {
                let result = match s.extensions.get::<Conn>() {
                    // Every event, not only the handshake: the session must still be live and
                    // the account enabled with the same role (defence in depth behind the
                    // disconnect that ending a session sends, which a Redis outage could lose).
                    Some(conn) => match still_live(&sig, &conn).await {
                        Ok(()) => $handler(&s, &io, &sig, &conn, data.unwrap_or(Value::Null)).await,
                        Err(refusal) => Err(refusal),
                    },
                    None => Err(Refusal::new(Code::Forbidden, "not authenticated")),
                };
                let _ = ack.send(&ack_body(&result));
                if matches!(&result, Err(r) if r.code == Code::SessionEnded) {
                    let _ = s.disconnect();
                }
            },
        )
    };
}

fn register_events<A: Adapter>(s: &SocketRef<A>) {
    on!(s, "room:join", join);
    on!(s, "room:leave", leave);
    on!(s, "signal:offer", signal_offer);
    on!(s, "signal:answer", signal_answer);
    on!(s, "signal:candidate", signal_candidate);
    on!(s, "media:state", media_state);
    on!(s, "lobby:admit", admit);
    on!(s, "lobby:deny", deny);
    on!(s, "room:end", end);
    on!(s, "auth:renew", renew);
    s.on_disconnect(
        async |s: SocketRef<A>, _reason: DisconnectReason, State(sig): State<Signaling>, io: SocketIo<A>| {
            if let Some(conn) = s.extensions.get::<Conn>() {
                crate::observability::signaling_socket(false);
                if let Err(e) = disconnected(&s, &io, &sig, &conn).await {
                    tracing::warn!(code = ?e.code, "signaling disconnect cleanup failed: {}", e.message);
                }
                // The socket leaves its rooms only after this handler: leave them now, so that
                // the presence below no longer counts it.
                s.leave_all();
                if let Some(p) = conn.clinician() {
                    presence::announce(&io, &sig.directory, p).await;
                } else if let Some(j) = conn.joined() {
                    // An admitted patient gone: their practitioner may no longer be in a call.
                    presence::announce(&io, &sig.directory, j.practitioner).await;
                }
            }
        },
    );
}

/// Connected (events are registered by the middleware): join the session's and the user's
/// rooms, and start the connection's timers.
pub async fn on_connect<A: Adapter>(s: SocketRef<A>, State(sig): State<Signaling>, io: SocketIo<A>) {
    if let Some(conn) = s.extensions.get::<Conn>() {
        crate::observability::signaling_socket(true);
        let caller = conn.caller();
        s.join([rooms::session(caller.session_id), rooms::user(caller.user_id)]);
        // A session ended between the handshake and the join above was announced to rooms
        // this socket was not in yet: look once more.
        if let Err(refusal) = still_live(&sig, &conn).await {
            if refusal.code == Code::SessionEnded {
                let _ = s.emit("session:ended", &json!({ "reason": "session-ended" }));
                let _ = s.disconnect();
                return;
            }
        }
        // A practitioner connected: the patients waiting for them see it.
        if caller.role == Role::Practitioner {
            match sig.app.store().practitioner_by_user(caller.user_id).await {
                Ok(Some(p)) => {
                    conn.set_clinician(p.id);
                    s.join(rooms::clinician(p.id));
                    presence::announce(&io, &sig.directory, p.id).await;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "practitioner record not read; presence not announced"),
            }
        }
        tokio::spawn(timers(s.clone(), sig, conn, io));
    }
}

/// Whether the connection's session is still live and its account enabled with the role it
/// connected with; `session-ended` if not.
async fn still_live(sig: &Signaling, conn: &Conn) -> Result<(), Refusal> {
    match caller_still_live(&sig.app, &conn.caller()).await {
        Ok(()) => Ok(()),
        Err(TokenRefusal::Store(e)) => Err(e.into()),
        Err(refusal) => Err(Refusal::new(Code::SessionEnded, refusal.to_string())),
    }
}

/// Ends the connections of an ended session (or of every session of a user) on every instance:
/// tells them why (`session:ended {reason}`), then disconnects them. Through the Redis adapter
/// both reach the sockets held by the other instances.
pub async fn end_sessions<A: Adapter>(io: &SocketIo<A>, ended: Ended, reason: &'static str) {
    let room = match ended {
        Ended::Session(id) => rooms::session(id),
        Ended::User(id) => rooms::user(id),
    };
    if let Err(e) = rtc(io).to(room.clone()).emit("session:ended", &json!({ "reason": reason })).await {
        tracing::warn!(error = %e, "session:ended not sent to every instance");
    }
    if let Err(e) = rtc(io).to(room).disconnect().await {
        tracing::warn!(error = %e, "ended session's sockets not disconnected on every instance; their next event is refused");
    }
}

/// Operators on the `/rtc` namespace. (`io.to` would address the default namespace `/`, which
/// this server does not serve.)
fn rtc<A: Adapter>(io: &SocketIo<A>) -> socketioxide::operators::BroadcastOperators<A> {
    io.of("/rtc").expect("the /rtc namespace is registered at start")
}

fn parse<T: serde::de::DeserializeOwned>(data: Value) -> Result<T, Refusal> {
    serde_json::from_value(data).map_err(|e| Refusal::new(Code::Invalid, format!("payload: {e}")))
}

/// Reads `data` as the handler of `event` does before acting on it, and nothing more: the
/// fuzz target fuzz/fuzz_targets/signaling_payload.rs drives it with arbitrary payloads.
/// `Ok(false)` for an event that reads no payload.
pub(super) fn parse_payload(event: &str, data: Value) -> Result<bool, Refusal> {
    match event {
        "room:join" => parse::<JoinRequest>(data).map(|_| true),
        "signal:offer" | "signal:answer" => parse::<SdpMessage>(data).map(|_| true),
        "signal:candidate" => parse::<CandidateMessage>(data).map(|_| true),
        "media:state" => parse::<MediaState>(data).map(|_| true),
        "lobby:admit" | "lobby:deny" => parse::<PeerRequest>(data).map(|_| true),
        "auth:renew" => parse::<Renew>(data).map(|_| true),
        _ => Ok(false),
    }
}

fn joined(conn: &Conn) -> Result<Joined, Refusal> {
    conn.joined().ok_or_else(|| Refusal::new(Code::NotJoined, "send room:join first"))
}

fn audit(conn: &Conn, action: &str) -> Audit {
    Audit::new(action, &ClientIp(conn.0.ip)).actor(conn.caller().user_id)
}

fn peer_view(p: &Participant) -> Value {
    json!({ "peerId": p.peer_id, "role": p.role })
}

/// Moves an appointment on as `domain::appointment::follow` says for the room's event, with
/// what follows a move (notifications, relay revocation).
async fn follow_status(sig: &Signaling, conn: &Conn, appointment: Uuid, event: RoomEvent) {
    if let Some(to) = move_status(sig, conn, appointment, event).await {
        after_move(sig, conn, appointment, to).await;
    }
}

/// The move alone, committed when this returns: `Some(new status)` if it moved. A status that
/// does not allow the move (already checked in, cancelled meanwhile…) is left as it is.
async fn move_status(sig: &Signaling, conn: &Conn, appointment: Uuid, event: RoomEvent) -> Option<AppointmentStatus> {
    let (from, to) = crate::domain::appointment::follow(event);
    for expected in from {
        // The event commits with the change; its name is the REST verb's (one vocabulary).
        let event = audit(conn, crate::scheduling::actions::transition(to))
            .target(appointment.to_string())
            .outcome("success:signaling")
            .into_event();
        match sig
            .app
            .store()
            .transition_appointment(appointment, *expected, to, None, None, sig.app.clock().now(), event)
            .await
        {
            Ok(Some(_)) => return Some(to),
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(appointment = %appointment, error = %e, "appointment status not updated");
                return None;
            }
        }
    }
    None
}

/// What follows a committed move: the notification and, for a final status, the relay's
/// credentials revoked.
async fn after_move(sig: &Signaling, conn: &Conn, appointment: Uuid, to: AppointmentStatus) {
    crate::notify::room_status(&sig.app, appointment, to).await;
    if let Some(revoke) = crate::domain::revocation::on_appointment_status(appointment, to) {
        let ip = ClientIp(conn.0.ip);
        crate::revocation::follow(&sig.app, revoke, Some(conn.caller().user_id), Some(&ip)).await;
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JoinRequest {
    appointment_id: Uuid,
    #[serde(default)]
    resume: bool,
}

async fn join<A: Adapter>(
    s: &SocketRef<A>,
    io: &SocketIo<A>,
    sig: &Signaling,
    conn: &Conn,
    data: Value,
) -> EventResult {
    let req: JoinRequest = parse(data)?;
    let caller = conn.caller();
    let id = req.appointment_id;
    let denied = audit(conn, AUDIT_JOIN).target(id.to_string());
    let Admission { role, window } =
        crate::scheduling::session::admission(&sig.app, &caller, id, denied).await.map_err(|e| match e {
            JoinError::Refused(r) => socket_refusal(r),
            JoinError::Failed(ApiError::NotFound) => Refusal::new(Code::NotFound, "no such appointment"),
            JoinError::Failed(e) => e.into(),
        })?;
    let closes_at = window.closes_at;
    // The appointment's practitioner, for the presence a waiting patient is shown (read again:
    // the admission rule returns only the verdict).
    let practitioner = sig
        .app
        .store()
        .appointment(id)
        .await?
        .ok_or_else(|| Refusal::new(Code::NotFound, "no such appointment"))?
        .practitioner_id;
    let now = sig.app.clock().now();
    // A socket in another room leaves it first.
    if let Some(previous) = conn.joined() {
        leave_rooms(s, &previous);
    }

    // Resume: the same user's place, if it is connected elsewhere (replaced) or was lost less
    // than the resume window ago.
    let existing = sig.directory.get(id, caller.user_id).await?;
    let resumable = existing.clone().filter(|p| {
        req.resume
            && p.role == role
            && p.disconnected_at_ms.is_none_or(|t| unix_ms(now) - t <= RESUME_WINDOW.whole_milliseconds() as i64)
    });
    let resumed = resumable.is_some();
    let (peer_id, state, waiting_since_ms) = match &resumable {
        Some(p) => (p.peer_id.clone(), p.state, p.waiting_since_ms),
        None if role == Role::Practitioner => (Uuid::new_v4().simple().to_string(), PeerState::Admitted, None),
        None => (Uuid::new_v4().simple().to_string(), PeerState::Waiting, Some(unix_ms(now))),
    };
    if let Some(old) = existing {
        if old.socket_id != s.id.to_string() && old.disconnected_at_ms.is_none() {
            // A second connection replaces the first.
            let _ = rtc(io).to(rooms::peer(id, &old.peer_id)).disconnect().await;
        }
        if !resumed {
            // A fresh join: the old place is gone for the others too.
            let gone = json!({ "peerId": old.peer_id, "reason": "left" });
            let _ = rtc(io).to(rooms::members(id)).emit("room:peer-left", &gone).await;
        }
    }
    let me = Participant {
        peer_id: peer_id.clone(),
        user_id: caller.user_id,
        role,
        state,
        socket_id: s.id.to_string(),
        disconnected_at_ms: None,
        waiting_since_ms,
    };
    sig.directory.put(id, &me).await?;
    s.join([rooms::all(id), rooms::peer(id, &peer_id)]);
    if role == Role::Practitioner {
        s.join(rooms::practitioner(id));
    }
    match state {
        PeerState::Admitted => s.join([rooms::members(id), rooms::admitted(id, &peer_id)]),
        PeerState::Waiting => s.join([rooms::lobby(id), rooms::waiting_for(practitioner)]),
    }
    conn.set_joined(Some(Joined {
        appointment: id,
        practitioner,
        peer_id: peer_id.clone(),
        role,
        closes_at,
        warned: false,
    }));

    let everyone = sig.directory.list(id).await?;
    let connected = |p: &&Participant| p.peer_id != peer_id && p.disconnected_at_ms.is_none();
    let peers: Vec<Value> =
        everyone.iter().filter(connected).filter(|p| p.state == PeerState::Admitted).map(peer_view).collect();
    let waiting: Vec<Value> = if role == Role::Practitioner {
        everyone.iter().filter(connected).filter(|p| p.state == PeerState::Waiting).map(peer_view).collect()
    } else {
        Vec::new()
    };
    match state {
        PeerState::Waiting => {
            let _ = s.emit("lobby:waiting", &json!({ "peerId": peer_id }));
            let _ = s.to(rooms::practitioner(id)).emit("lobby:patient-arrived", &peer_view(&me)).await;
            // Where the practitioner is now; changes follow as they happen.
            match presence::locate(io, &sig.directory, practitioner).await {
                Ok((w, busy)) => {
                    let _ = s.emit(presence::EVENT, &json!({ "status": w.seen_from(id, busy) }));
                }
                Err(e) => tracing::warn!(error = %e, "practitioner presence not read"),
            }
            follow_status(sig, conn, id, RoomEvent::PatientWaiting).await;
        }
        PeerState::Admitted => {
            let _ = s.to(rooms::members(id)).emit("room:peer-joined", &peer_view(&me)).await;
        }
    }
    if role == Role::Practitioner {
        // The practitioner is here (or here again): the lobby hears it, their other patients too.
        presence::announce(io, &sig.directory, practitioner).await;
    }
    let ice = crate::observability::ice_answer(
        crate::ice::credentials(&sig.app, &ClientIp(conn.0.ip), &caller, closes_at, false, Some(id)).await,
    )?;
    let outcome = match (resumed, state) {
        (true, _) => "success:resumed",
        (false, PeerState::Waiting) => "success:waiting",
        (false, PeerState::Admitted) => "success:admitted",
    };
    sig.app.audit(audit(conn, AUDIT_JOIN).target(id.to_string()).outcome(outcome)).await?;
    crate::observability::consultation_joined(role == Role::Practitioner);
    Ok(json!({
        "peerId": peer_id,
        "role": role,
        "state": state,
        "peers": peers,
        "waiting": waiting,
        "ice": ice,
        "closesAt": rfc3339(closes_at),
    }))
}

fn leave_rooms<A: Adapter>(s: &SocketRef<A>, j: &Joined) {
    s.leave(rooms::of_participant(j.appointment, j.practitioner, &j.peer_id));
}

/// Tells the room a participant is gone: admitted members, or the practitioner for a patient
/// who was still waiting.
async fn announce_gone<A: Adapter>(s: &SocketRef<A>, j: &Joined, state: PeerState, reason: &str) {
    let body = json!({ "peerId": j.peer_id, "reason": reason });
    let room = match state {
        PeerState::Admitted => rooms::members(j.appointment),
        PeerState::Waiting => rooms::practitioner(j.appointment),
    };
    let _ = s.to(room).emit("room:peer-left", &body).await;
}

async fn leave<A: Adapter>(
    s: &SocketRef<A>,
    io: &SocketIo<A>,
    sig: &Signaling,
    conn: &Conn,
    _data: Value,
) -> EventResult {
    let j = joined(conn)?;
    let socket_id = s.id.to_string();
    let mine = |p: &Participant| p.socket_id == socket_id;
    let me = sig.directory.remove_if(j.appointment, conn.caller().user_id, mine).await?;
    leave_rooms(s, &j);
    conn.set_joined(None);
    // Nothing to announce if a newer connection holds the place, or the room has ended.
    if let Some(me) = me {
        announce_gone(s, &j, me.state, "left").await;
    }
    // The practitioner left this room, or their patient left the call.
    presence::announce(io, &sig.directory, j.practitioner).await;
    Ok(Value::Null)
}

async fn disconnected<A: Adapter>(
    s: &SocketRef<A>,
    _io: &SocketIo<A>,
    sig: &Signaling,
    conn: &Conn,
) -> Result<(), Refusal> {
    let Some(j) = conn.joined() else { return Ok(()) };
    let socket_id = s.id.to_string();
    let at = unix_ms(sig.app.clock().now());
    // Only while this connection holds the place: a newer one (perhaps on another instance,
    // joining at this very moment) keeps it.
    let mark =
        |p: &Participant| (p.socket_id == socket_id).then(|| Participant { disconnected_at_ms: Some(at), ..p.clone() });
    let Some(me) = sig.directory.update(j.appointment, conn.caller().user_id, mark).await? else { return Ok(()) };
    announce_gone(s, &j, me.state, "disconnected").await;
    Ok(())
}

/// The sender must be an admitted member; the addressee an admitted, connected member of the
/// same room.
async fn relay_signal<A: Adapter>(
    s: &SocketRef<A>,
    sig: &Signaling,
    conn: &Conn,
    event: &str,
    to: &str,
    body: Value,
) -> EventResult {
    let j = joined(conn)?;
    if !s.rooms().iter().any(|r| *r == rooms::members(j.appointment)) {
        return Err(Refusal::new(Code::Forbidden, "wait until the practitioner admits you"));
    }
    let target = sig.directory.list(j.appointment).await?.into_iter().find(|p| p.peer_id == to);
    match target {
        Some(p) if p.state == PeerState::Admitted && p.disconnected_at_ms.is_none() && p.peer_id != j.peer_id => {}
        _ => return Err(Refusal::new(Code::Forbidden, "that peer is not an admitted member of this room")),
    }
    let _ = s.to(rooms::admitted(j.appointment, to)).emit(event, &body).await;
    Ok(Value::Null)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SdpMessage {
    to: String,
    sdp: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateMessage {
    to: String,
    candidate: Value,
}

async fn signal_sdp<A: Adapter>(
    s: &SocketRef<A>,
    sig: &Signaling,
    conn: &Conn,
    data: Value,
    event: &str,
) -> EventResult {
    let m: SdpMessage = parse(data)?;
    let from = joined(conn)?.peer_id;
    relay_signal(s, sig, conn, event, &m.to, json!({ "from": from, "sdp": m.sdp })).await
}

async fn signal_offer<A: Adapter>(
    s: &SocketRef<A>,
    _io: &SocketIo<A>,
    sig: &Signaling,
    conn: &Conn,
    data: Value,
) -> EventResult {
    signal_sdp(s, sig, conn, data, "signal:offer").await
}

async fn signal_answer<A: Adapter>(
    s: &SocketRef<A>,
    _io: &SocketIo<A>,
    sig: &Signaling,
    conn: &Conn,
    data: Value,
) -> EventResult {
    signal_sdp(s, sig, conn, data, "signal:answer").await
}

async fn signal_candidate<A: Adapter>(
    s: &SocketRef<A>,
    _io: &SocketIo<A>,
    sig: &Signaling,
    conn: &Conn,
    data: Value,
) -> EventResult {
    let m: CandidateMessage = parse(data)?;
    let from = joined(conn)?.peer_id;
    relay_signal(s, sig, conn, "signal:candidate", &m.to, json!({ "from": from, "candidate": m.candidate })).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MediaState {
    audio: bool,
    video: bool,
}

async fn media_state<A: Adapter>(
    s: &SocketRef<A>,
    _io: &SocketIo<A>,
    _sig: &Signaling,
    conn: &Conn,
    data: Value,
) -> EventResult {
    let m: MediaState = parse(data)?;
    let j = joined(conn)?;
    if !s.rooms().iter().any(|r| *r == rooms::members(j.appointment)) {
        return Err(Refusal::new(Code::Forbidden, "wait until the practitioner admits you"));
    }
    let body = json!({ "from": j.peer_id, "audio": m.audio, "video": m.video });
    let _ = s.to(rooms::members(j.appointment)).emit("media:state", &body).await;
    Ok(Value::Null)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PeerRequest {
    peer_id: String,
}

/// The practitioner's own joined, admitted place.
fn practitioner_in_room(conn: &Conn) -> Result<Joined, Refusal> {
    let j = joined(conn)?;
    if j.role != Role::Practitioner {
        return Err(Refusal::new(Code::Forbidden, "only the practitioner may do this"));
    }
    Ok(j)
}

async fn waiting_patient(sig: &Signaling, j: &Joined, peer_id: &str) -> Result<Participant, Refusal> {
    sig.directory
        .list(j.appointment)
        .await?
        .into_iter()
        .find(|p| p.peer_id == peer_id && p.state == PeerState::Waiting)
        .ok_or_else(no_such_waiting_peer)
}

fn no_such_waiting_peer() -> Refusal {
    Refusal::new(Code::NotFound, "no such peer waiting in the lobby")
}

async fn admit<A: Adapter>(
    _s: &SocketRef<A>,
    io: &SocketIo<A>,
    sig: &Signaling,
    conn: &Conn,
    data: Value,
) -> EventResult {
    let req: PeerRequest = parse(data)?;
    let j = practitioner_in_room(conn)?;
    let waiting = waiting_patient(sig, &j, &req.peer_id).await?;
    let still_waiting = |p: &Participant| p.peer_id == req.peer_id && p.state == PeerState::Waiting;
    let admitted = |p: &Participant| still_waiting(p).then(|| Participant { state: PeerState::Admitted, ..p.clone() });
    let patient =
        sig.directory.update(j.appointment, waiting.user_id, admitted).await?.ok_or_else(no_such_waiting_peer)?;
    let id = j.appointment;
    // The new status (checked in) is committed before anyone hears of the admission, as for
    // room:end: a client that reads the appointment on lobby:admitted or after this ack sees it.
    let moved = move_status(sig, conn, id, RoomEvent::Admitted).await;
    if let Some(since) = patient.waiting_since_ms {
        let waited = unix_ms(sig.app.clock().now()).saturating_sub(since).max(0);
        crate::observability::lobby_admitted(std::time::Duration::from_millis(waited as u64));
    }
    let peer_room = rooms::peer(id, &patient.peer_id);
    // Announce to the members first, so the newcomer is not told about itself.
    let _ = rtc(io).to(rooms::members(id)).emit("room:peer-joined", &peer_view(&patient)).await;
    let _ = rtc(io).to(peer_room.clone()).leave([rooms::lobby(id), rooms::waiting_for(j.practitioner)]).await;
    let _ = rtc(io).to(peer_room.clone()).join([rooms::members(id), rooms::admitted(id, &patient.peer_id)]).await;
    let peers: Vec<Value> = sig
        .directory
        .list(id)
        .await?
        .iter()
        .filter(|p| p.peer_id != patient.peer_id && p.state == PeerState::Admitted && p.disconnected_at_ms.is_none())
        .map(peer_view)
        .collect();
    let _ = rtc(io).to(peer_room).emit("lobby:admitted", &json!({ "peerId": patient.peer_id, "peers": peers })).await;
    sig.app.audit(audit(conn, "consultation.admit").target(format!("{id}:{}", patient.peer_id))).await?;
    if let Some(to) = moved {
        after_move(sig, conn, id, to).await;
    }
    // In a call now: the practitioner's other waiting patients see it.
    presence::announce(io, &sig.directory, j.practitioner).await;
    Ok(json!({ "peerId": patient.peer_id }))
}

async fn deny<A: Adapter>(
    _s: &SocketRef<A>,
    io: &SocketIo<A>,
    sig: &Signaling,
    conn: &Conn,
    data: Value,
) -> EventResult {
    let req: PeerRequest = parse(data)?;
    let j = practitioner_in_room(conn)?;
    let waiting = waiting_patient(sig, &j, &req.peer_id).await?;
    let still_waiting = |p: &Participant| p.peer_id == req.peer_id && p.state == PeerState::Waiting;
    let patient = sig
        .directory
        .remove_if(j.appointment, waiting.user_id, still_waiting)
        .await?
        .ok_or_else(no_such_waiting_peer)?;
    let peer_room = rooms::peer(j.appointment, &patient.peer_id);
    let _ = rtc(io).to(peer_room.clone()).emit("lobby:denied", &json!({ "peerId": patient.peer_id })).await;
    let gone = json!({ "peerId": patient.peer_id, "reason": "denied" });
    let _ = rtc(io).to(rooms::practitioner(j.appointment)).emit("room:peer-left", &gone).await;
    let _ = rtc(io).to(peer_room).leave(rooms::of_participant(j.appointment, j.practitioner, &patient.peer_id)).await;
    sig.app.audit(audit(conn, "consultation.deny").target(format!("{}:{}", j.appointment, patient.peer_id))).await?;
    crate::observability::lobby_denied();
    Ok(json!({ "peerId": patient.peer_id }))
}

async fn end<A: Adapter>(
    s: &SocketRef<A>,
    io: &SocketIo<A>,
    sig: &Signaling,
    conn: &Conn,
    _data: Value,
) -> EventResult {
    let j = practitioner_in_room(conn)?;
    let id = j.appointment;
    let everyone = sig.directory.list(id).await?;
    // The new status is committed before anyone hears of the end (room:ended, this ack): a
    // client that reads the appointment on either sees it fulfilled. (The web client moves to
    // its end screen on room:ended, which used to go out first.)
    let moved = move_status(sig, conn, id, RoomEvent::Ended).await;
    let _ = rtc(io).to(rooms::all(id)).emit("room:ended", &json!({ "reason": "ended-by-practitioner" })).await;
    for p in &everyone {
        let _ =
            rtc(io).to(rooms::peer(id, &p.peer_id)).leave(rooms::of_participant(id, j.practitioner, &p.peer_id)).await;
    }
    leave_rooms(s, &j);
    sig.directory.clear(id).await?;
    conn.set_joined(None);
    sig.app.audit(audit(conn, "consultation.end").target(id.to_string())).await?;
    crate::observability::consultation_ended();
    if let Some(to) = moved {
        after_move(sig, conn, id, to).await;
    }
    presence::announce(io, &sig.directory, j.practitioner).await;
    Ok(Value::Null)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Renew {
    token: String,
}

async fn renew<A: Adapter>(
    s: &SocketRef<A>,
    _io: &SocketIo<A>,
    sig: &Signaling,
    conn: &Conn,
    data: Value,
) -> EventResult {
    let req: Renew = parse(data)?;
    let (caller, expires) = check_token(&sig.app, &req.token).await.map_err(|e| match e {
        TokenRefusal::Store(e) => Refusal::from(e),
        other => Refusal::new(Code::Forbidden, other.to_string()),
    })?;
    if caller.user_id != conn.caller().user_id {
        return Err(Refusal::new(Code::Forbidden, "the token belongs to another account"));
    }
    // A token of another login session of the same user: the connection now belongs to that
    // session, and ending the old one no longer ends it.
    let before = conn.renew(caller, expires);
    if before.session_id != caller.session_id {
        s.leave(rooms::session(before.session_id));
        s.join(rooms::session(caller.session_id));
    }
    Ok(json!({ "expiresAt": rfc3339(expires) }))
}

/// Sends `auth:expired` (and disconnects) when the token runs out, `session:expiring` five
/// minutes before the join window closes, and `room:ended {window-closed}` when it closes.
async fn timers<A: Adapter>(s: SocketRef<A>, sig: Signaling, conn: Conn, io: SocketIo<A>) {
    loop {
        if !s.connected() {
            return;
        }
        let now = sig.app.clock().now();
        let token_expires = conn.token_expires();
        if now >= token_expires {
            let _ = s.emit("auth:expired", &json!({}));
            let _ = s.clone().disconnect();
            return;
        }
        let mut next = token_expires;
        if let Some(j) = conn.joined() {
            if now >= j.closes_at {
                let _ = s.emit("room:ended", &json!({ "reason": "window-closed" }));
                leave_rooms(&s, &j);
                let socket_id = s.id.to_string();
                let mine = |p: &Participant| p.socket_id == socket_id;
                let _ = sig.directory.remove_if(j.appointment, conn.caller().user_id, mine).await;
                conn.set_joined(None);
                presence::announce(&io, &sig.directory, j.practitioner).await;
                continue;
            }
            let warn_at = j.closes_at - EXPIRY_WARNING;
            if !j.warned {
                if now >= warn_at {
                    let _ = s.emit("session:expiring", &json!({ "closesAt": rfc3339(j.closes_at) }));
                    conn.mark_warned();
                    continue;
                }
                next = next.min(warn_at);
            }
            next = next.min(j.closes_at);
        }
        // Wake at the next deadline, when a deadline changes, or at least each minute to notice
        // a closed connection.
        let wait = (next - now).clamp(time::Duration::milliseconds(10), time::Duration::minutes(1));
        let wait = std::time::Duration::from_millis(wait.whole_milliseconds() as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = conn.0.changed.notified() => {}
        }
    }
}
