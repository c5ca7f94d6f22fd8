// teletip reference web client: log in, list my appointments, join a consultation over the
// Socket.IO namespace /rtc (docs/signaling.md), lobby and admission, and a WebRTC call.
// No framework, no build step. The access and refresh tokens live in memory only: a reload
// means logging in again. Served with a strict CSP: no inline scripts or styles anywhere.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------
  // State. Everything the page knows lives here; window.teletip exposes a read-only view.
  // ---------------------------------------------------------------------------------------
  const auth = {
    accessToken: null,
    refreshToken: null,
    expiresAt: 0, // ms since epoch
    user: null,
    timer: null,
    refreshing: null, // the Promise of a refresh in flight: refresh from one place at a time
  };

  const room = {
    appointment: null, // the appointment view from the API
    socket: null,
    joined: false, // true after a successful room:join ack on the current connection
    everJoined: false, // true after the first successful join: reconnects then resume
    peerId: null,
    role: null,
    state: null, // "waiting" | "admitted"
    peers: [], // admitted peers other than me [{peerId, role}]
    waiting: [], // for the practitioner: [{peerId, role}]
    ice: null, // {iceServers, ttl, expiresAt, refreshAfter}
    closesAt: null,
    remotePeerId: null,
    ended: null, // why the consultation ended, once it did
    ending: false, // my room:end is in flight
    remoteMedia: null, // the other side's last media:state
    dropped: new Set(), // peers whose connection dropped (room:peer-left disconnected)
    // While my room:join is unanswered: the room events that arrived meanwhile, applied after
    // the answer (see heldDuringJoin). null when no join is in flight.
    heldEvents: null,
  };

  const media = {
    local: null, // MediaStream from getUserMedia (may stay null: receive-only)
    audio: true,
    video: true,
    remote: null,
  };

  const call = {
    pc: null,
    pendingCandidates: [],
    makingOffer: false,
    connectionState: "new",
    candidateType: null, // e.g. "relay ↔ relay"
    statsTimer: null,
    failTimer: null,
  };

  const names = new Map(); // "practitioner:<id>" / "patient:<id>" -> display name

  // ---------------------------------------------------------------------------------------
  // Status and errors: one polite live region for everything that changes.
  // ---------------------------------------------------------------------------------------
  function announce(text) {
    const el = $("status");
    // Re-setting the same text is not announced again: clear first.
    if (el.textContent === text) el.textContent = "";
    el.textContent = text;
  }

  function showError(id, text) {
    const el = $(id);
    el.textContent = text || "";
    el.hidden = !text;
  }

  function show(view) {
    for (const v of ["login-view", "mfa-view", "appointments-view", "room-view"]) $(v).hidden = v !== view;
  }

  // ---------------------------------------------------------------------------------------
  // HTTP API (same origin, JSON, problem+json errors)
  // ---------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }

  async function request(method, path, body, token) {
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
    const text = await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  // An authenticated call; one refresh and retry on 401.
  async function api(method, path, body) {
    try {
      return await request(method, path, body, auth.accessToken);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401 || !auth.refreshToken) throw e;
      await refresh();
      return request(method, path, body, auth.accessToken);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Authentication: login, refresh before expiry (and auth:renew on the socket), logout
  // ---------------------------------------------------------------------------------------
  function takeTokens(t) {
    // Store the new refresh token before using the new access token (control-api.md §3).
    auth.refreshToken = t.refreshToken;
    auth.accessToken = t.accessToken;
    auth.expiresAt = Date.now() + t.expiresIn * 1000;
    if (t.user) auth.user = t.user;
    clearTimeout(auth.timer);
    // Refresh at 75 % of the lifetime, at most a minute before expiry.
    const lead = Math.min(60, t.expiresIn * 0.25);
    auth.timer = setTimeout(() => {
      refresh().catch(() => {});
    }, Math.max(1, t.expiresIn - lead) * 1000);
  }

  function refresh() {
    if (auth.refreshing) return auth.refreshing;
    const spent = auth.refreshToken;
    auth.refreshing = (async () => {
      try {
        if (!spent) throw new Error("not logged in");
        const t = await request("POST", "/v1/auth/refresh", { refreshToken: spent });
        takeTokens(t);
        renewSocket();
        return t;
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) {
          sessionOver("Your session has ended. Please log in again.");
        }
        throw e;
      } finally {
        auth.refreshing = null;
      }
    })();
    return auth.refreshing;
  }

  function renewSocket() {
    const s = room.socket;
    if (!s || !s.connected) return;
    s.emit("auth:renew", { token: auth.accessToken }, (ack) => {
      if (!ack || !ack.ok) announce(`Could not renew the signaling session: ${errText(ack)}`);
    });
  }

  async function login(email, password, code) {
    const body = { email, password };
    // Six digits are the app's code; anything else a recovery code (control-api.md §3).
    if (code) body[/^\d{6}$/.test(code) ? "otp" : "recoveryCode"] = code;
    const t = await request("POST", "/v1/auth/login", body);
    takeTokens(t);
    auth.mustEnroll = t.mfaEnrollmentRequired === true;
    $("user-name").textContent = auth.user.displayName;
    $("user-role").textContent = auth.user.role;
    $("whoami").hidden = false;
  }

  function forgetTokens() {
    clearTimeout(auth.timer);
    auth.accessToken = null;
    auth.refreshToken = null;
    auth.expiresAt = 0;
    auth.user = null;
    names.clear();
  }

  async function logout() {
    leaveRoom({ quiet: true });
    const token = auth.accessToken;
    forgetTokens();
    if (token) {
      try {
        await request("POST", "/v1/auth/logout", undefined, token);
      } catch {
        /* the session ends anyway */
      }
    }
    $("whoami").hidden = true;
    showLogin("You are logged out.");
  }

  function sessionOver(message) {
    leaveRoom({ quiet: true });
    forgetTokens();
    $("whoami").hidden = true;
    showLogin(message);
  }

  function showLogin(message) {
    show("login-view");
    $("login-password").value = "";
    $("login-otp").value = "";
    $("login-otp-field").hidden = true;
    if (message) announce(message);
    $("login-email").focus();
  }

  // ---------------------------------------------------------------------------------------
  // Two-factor enrollment: a session whose role must use MFA can do nothing else until then
  // ---------------------------------------------------------------------------------------
  async function startEnrollment() {
    const e = await api("POST", "/v1/auth/mfa/enroll", {});
    $("mfa-uri").textContent = e.otpauthUri;
    $("mfa-form").hidden = false;
    $("mfa-done").hidden = true;
    showError("mfa-error", "");
    show("mfa-view");
    announce("Set up two-factor authentication to continue.");
    $("mfa-code").focus();
  }

  async function confirmEnrollment(code) {
    const r = await api("POST", "/v1/auth/mfa/confirm", { code });
    auth.mustEnroll = false;
    const list = $("mfa-codes");
    list.replaceChildren(...r.recoveryCodes.map((c) => Object.assign(document.createElement("li"), { textContent: c })));
    $("mfa-form").hidden = true;
    $("mfa-done").hidden = false;
    announce("Two-factor authentication is on. Save your recovery codes.");
    $("mfa-continue").focus();
  }

  // ---------------------------------------------------------------------------------------
  // Appointments
  // ---------------------------------------------------------------------------------------
  const STATUS_TEXT = {
    proposed: "proposed",
    pending: "pending",
    booked: "booked",
    arrived: "patient in the waiting room",
    "checked-in": "in consultation",
    fulfilled: "done",
    cancelled: "cancelled",
    noshow: "no-show",
    "entered-in-error": "entered in error",
    waitlist: "waitlist",
  };

  function when(a) {
    const start = new Date(a.start);
    const end = new Date(a.end);
    const day = start.toLocaleDateString(undefined, { weekday: "short", year: "numeric", month: "short", day: "numeric" });
    const from = start.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    const to = end.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    return `${day}, ${from}–${to}`;
  }

  async function nameOf(kind, id) {
    const key = `${kind}:${id}`;
    if (names.has(key)) return names.get(key);
    let name = kind === "practitioner" ? "Practitioner" : "Patient";
    try {
      const r = await api("GET", `/v1/${kind}s/${id}`);
      if (r && r.displayName) name = r.displayName;
    } catch {
      /* keep the generic name */
    }
    names.set(key, name);
    return name;
  }

  function counterpart(a) {
    return auth.user && auth.user.role === "practitioner" ? ["patient", a.patientId] : ["practitioner", a.practitionerId];
  }

  async function loadAppointments() {
    show("appointments-view");
    const list = $("appointments");
    let items;
    try {
      items = await api("GET", "/v1/appointments?limit=100");
    } catch (e) {
      announce(`Could not load your appointments: ${e.message}`);
      return;
    }
    list.replaceChildren();
    $("appointments-empty").hidden = items.length > 0;
    for (const a of items) {
      const li = document.createElement("li");
      li.dataset.testid = "appointment";
      li.dataset.appointmentId = a.id;
      const info = document.createElement("div");
      const time = document.createElement("div");
      time.className = "appt-time";
      time.textContent = when(a);
      const who = document.createElement("div");
      who.className = "appt-who";
      const [kind, id] = counterpart(a);
      who.textContent = kind === "patient" ? "Patient" : "Practitioner";
      nameOf(kind, id).then((n) => {
        who.textContent = kind === "patient" ? `Patient: ${n}` : `With ${n}`;
      });
      const status = document.createElement("div");
      status.className = "appt-status";
      status.dataset.status = a.status;
      status.dataset.testid = "appointment-status";
      status.textContent = `Status: ${STATUS_TEXT[a.status] || a.status}`;
      info.append(time, who, status);
      const open = document.createElement("button");
      open.type = "button";
      open.textContent = "Open";
      open.dataset.testid = "appointment-open";
      open.setAttribute("aria-label", `Open the appointment of ${when(a)}`);
      open.addEventListener("click", () => openRoom(a));
      li.append(info, open);
      list.append(li);
    }
    announce(items.length ? `${items.length} appointment${items.length === 1 ? "" : "s"}.` : "You have no appointments.");
  }

  // ---------------------------------------------------------------------------------------
  // The consultation room
  // ---------------------------------------------------------------------------------------
  function errText(ack) {
    if (!ack) return "no answer from the server";
    if (ack.error) return ack.error.message || ack.error.code;
    return "unknown error";
  }

  function emit(event, payload, timeoutMs = 10000) {
    return new Promise((resolve) => {
      const s = room.socket;
      if (!s) {
        resolve({ ok: false, error: { code: "not-joined", message: "not connected" } });
        return;
      }
      s.timeout(timeoutMs).emit(event, payload, (err, ack) => {
        if (err) resolve({ ok: false, error: { code: "timeout", message: "the server did not answer in time" } });
        else resolve(ack);
      });
    });
  }

  function openRoom(a) {
    resetRoom();
    room.appointment = a;
    show("room-view");
    $("room-when").textContent = when(a);
    $("prejoin").hidden = false;
    $("join").disabled = false;
    $("lobby").hidden = true;
    $("waiting-panel").hidden = true;
    $("call").hidden = true;
    $("end").hidden = true;
    showError("room-error", "");
    const [kind, id] = counterpart(a);
    nameOf(kind, id).then((n) => {
      $("room-title").textContent = kind === "patient" ? `Consultation with ${n}` : `Consultation with ${n}`;
      $("remote-label").textContent = n;
    });
    announce("Appointment opened. Press Join to enter the consultation.");
    $("join").focus();
  }

  function resetRoom() {
    room.appointment = null;
    room.joined = false;
    room.everJoined = false;
    room.peerId = null;
    room.role = null;
    room.state = null;
    room.peers = [];
    room.waiting = [];
    room.ice = null;
    room.closesAt = null;
    room.remotePeerId = null;
    room.ended = null;
    room.ending = false;
    room.remoteMedia = null;
    room.dropped = new Set();
    room.heldEvents = null;
  }

  async function getLocalMedia() {
    if (media.local) return media.local;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      announce("This browser cannot use a camera here (a secure https page is needed). You can still see and hear the other side.");
      return null;
    }
    try {
      media.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    } catch (e) {
      try {
        media.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
        announce("No camera available: joining with the microphone only.");
      } catch {
        announce(`Camera and microphone are not available (${e.name}). You can still see and hear the other side.`);
        media.local = null;
      }
    }
    if (media.local) {
      $("local-video").srcObject = media.local;
      for (const t of media.local.getAudioTracks()) t.enabled = media.audio;
      for (const t of media.local.getVideoTracks()) t.enabled = media.video;
    }
    renderMediaButtons();
    return media.local;
  }

  function stopLocalMedia() {
    if (media.local) for (const t of media.local.getTracks()) t.stop();
    media.local = null;
    $("local-video").srcObject = null;
  }

  async function join() {
    if (!room.appointment) return;
    $("join").disabled = true;
    showError("room-error", "");
    announce("Starting camera and microphone…");
    await getLocalMedia();
    connectSocket();
  }

  function connectSocket() {
    if (room.socket) room.socket.close();
    // `auth` as a function: every (re)connection carries the current access token.
    const socket = window.io("/rtc", {
      auth: (cb) => cb({ token: auth.accessToken }),
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
    });
    room.socket = socket;
    setSignaling("connecting");

    let refusedInARow = 0;
    socket.on("connect", () => {
      refusedInARow = 0;
      setSignaling("connected");
      roomJoin();
    });
    socket.on("connect_error", async (err) => {
      const msg = (err && err.message) || "";
      setSignaling("cannot connect");
      if (msg.startsWith("token refused") && ++refusedInARow > 2) {
        socket.close();
        showError("room-error", `The consultation server refuses this login (${msg}). Please log out and in again.`);
        announce("The consultation server refuses this login.");
      } else if (msg.startsWith("token refused")) {
        // Most likely an expired token: refresh and try again.
        try {
          await refresh();
          if (room.socket === socket) socket.connect();
        } catch {
          /* sessionOver() already shown */
        }
      } else if (msg.startsWith("session ended") || msg.startsWith("account disabled") || msg.startsWith("token required")) {
        socket.close();
        sessionOver(`Signaling refused: ${msg}. Please log in again.`);
      } else {
        announce(`Cannot reach the consultation server (${msg || "network"}); retrying…`);
      }
    });
    socket.on("disconnect", (reason) => {
      room.joined = false;
      setSignaling(`disconnected (${reason})`);
      if (room.ended) return;
      if (reason === "io server disconnect") {
        // The server closed us (token expired without renewal, or replaced by another tab).
        if (authExpiredPending) {
          authExpiredPending = false;
          refresh()
            .then(() => {
              if (room.socket === socket) socket.connect();
            })
            .catch(() => {});
        } else {
          announce("The consultation server closed this connection (perhaps you joined from another window).");
        }
      } else if (reason !== "io client disconnect") {
        announce("Connection to the consultation server lost; reconnecting. The video continues meanwhile.");
      }
    });

    socket.on("auth:expired", () => {
      authExpiredPending = true;
    });
    // Logged out elsewhere, disabled, or the account changed: the server ends the connection.
    socket.on("session:ended", () => {
      socket.close();
      sessionOver("Your session has ended. Please log in again.");
    });
    socket.on("lobby:waiting", () => {
      room.state = "waiting";
      renderRoom();
    });
    socket.on("lobby:patient-arrived", heldDuringJoin((p) => {
      if (!room.waiting.some((w) => w.peerId === p.peerId)) room.waiting.push({ peerId: p.peerId, role: p.role });
      renderWaiting();
      announce("Your patient is in the waiting room.");
    }));
    socket.on("lobby:admitted", heldDuringJoin((p) => {
      room.state = "admitted";
      room.peers = p.peers || [];
      renderRoom();
      sendMediaState();
      announce("The practitioner let you in. Connecting the video…");
    }));
    socket.on("lobby:denied", () => {
      room.ended = "denied";
      announce("The practitioner could not admit you to this consultation.");
      teardownCall();
      closeSocket();
      $("lobby").hidden = true;
      showError("room-error", "You were not admitted to this consultation. Please contact the practice.");
    });
    socket.on("room:peer-joined", heldDuringJoin((p) => {
      room.waiting = room.waiting.filter((w) => w.peerId !== p.peerId);
      if (!room.peers.some((x) => x.peerId === p.peerId)) room.peers.push({ peerId: p.peerId, role: p.role });
      renderWaiting();
      announce(`${p.role === "patient" ? "The patient" : "The practitioner"} joined the consultation.`);
      sendMediaState(); // tell the newcomer whether my microphone and camera are on
      // A peer coming back after a dropped connection may have lost its side of the call (a
      // reload before it answered): an unanswered offer is then made again.
      const resumed = room.dropped.delete(p.peerId);
      if (room.role === "practitioner") startCall(p.peerId, resumed);
    }));
    socket.on("room:peer-left", heldDuringJoin((p) => {
      room.waiting = room.waiting.filter((w) => w.peerId !== p.peerId);
      renderWaiting();
      if (p.reason === "disconnected") {
        room.dropped.add(p.peerId);
        // They keep their place for 60 s; the media may still flow meanwhile.
        announce("The other participant's connection dropped; waiting for them to come back.");
        return;
      }
      room.peers = room.peers.filter((x) => x.peerId !== p.peerId);
      if (p.peerId === room.remotePeerId) {
        teardownPeer();
        room.remoteMedia = null;
        $("remote-media").textContent = "";
        announce("The other participant left the consultation.");
      }
    }));
    // Signals are handled one after the other: each step is asynchronous, and an offer, its
    // candidates or a second offer must not overtake one another.
    socket.on("signal:offer", (m) => inOrder(() => onOffer(m)));
    socket.on("signal:answer", (m) => inOrder(() => onAnswer(m)));
    socket.on("signal:candidate", (m) => inOrder(() => onCandidate(m)));
    socket.on("media:state", (m) => {
      if (m.from !== room.remotePeerId && room.remotePeerId) return;
      const parts = [];
      if (!m.audio) parts.push("microphone off");
      if (!m.video) parts.push("camera off");
      $("remote-media").textContent = parts.length ? `(${parts.join(", ")})` : "";
      // Announce what changed (the first state only when something is off).
      const before = room.remoteMedia || { audio: true, video: true };
      const news = [];
      if (before.audio !== m.audio) news.push(m.audio ? "unmuted their microphone" : "muted their microphone");
      if (before.video !== m.video) news.push(m.video ? "turned their camera on" : "turned their camera off");
      room.remoteMedia = { audio: m.audio, video: m.video };
      if (news.length) announce(`The other participant ${news.join(" and ")}.`);
    });
    socket.on("session:expiring", (m) => {
      const t = new Date(m.closesAt).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
      announce(`The consultation room closes at ${t}.`);
    });
    socket.on("room:ended", (m) => {
      if (room.ending) return; // my own room:end: its acknowledgement finishes the job
      room.ended = (m && m.reason) || "ended";
      teardownCall();
      closeSocket();
      stopLocalMedia();
      $("lobby").hidden = true;
      $("waiting-panel").hidden = true;
      $("call").hidden = true;
      const why = room.ended === "window-closed" ? "the appointment time is over" : "the practitioner ended it";
      showError("room-error", `The consultation has ended (${why}).`);
      announce(`The consultation has ended (${why}).`);
    });
  }

  let authExpiredPending = false;

  /**
   * A room event handler that waits for my join's answer. The server announces a newcomer to
   * the room at once, but answers my own room:join only after it has issued my credentials and
   * written the audit event: an arrival can reach me before the answer whose snapshot
   * (`waiting`, `peers`) predates it. Applied at once, the snapshot would then overwrite it and
   * the waiting patient would vanish from the list; held and applied after the snapshot, it is
   * kept. (The handlers are idempotent, so an event the snapshot already reflects is harmless.)
   */
  function heldDuringJoin(handler) {
    return (...args) => {
      if (room.heldEvents) room.heldEvents.push(() => handler(...args));
      else handler(...args);
    };
  }

  /** Applies the room events held while a join was unanswered (or drops them: `apply` false). */
  function releaseHeldEvents(apply) {
    const held = room.heldEvents || [];
    room.heldEvents = null;
    if (apply) for (const run of held) run();
  }

  function closeSocket() {
    if (room.socket) {
      room.socket.removeAllListeners();
      room.socket.close();
    }
    room.socket = null;
    room.joined = false;
    setSignaling("closed");
  }

  async function roomJoin() {
    const a = room.appointment;
    if (!a) return;
    // Always `resume: true`: it restores my place when I still have one (a reconnect, a page
    // reload within 60 s) and starts afresh otherwise. Retried when unanswered, which is safe
    // for the same reason (a lost packet, a slow server).
    let ack;
    room.heldEvents = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      const socket = room.socket;
      if (!socket || !socket.connected) return releaseHeldEvents(false);
      ack = await emit("room:join", { appointmentId: a.id, resume: true }, 4000);
      if (room.socket !== socket) return releaseHeldEvents(false);
      if (!ack || !ack.error || ack.error.code !== "timeout") break;
    }
    if (!ack || !ack.ok) {
      releaseHeldEvents(false);
      const code = ack && ack.error ? ack.error.code : "error";
      showError("room-error", `Cannot join: ${errText(ack)}`);
      announce(`Cannot join the consultation: ${errText(ack)}`);
      if (!room.everJoined || code !== "timeout") {
        closeSocket();
        $("join").disabled = false;
      }
      return;
    }
    const d = ack.data;
    room.joined = true;
    room.everJoined = true;
    room.peerId = d.peerId;
    room.role = d.role;
    room.state = d.state;
    room.peers = d.peers || [];
    room.waiting = d.waiting || [];
    room.ice = d.ice;
    room.closesAt = d.closesAt;
    if (call.pc && d.ice && d.ice.iceServers) {
      try {
        call.pc.setConfiguration(pcConfig());
      } catch {
        /* keep the old credentials */
      }
    }
    $("prejoin").hidden = true;
    renderRoom();
    if (room.role === "patient") {
      announce(room.state === "waiting" ? "You are in the waiting room. Please wait to be let in." : "You are in the consultation.");
    } else {
      announce(room.waiting.length ? "You joined. Your patient is waiting." : "You joined. Waiting for the patient to arrive.");
      // A patient already admitted (e.g. after our own reconnect): call them unless a call runs.
      for (const p of room.peers) if (p.role === "patient") startCall(p.peerId);
    }
    sendMediaState();
    releaseHeldEvents(true);
  }

  function renderRoom() {
    const admitted = room.state === "admitted";
    $("lobby").hidden = !(room.role === "patient" && room.state === "waiting");
    $("call").hidden = !admitted;
    $("end").hidden = room.role !== "practitioner";
    $("waiting-panel").hidden = room.role !== "practitioner";
    renderWaiting();
    renderMediaButtons();
  }

  function renderWaiting() {
    const list = $("waiting-list");
    list.replaceChildren();
    $("waiting-empty").hidden = room.waiting.length > 0;
    for (const w of room.waiting) {
      const li = document.createElement("li");
      li.dataset.testid = "waiting-patient";
      li.dataset.peerId = w.peerId;
      const label = document.createElement("span");
      const [, id] = room.appointment ? counterpart(room.appointment) : [null, null];
      label.textContent = "Patient waiting";
      if (id) nameOf("patient", id).then((n) => (label.textContent = `${n} is waiting`));
      const admit = document.createElement("button");
      admit.type = "button";
      admit.textContent = "Admit";
      admit.dataset.testid = "admit";
      admit.addEventListener("click", () => decide("lobby:admit", w.peerId));
      const deny = document.createElement("button");
      deny.type = "button";
      deny.className = "secondary";
      deny.textContent = "Deny";
      deny.dataset.testid = "deny";
      deny.addEventListener("click", () => decide("lobby:deny", w.peerId));
      const buttons = document.createElement("div");
      buttons.className = "row";
      buttons.append(admit, deny);
      li.append(label, buttons);
      list.append(li);
    }
  }

  async function decide(event, peerId) {
    const ack = await emit(event, { peerId });
    if (!ack || !ack.ok) {
      announce(`Could not ${event === "lobby:admit" ? "admit" : "deny"}: ${errText(ack)}`);
      return;
    }
    room.waiting = room.waiting.filter((w) => w.peerId !== peerId);
    renderWaiting();
    if (event === "lobby:admit") {
      announce("Patient admitted. Connecting the video…");
      // room:peer-joined starts the call too; startCall is idempotent.
      if (!room.peers.some((x) => x.peerId === peerId)) room.peers.push({ peerId, role: "patient" });
      startCall(peerId);
    } else {
      announce("Patient denied.");
    }
  }

  // ---------------------------------------------------------------------------------------
  // WebRTC. The practitioner offers; the patient answers. Candidates are trickled.
  // ---------------------------------------------------------------------------------------
  function pcConfig() {
    const relayOnly = $("relay-only").checked;
    return {
      iceServers: (room.ice && room.ice.iceServers) || [],
      iceTransportPolicy: relayOnly ? "relay" : "all",
    };
  }

  function newPeerConnection(remotePeerId) {
    teardownPeer();
    const pc = new RTCPeerConnection(pcConfig());
    call.pc = pc;
    call.pendingCandidates = [];
    call.makingOffer = false;
    room.remotePeerId = remotePeerId;
    media.remote = new MediaStream();
    $("remote-video").srcObject = media.remote;

    pc.onicecandidate = (ev) => {
      if (ev.candidate && room.socket && pc === call.pc) {
        emit("signal:candidate", { to: remotePeerId, candidate: ev.candidate.toJSON() }).then((ack) => {
          if (ack && !ack.ok) console.warn("signal:candidate refused", ack.error);
        });
      }
    };
    pc.ontrack = (ev) => {
      if (pc !== call.pc) return;
      if (!media.remote.getTracks().includes(ev.track)) media.remote.addTrack(ev.track);
      $("remote-video").srcObject = media.remote;
    };
    pc.onconnectionstatechange = () => {
      if (pc !== call.pc) return;
      setConnection(pc.connectionState);
    };
    if (room.role === "practitioner") {
      pc.onnegotiationneeded = () => {
        if (pc === call.pc) makeOffer(pc, remotePeerId);
      };
    }
    if (media.local && media.local.getTracks().length) {
      for (const t of media.local.getTracks()) pc.addTrack(t, media.local);
    }
    // The offerer asks to receive what it does not send; the answerer's offer m-lines do that.
    for (const kind of room.role === "practitioner" ? ["audio", "video"] : []) {
      if (!pc.getTransceivers().some((tr) => tr.receiver.track && tr.receiver.track.kind === kind)) {
        pc.addTransceiver(kind, { direction: "recvonly" });
      }
    }
    setConnection(pc.connectionState);
    startStats();
    return pc;
  }

  let signalChain = Promise.resolve();
  function inOrder(step) {
    signalChain = signalChain.then(step).catch((e) => announce(`Video setup failed: ${e.message}`));
    return signalChain;
  }

  // Practitioner: call an admitted patient (idempotent while a call with them is alive).
  function startCall(peerId, resumed = false) {
    if (room.role !== "practitioner" || room.ended) return;
    const pc = call.pc;
    if (pc && room.remotePeerId === peerId) {
      // Keep a call that works or is being set up; an offer left unanswered (the patient
      // reloaded before answering) or a dead connection is started afresh.
      const unanswered = resumed && pc.connectionState === "new" && pc.signalingState === "have-local-offer";
      if (!unanswered && !["failed", "closed"].includes(pc.connectionState)) return;
    }
    newPeerConnection(peerId);
    $("call").hidden = false;
  }

  async function makeOffer(pc, to) {
    if (call.makingOffer || pc.signalingState !== "stable") return;
    call.makingOffer = true;
    try {
      const offer = await pc.createOffer();
      if (pc !== call.pc) return;
      await pc.setLocalDescription(offer);
      const ack = await emit("signal:offer", { to, sdp: pc.localDescription.sdp });
      if (!ack || !ack.ok) announce(`The offer was refused: ${errText(ack)}`);
    } catch (e) {
      announce(`Video setup failed: ${e.message}`);
    } finally {
      call.makingOffer = false;
    }
  }

  function fingerprint(sdp) {
    const m = /^a=fingerprint:(.*)$/m.exec(sdp || "");
    return m ? m[1].trim() : null;
  }

  function sdpOf(m) {
    if (typeof m.sdp === "string") return m.sdp;
    if (m.sdp && typeof m.sdp.sdp === "string") return m.sdp.sdp;
    throw new Error("malformed description");
  }

  // Patient: answer the practitioner's offer, on the existing connection when it is alive
  // (renegotiation, ICE restart) or on a new one.
  async function onOffer(m) {
    if (room.role !== "patient") return;
    const sdp = sdpOf(m);
    let pc = call.pc;
    // Renegotiation (e.g. an ICE restart) keeps the connection; an offer from a new
    // connection of the practitioner (another DTLS fingerprint) needs a new one here too.
    const sameSession =
      pc &&
      room.remotePeerId === m.from &&
      !["failed", "closed"].includes(pc.connectionState) &&
      (!pc.remoteDescription || fingerprint(pc.remoteDescription.sdp) === fingerprint(sdp));
    const dead = !sameSession;
    if (dead) pc = newPeerConnection(m.from);
    try {
      await pc.setRemoteDescription({ type: "offer", sdp });
    } catch (e) {
      if (dead) throw e;
      pc = newPeerConnection(m.from);
      await pc.setRemoteDescription({ type: "offer", sdp });
    }
    await flushCandidates(pc);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    const ack = await emit("signal:answer", { to: m.from, sdp: pc.localDescription.sdp });
    if (!ack || !ack.ok) announce(`The answer was refused: ${errText(ack)}`);
    $("call").hidden = false;
  }

  async function onAnswer(m) {
    const pc = call.pc;
    if (!pc || m.from !== room.remotePeerId || pc.signalingState !== "have-local-offer") return;
    await pc.setRemoteDescription({ type: "answer", sdp: sdpOf(m) });
    await flushCandidates(pc);
  }

  async function onCandidate(m) {
    const pc = call.pc;
    if (!pc || m.from !== room.remotePeerId || !m.candidate) return;
    const c = typeof m.candidate === "string" ? { candidate: m.candidate, sdpMid: "0" } : m.candidate;
    if (!pc.remoteDescription) {
      call.pendingCandidates.push(c);
      return;
    }
    try {
      await pc.addIceCandidate(c);
    } catch (e) {
      console.warn("addIceCandidate", e);
    }
  }

  async function flushCandidates(pc) {
    const queued = call.pendingCandidates.splice(0);
    for (const c of queued) {
      try {
        await pc.addIceCandidate(c);
      } catch (e) {
        console.warn("addIceCandidate", e);
      }
    }
  }

  function teardownPeer() {
    if (call.pc) {
      call.pc.onicecandidate = call.pc.ontrack = call.pc.onconnectionstatechange = call.pc.onnegotiationneeded = null;
      call.pc.close();
    }
    call.pc = null;
    call.pendingCandidates = [];
    call.candidateType = null;
    clearTimeout(call.failTimer);
    stopStats();
    room.remotePeerId = null;
    if (media.remote) for (const t of media.remote.getTracks()) t.stop();
    media.remote = null;
    $("remote-video").srcObject = null;
    setConnection("–");
    $("candidate-type").textContent = "–";
  }

  function teardownCall() {
    teardownPeer();
  }

  function setConnection(state) {
    call.connectionState = state;
    $("connection-state").textContent = state;
    if (state === "connected") announce("Video connected.");
    if (state === "failed") announce("The video connection failed.");
    // The practitioner re-offers when the media path is lost for good (for example the
    // patient reloaded the page): after 'failed', or 8 s of 'disconnected'.
    clearTimeout(call.failTimer);
    if (room.role === "practitioner" && (state === "failed" || state === "disconnected")) {
      const peer = room.remotePeerId;
      call.failTimer = setTimeout(
        () => {
          if (!call.pc || room.remotePeerId !== peer || call.pc.connectionState === "connected") return;
          if (room.peers.some((p) => p.peerId === peer)) {
            newPeerConnection(peer);
          }
        },
        state === "failed" ? 500 : 8000,
      );
    }
  }

  function setSignaling(text) {
    $("signaling-state").textContent = text;
  }

  function startStats() {
    stopStats();
    call.statsTimer = setInterval(updateRoute, 1500);
  }

  function stopStats() {
    clearInterval(call.statsTimer);
    call.statsTimer = null;
  }

  // The selected candidate pair, as getStats() reports it.
  async function selectedPair(pc) {
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId) || pair;
    });
    if (!pair) {
      stats.forEach((s) => {
        if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = pair || s;
      });
    }
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    return { pair, local: local && local.candidateType, remote: remote && remote.candidateType };
  }

  async function updateRoute() {
    const pc = call.pc;
    if (!pc) return;
    try {
      const sel = await selectedPair(pc);
      const text = sel ? `${sel.local} ↔ ${sel.remote}` : "–";
      if (text !== call.candidateType) {
        call.candidateType = text;
        $("candidate-type").textContent = sel
          ? `${sel.local} ↔ ${sel.remote}${sel.local === "relay" || sel.remote === "relay" ? " (through the relay)" : ""}`
          : "–";
      }
    } catch {
      /* the connection closed meanwhile */
    }
  }

  // ---------------------------------------------------------------------------------------
  // Media controls
  // ---------------------------------------------------------------------------------------
  function renderMediaButtons() {
    const a = $("toggle-audio");
    const v = $("toggle-video");
    a.textContent = media.audio ? "Mute microphone" : "Unmute microphone";
    a.setAttribute("aria-pressed", String(!media.audio));
    v.textContent = media.video ? "Turn camera off" : "Turn camera on";
    v.setAttribute("aria-pressed", String(!media.video));
    const hasA = !!(media.local && media.local.getAudioTracks().length);
    const hasV = !!(media.local && media.local.getVideoTracks().length);
    a.disabled = !hasA;
    v.disabled = !hasV;
    const parts = [];
    if (!hasA || !media.audio) parts.push("microphone off");
    if (!hasV || !media.video) parts.push("camera off");
    $("local-media").textContent = parts.length ? `(${parts.join(", ")})` : "";
  }

  function sendMediaState() {
    if (!room.joined || room.state !== "admitted") return;
    const hasA = !!(media.local && media.local.getAudioTracks().length);
    const hasV = !!(media.local && media.local.getVideoTracks().length);
    emit("media:state", { audio: hasA && media.audio, video: hasV && media.video });
  }

  function toggle(kind) {
    media[kind] = !media[kind];
    if (media.local) {
      const tracks = kind === "audio" ? media.local.getAudioTracks() : media.local.getVideoTracks();
      for (const t of tracks) t.enabled = media[kind];
    }
    renderMediaButtons();
    sendMediaState();
    announce(
      kind === "audio"
        ? media.audio
          ? "Microphone on."
          : "Microphone muted."
        : media.video
          ? "Camera on."
          : "Camera off.",
    );
  }

  // ---------------------------------------------------------------------------------------
  // Leaving
  // ---------------------------------------------------------------------------------------
  async function hangup() {
    if (room.socket && room.joined) await emit("room:leave", {});
    leaveRoom({ quiet: false });
    announce("You left the consultation.");
    loadAppointments();
  }

  async function endConsultation() {
    room.ending = true;
    const ack = await emit("room:end", {});
    room.ending = false;
    if (!ack || !ack.ok) {
      announce(`Could not end the consultation: ${errText(ack)}`);
      return;
    }
    leaveRoom({ quiet: false });
    announce("Consultation ended.");
    loadAppointments();
  }

  function leaveRoom() {
    room.ended = room.ended || "left";
    teardownCall();
    closeSocket();
    stopLocalMedia();
    resetRoom();
    media.audio = true;
    media.video = true;
  }

  function onRelayOnlyChange() {
    const pc = call.pc;
    if (!pc) return;
    try {
      pc.setConfiguration(pcConfig());
      // The offerer restarts ICE so that the new policy takes effect now.
      if (room.role === "practitioner") pc.restartIce();
    } catch (e) {
      announce(`Cannot change the route now: ${e.message}`);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Wiring
  // ---------------------------------------------------------------------------------------
  function wire() {
    $("login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      showError("login-error", "");
      const email = $("login-email").value.trim();
      const password = $("login-password").value;
      const code = $("login-otp").value.trim();
      if (!email || !password) {
        showError("login-error", "Enter your e-mail address and password.");
        return;
      }
      $("login-submit").disabled = true;
      try {
        await login(email, password, code);
        $("login-password").value = "";
        $("login-otp").value = "";
        $("login-otp-field").hidden = true;
        announce(`Logged in as ${auth.user.displayName}.`);
        if (auth.mustEnroll) {
          await startEnrollment();
          return;
        }
        await loadAppointments();
        $("main").focus();
      } catch (e) {
        if (e instanceof ApiError && e.problem && e.problem.type === "/problems/mfa-required") {
          $("login-otp-field").hidden = false;
          showError("login-error", "Enter the code from your authenticator app, or a recovery code.");
          $("login-otp").focus();
          return;
        }
        const msg =
          e instanceof ApiError && e.status === 401 && code
            ? "The code is wrong or was already used. Wait for the next code and try again."
            : e instanceof ApiError && e.status === 401
            ? "E-mail or password is wrong, or the account is locked. Contact your administrator if this persists."
            : e instanceof ApiError && e.status === 429
              ? "Too many attempts. Please wait a moment."
              : `Login failed: ${e.message}`;
        showError("login-error", msg);
      } finally {
        $("login-submit").disabled = false;
      }
    });
    $("mfa-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      showError("mfa-error", "");
      try {
        await confirmEnrollment($("mfa-code").value.trim());
      } catch (e) {
        showError("mfa-error", e instanceof ApiError && e.status === 422 ? "That code is wrong. Try the next one." : e.message);
      } finally {
        $("mfa-code").value = "";
      }
    });
    $("mfa-continue").addEventListener("click", async () => {
      await loadAppointments();
      $("main").focus();
    });
    $("logout").addEventListener("click", () => logout());
    $("appointments-reload").addEventListener("click", () => loadAppointments());
    $("room-back").addEventListener("click", async () => {
      if (room.socket && room.joined) await emit("room:leave", {});
      leaveRoom();
      loadAppointments();
    });
    $("join").addEventListener("click", () => join());
    $("toggle-audio").addEventListener("click", () => toggle("audio"));
    $("toggle-video").addEventListener("click", () => toggle("video"));
    $("hangup").addEventListener("click", () => hangup());
    $("end").addEventListener("click", () => endConsultation());
    $("relay-only").addEventListener("change", onRelayOnlyChange);
    // No room:leave on pagehide: closing or reloading the tab is a dropped connection, which
    // keeps my place for 60 s (a reload rejoins with resume and is not sent back to the lobby).
  }

  // A read-only view for tests and debugging: window.teletip.pc, window.teletip.state.
  const view = Object.freeze({
    get pc() {
      return call.pc;
    },
    get state() {
      return Object.freeze({
        loggedIn: !!auth.accessToken,
        user: auth.user ? Object.freeze({ ...auth.user }) : null,
        accessTokenExpiresAt: auth.expiresAt,
        appointmentId: room.appointment ? room.appointment.id : null,
        socketConnected: !!(room.socket && room.socket.connected),
        socketId: room.socket ? room.socket.id : null,
        joined: room.joined,
        peerId: room.peerId,
        role: room.role,
        roomState: room.state,
        peers: room.peers.map((p) => ({ ...p })),
        waiting: room.waiting.map((p) => ({ ...p })),
        remotePeerId: room.remotePeerId,
        closesAt: room.closesAt,
        relayOnly: $("relay-only").checked,
        iceTransportPolicy: call.pc ? call.pc.getConfiguration().iceTransportPolicy : null,
        connectionState: call.pc ? call.pc.connectionState : null,
        candidateType: call.candidateType,
        audio: media.audio,
        video: media.video,
        ended: room.ended,
      });
    },
    selectedCandidatePair() {
      return call.pc ? selectedPair(call.pc) : Promise.resolve(null);
    },
  });
  Object.defineProperty(window, "teletip", { value: view, writable: false, configurable: false, enumerable: true });

  function start() {
    wire();
    if (typeof window.io !== "function") {
      announce("The signaling library did not load.");
    }
    showLogin();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
