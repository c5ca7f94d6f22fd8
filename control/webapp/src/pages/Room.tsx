import { Call, CallError, FAILURE_ADVICE, Signaling, SessionEndedError, SignalingError, type CallState, type JoinedRoom, type PractitionerPresence, type RoomPeer } from "@teletip/sdk";
import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { Confirm } from "../components/Confirm.js";
import { CAUSES_TR, useT, type MessageKey } from "../i18n.js";
import { chime, listDevices, openMedia, problemOf, type MediaProblem } from "../media.js";
import { sample, type Sample } from "../quality.js";
import { navigate } from "../router.js";
import { client, debugView, reason } from "../session.js";
import { callTuning, chosenDevices, relayOnly } from "../settings.js";
import { clock } from "../time.js";

type Phase = "joining" | "waiting" | "denied" | "in-room" | "refused";
interface Waiting extends RoomPeer {
  since: number;
}
interface ChatLine {
  from: "me" | "them";
  text: string;
  at: number;
}

/** A refusal of room:join in plain words, with what to do. */
function refusal(e: unknown, t: (k: MessageKey, v?: Record<string, string>) => string): { text: string; code: string } {
  if (e instanceof SessionEndedError) return { text: t("join.session-ended"), code: "session-ended" };
  if (e instanceof SignalingError) {
    const known = ["consent-required", "closed", "conflict", "forbidden", "not-found", "session-ended"];
    if (known.includes(e.code)) return { text: t(`join.${e.code}` as MessageKey, { detail: e.message }), code: e.code };
    return { text: t("join.other", { detail: e.message }), code: e.code };
  }
  return { text: t("join.other", { detail: reason(e) }), code: "other" };
}

export function Room(props: { appointmentId: string; baseTitle: string }) {
  const { t, lang } = useT();
  const id = props.appointmentId;
  const sig = useRef<Signaling | null>(null);
  const call = useRef<Call | null>(null);
  const local = useRef<MediaStream | null>(null);
  const cameraTrack = useRef<MediaStreamTrack | null>(null);
  const remoteVideo = useRef<HTMLVideoElement>(null);
  const localVideo = useRef<HTMLVideoElement>(null);
  const leaving = useRef(false);
  const remoteStream = useRef<MediaStream | null>(null);

  const [phase, setPhase] = useState<Phase>("joining");
  const [refused, setRefused] = useState<{ text: string; code: string } | null>(null);
  const [room, setRoom] = useState<JoinedRoom | null>(null);
  const [waiting, setWaiting] = useState<Waiting[]>([]);
  const [callState, setCallState] = useState<CallState>("waiting");
  const [failure, setFailure] = useState<CallError | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [online, setOnline] = useState(true);
  // The browser's own view (navigator.onLine): it knows a lost network before the socket does.
  const [browserOnline, setBrowserOnline] = useState(navigator.onLine);
  const [audio, setAudio] = useState(true);
  const [video, setVideo] = useState(true);
  const [sharing, setSharing] = useState(false);
  const [mediaProblem, setMediaProblem] = useState<MediaProblem>(null);
  const [remoteMedia, setRemoteMedia] = useState<{ audio: boolean; video: boolean } | null>(null);
  const [stats, setStats] = useState<Sample | null>(null);
  const [chat, setChat] = useState<ChatLine[]>([]);
  const [chatOpen, setChatOpen] = useState(false);
  const [draft, setDraft] = useState("");
  const [channelOpen, setChannelOpen] = useState(false);
  const [cameras, setCameras] = useState<MediaDeviceInfo[]>([]);
  const [mics, setMics] = useState<MediaDeviceInfo[]>([]);
  const [ask, setAsk] = useState<null | "hangup" | "end" | "leave">(null);
  const [closesAt, setClosesAt] = useState<string | null>(null);
  const [patientName, setPatientName] = useState<string | null>(null);
  // A waiting patient's view of the practitioner (null until the server says).
  const [presence, setPresence] = useState<PractitionerPresence | null>(null);

  // The practitioner's lobby names the appointment's patient (the lobby events carry only ids).
  useEffect(() => {
    if (client.user?.role !== "practitioner") return;
    client
      .getAppointment(id)
      .then((a) => client.request<{ displayName?: string }>("GET", `/v1/patients/${encodeURIComponent(a.patientId)}`))
      .then((p) => setPatientName(p.displayName ?? null))
      .catch(() => undefined);
  }, [id]);

  // The video elements come and go with the phase; give them their streams after each render.
  useEffect(() => {
    const l = localVideo.current;
    if (l && local.current && l.srcObject !== local.current) l.srcObject = local.current;
    const r = remoteVideo.current;
    if (r && remoteStream.current && r.srcObject !== remoteStream.current) r.srcObject = remoteStream.current;
  });

  // window.teletip.state for tests and operators.
  useEffect(() => {
    debugView.state = {
      appointmentId: id,
      phase,
      role: room?.role ?? null,
      peerId: room?.peerId ?? null,
      joined: room !== null,
      roomState: room?.state ?? null,
      ended: null,
      waiting: waiting.map((w) => ({ peerId: w.peerId, role: w.role })),
      callState,
      failure: failure ? failure.cause : null,
      practitionerStatus: presence,
      audio,
      video,
      candidateType: stats?.route ?? null,
      quality: stats?.quality ?? null,
      relayOnly: relayOnly(),
    };
  });

  // Join once per mount; everything is torn down on the way out.
  useEffect(() => {
    // Read when asked, not at the last render: these change without one.
    debugView.live = () => ({
      socketId: sig.current?.connectionId ?? null,
      socketConnected: sig.current?.connected ?? false,
      connectionState: (call.current?.peerConnection as unknown as RTCPeerConnection | null)?.connectionState ?? null,
      peerConnections: call.current?.counters.peerConnections ?? 0,
      iceRestarts: call.current?.counters.iceRestarts ?? 0,
    });
    const s = new Signaling({ client });
    sig.current = s;
    let gone = false;
    s.on("connection", (up) => setOnline(up));
    s.on("closed", (e) => {
      if (gone || leaving.current) return;
      setRefused(refusal(e, t));
      setPhase("refused");
    });
    // The waiting list is the SDK's (it gets the join race right); here only when each came.
    const since = new Map<string, number>();
    s.on("waiting", (peers) => setWaiting(peers.map((p) => ({ ...p, since: since.get(p.peerId) ?? (since.set(p.peerId, Date.now()), Date.now()) }))));
    s.on("lobby:patient-arrived", () => chime());
    s.on("lobby:admitted", () => {
      setPhase("in-room");
      setRoom((r) => (r ? { ...r, state: "admitted" } : r));
    });
    s.on("lobby:denied", () => setPhase("denied"));
    s.on("practitioner:status", (m) => setPresence(m.status));
    s.on("room:ended", () => {
      leaving.current = true;
      navigate(`/ended/${encodeURIComponent(id)}`, true);
    });
    s.on("session:expiring", (m) => setClosesAt(m.closesAt));
    s.on("media:state", (m) => setRemoteMedia({ audio: m.audio, video: m.video }));
    s.on("joined", (r) => {
      setRoom(r);
      // After a resume the server says where the patient stands (admitted or still waiting).
      if (r.role === "patient") setPhase(r.state === "waiting" ? "waiting" : "in-room");
    });

    (async () => {
      let joined: JoinedRoom;
      try {
        joined = await s.join(id);
      } catch (e) {
        if (gone) return;
        setRefused(refusal(e, t));
        setPhase("refused");
        s.close();
        return;
      }
      if (gone) return;
      setPhase(joined.role === "patient" && joined.state === "waiting" ? "waiting" : "in-room");
      setClosesAt(joined.closesAt);
      // Camera and microphone; without them the call still runs, receive-only.
      let stream: MediaStream | null = null;
      try {
        stream = await openMedia(chosenDevices.camera, chosenDevices.microphone);
      } catch (e) {
        setMediaProblem(problemOf(e));
      }
      if (gone) {
        stream?.getTracks().forEach((tr) => tr.stop());
        return;
      }
      local.current = stream;
      cameraTrack.current = stream?.getVideoTracks()[0] ?? null;
      if (localVideo.current) localVideo.current.srcObject = stream;
      void listDevices().then((d) => {
        setCameras(d.cameras);
        setMics(d.microphones);
      }, () => undefined);
      const c = new Call({ signaling: s, relayOnly: relayOnly(), dataChannel: { label: "chat" }, ...callTuning(), ...(stream ? { localStream: stream as never } : {}) });
      call.current = c;
      c.on("state", (st) => setCallState(st));
      c.on("peer-connection", (pc) => {
        debugView.pc = pc;
      });
      c.on("channel-open", () => setChannelOpen(true));
      c.on("track", (_track, streams) => {
        const first = streams[0] as unknown as MediaStream | undefined;
        if (first) remoteStream.current = first;
        const v = remoteVideo.current;
        if (v && first && v.srcObject !== first) v.srcObject = first;
      });
      c.on("message", (data) => {
        try {
          const m = JSON.parse(String(data)) as { type?: string; text?: string };
          if (m.type === "chat" && typeof m.text === "string") {
            setChat((l) => [...l, { from: "them", text: m.text ?? "", at: Date.now() }]);
            setChatOpen(true);
          }
        } catch {
          /* not ours */
        }
      });
      c.on("failed", (err) => {
        if (err.cause === "peer-left") {
          setNote(`${err.message} ${err.nextStep}`);
          return;
        }
        setFailure(err);
      });
      c.start();
    })();

    const beforeUnload = (e: BeforeUnloadEvent) => {
      if (!leaving.current) e.preventDefault();
    };
    // Back on a network (Wi-Fi to mobile data, or a lost connection returning): the offerer
    // restarts ICE at once instead of waiting for the old path to time out.
    const online = () => {
      setBrowserOnline(true);
      call.current?.networkChanged();
    };
    const offline = () => setBrowserOnline(false);
    window.addEventListener("beforeunload", beforeUnload);
    window.addEventListener("online", online);
    window.addEventListener("offline", offline);
    return () => {
      gone = true;
      window.removeEventListener("beforeunload", beforeUnload);
      window.removeEventListener("online", online);
      window.removeEventListener("offline", offline);
      call.current?.hangup();
      call.current = null;
      debugView.pc = null;
      debugView.live = () => ({});
      s.close();
      local.current?.getTracks().forEach((tr) => tr.stop());
      local.current = null;
      document.title = props.baseTitle;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [id]);

  // The practitioner's badge: "(2) Consultation – teletip" while patients wait.
  useEffect(() => {
    document.title = waiting.length > 0 ? `(${waiting.length}) ${props.baseTitle}` : props.baseTitle;
  }, [waiting.length, props.baseTitle]);

  // The connection-quality indicator, every two seconds.
  useEffect(() => {
    let prev: Sample | null = null;
    const timer = setInterval(() => {
      const pc = call.current?.peerConnection as unknown as RTCPeerConnection | null;
      if (!pc) return setStats(null);
      sample(pc, prev).then(
        (s) => {
          prev = s;
          setStats(s);
        },
        () => undefined,
      );
    }, 2000);
    return () => clearInterval(timer);
  }, []);

  const sendMediaState = useCallback((a: boolean, v: boolean) => {
    sig.current?.mediaState(a, v).catch(() => undefined);
  }, []);

  function toggleAudio() {
    const next = !audio;
    local.current?.getAudioTracks().forEach((tr) => (tr.enabled = next));
    setAudio(next);
    sendMediaState(next, video);
  }
  function toggleVideo() {
    const next = !video;
    local.current?.getVideoTracks().forEach((tr) => (tr.enabled = next));
    setVideo(next);
    sendMediaState(audio, next);
  }

  /** Puts `track` in place of the sent track of its kind, here and in the local stream. */
  async function replaceTrack(track: MediaStreamTrack, stopOld: boolean) {
    const pc = call.current?.peerConnection as unknown as RTCPeerConnection | null;
    const sender = pc?.getSenders().find((x) => x.track?.kind === track.kind);
    if (sender) await sender.replaceTrack(track);
    const stream = local.current;
    if (stream) {
      for (const old of stream.getTracks().filter((x) => x.kind === track.kind)) {
        stream.removeTrack(old);
        if (stopOld) old.stop();
      }
      stream.addTrack(track);
    }
  }

  async function switchDevice(kind: "camera" | "microphone", deviceId: string) {
    try {
      const s = await navigator.mediaDevices.getUserMedia(kind === "camera" ? { video: { deviceId: { exact: deviceId } } } : { audio: { deviceId: { exact: deviceId } } });
      const track = s.getTracks()[0];
      if (!track) return;
      track.enabled = kind === "camera" ? video : audio;
      if (kind === "camera") {
        chosenDevices.camera = deviceId;
        cameraTrack.current = track;
        if (!sharing) await replaceTrack(track, true);
      } else {
        chosenDevices.microphone = deviceId;
        await replaceTrack(track, true);
      }
    } catch (e) {
      setMediaProblem(problemOf(e));
    }
  }

  async function toggleShare() {
    if (sharing) {
      const cam = cameraTrack.current;
      if (cam) await replaceTrack(cam, true);
      setSharing(false);
      return;
    }
    try {
      const s = await navigator.mediaDevices.getDisplayMedia({ video: true });
      const screen = s.getVideoTracks()[0];
      if (!screen) return;
      // The camera track stays alive (not stopped) to come back to.
      await replaceTrack(screen, false);
      setSharing(true);
      screen.addEventListener("ended", () => {
        const cam = cameraTrack.current;
        if (cam) void replaceTrack(cam, false);
        setSharing(false);
      });
    } catch {
      /* the person chose not to share */
    }
  }

  function sendChat(e: FormEvent) {
    e.preventDefault();
    const text = draft.trim();
    if (!text || !call.current) return;
    try {
      call.current.send(JSON.stringify({ type: "chat", text }));
      setChat((l) => [...l, { from: "me", text, at: Date.now() }]);
      setDraft("");
    } catch {
      /* the channel closed; the button is disabled until it reopens */
    }
  }

  async function admit(peerId: string, yes: boolean) {
    try {
      if (yes) await sig.current?.admit(peerId);
      else await sig.current?.deny(peerId);
    } catch (e) {
      setNote(reason(e));
    }
  }

  function leave(to: string) {
    leaving.current = true;
    call.current?.hangup();
    const s = sig.current;
    void s?.leave().catch(() => undefined).finally(() => s.close());
    navigate(to, true);
  }

  async function endConsultation() {
    leaving.current = true;
    try {
      await sig.current?.end();
    } catch (e) {
      leaving.current = false;
      setNote(reason(e));
      return;
    }
    navigate(`/ended/${encodeURIComponent(id)}`, true);
  }

  const advice = failure ? (lang === "tr" ? CAUSES_TR[failure.cause] : FAILURE_ADVICE[failure.cause]) : null;
  const isPractitioner = room?.role === "practitioner";

  if (phase === "refused" && refused) {
    return (
      <section className="view narrow" aria-labelledby="room-title" data-testid="room-view">
        <h1 id="room-title">{t("roomTitle")}</h1>
        <div className="card stack">
          <p className="alert" role="alert" data-testid="room-error" data-code={refused.code}>
            {refused.text}
          </p>
          <div className="row">
            {refused.code === "consent-required" && (
              <button type="button" onClick={() => navigate(`/privacy?next=${encodeURIComponent(`/check/${id}`)}`, true)}>
                {t("goPrivacy")}
              </button>
            )}
            {refused.code === "session-ended" ? (
              <button type="button" onClick={() => void client.logout()}>
                {t("loginButton")}
              </button>
            ) : (
              <button type="button" onClick={() => navigate("/appointments", true)} data-testid="room-back">
                {t("back")}
              </button>
            )}
          </div>
        </div>
      </section>
    );
  }

  const stateText = t(`state.${callState}` as MessageKey);
  return (
    <section className="view room" aria-labelledby="room-title" data-testid="room-view" data-phase={phase}>
      <h1 id="room-title" className="visually-hidden">
        {t("roomTitle")}
      </h1>
      {phase === "joining" && <p>{t("joining")}</p>}
      {phase === "waiting" && (
        <div className="card notice stack" data-testid="lobby">
          <h2>{t("waitingTitle")}</h2>
          <p data-testid="lobby-message">{t("waitingBody")}</p>
          <p data-testid="doctor-status" data-status={presence ?? "unknown"} aria-live="polite">
            {t("doctorStatus")} <strong>{presence ? t(`presence.${presence}` as MessageKey) : t("doctorNotified")}</strong>
          </p>
        </div>
      )}
      {phase === "denied" && (
        <p className="alert" role="alert" data-testid="room-error" data-code="denied">
          {t("denied")}
        </p>
      )}
      {isPractitioner && (
        <aside className="card lobby-panel" aria-labelledby="waiting-title" data-testid="waiting-panel">
          <h2 id="waiting-title">
            {t("lobbyTitle")} {waiting.length > 0 && <span className="badge" data-testid="waiting-count">{t("someoneWaiting", { count: waiting.length })}</span>}
          </h2>
          {waiting.length === 0 ? (
            <p data-testid="waiting-empty">{t("nobodyWaiting")}</p>
          ) : (
            <ul className="waiting" data-testid="waiting-list" aria-live="polite">
              {waiting.map((w) => (
                <li key={w.peerId} data-testid="waiting-patient" data-peer-id={w.peerId}>
                  <span>
                    {t("isWaiting", { name: patientName ?? t("patient") })} <span className="muted">{t("waitingSince", { time: clock(lang, w.since) })}</span>
                  </span>
                  <span className="row">
                    <button type="button" onClick={() => void admit(w.peerId, true)} data-testid="admit">
                      {t("admit")}
                    </button>
                    <button type="button" className="secondary" onClick={() => void admit(w.peerId, false)} data-testid="deny">
                      {t("deny")}
                    </button>
                  </span>
                </li>
              ))}
            </ul>
          )}
        </aside>
      )}
      {(phase === "in-room" || phase === "waiting") && (
        <div className="call" data-testid="call" data-state={callState}>
          {failure && advice && (
            <div className="alert stack" role="alert" data-testid="call-failure" data-cause={failure.cause}>
              <p data-testid="room-error">{advice.message}</p>
              <p>{advice.nextStep}</p>
              <div className="row">
                <button type="button" onClick={() => leave(`/check/${encodeURIComponent(id)}`)} data-testid="rejoin">
                  {t("rejoin")}
                </button>
                <button type="button" className="secondary" onClick={() => leave("/appointments")}>
                  {t("back")}
                </button>
              </div>
            </div>
          )}
          {(!browserOnline || !online) && !failure && (
            <p className="note" role="status" data-testid="network-lost">
              {t("networkLost")}
            </p>
          )}
          {mediaProblem && (
            // The way forward: the device check, where "Try again" asks the browser anew (the
            // call here keeps running receive-only meanwhile; nothing retries on its own).
            <div className="alert stack" role="alert" data-testid="media-problem">
              <p>{mediaProblem === "permission" ? t("permissionHelpRoom") : t("noDeviceRoom")}</p>
              <div className="row">
                <button type="button" className="secondary" onClick={() => leave(`/check/${encodeURIComponent(id)}`)} data-testid="check-devices">
                  {t("checkDevices")}
                </button>
              </div>
            </div>
          )}
          {note && (
            <p className="note" role="status" data-testid="call-message">
              {note}
            </p>
          )}
          <div className="stage">
            <video ref={remoteVideo} className="remote" autoPlay playsInline data-testid="remote-video" />
            {callState !== "connected" && callState !== "failed" && phase === "in-room" && (
              <p className="stage-note" data-testid="call-note">
                {isPractitioner ? t("waitingForPatient") : t("waitingForPractitioner")}
              </p>
            )}
            <p className="remote-media muted" data-testid="remote-media">
              {remoteMedia && [remoteMedia.audio ? "" : t("micOff"), remoteMedia.video ? "" : t("camOff")].filter(Boolean).join(", ")}
            </p>
            <video ref={localVideo} className="self" autoPlay playsInline muted data-testid="local-video" />
          </div>
          {closesAt && <p className="muted">{t("closesSoon", { time: clock(lang, closesAt) })}</p>}
          <dl className="conn">
            <div>
              <dt>{t("quality")}</dt>
              <dd data-testid="quality" data-quality={stats?.quality ?? "none"}>
                <span className={`dot q-${stats?.quality ?? "none"}`} aria-hidden="true" /> {t(`quality.${stats?.quality ?? "none"}` as MessageKey)}
                {stats?.rttMs != null && <span className="muted"> ({stats.rttMs} ms)</span>}
              </dd>
            </div>
            <div>
              <dt>{t("signaling")}</dt>
              <dd data-testid="signaling-state">{online ? t("online") : t("offline")}</dd>
            </div>
            <div>
              <dt>{t("devices")}</dt>
              <dd data-testid="connection-state" data-state={callState}>
                {stateText}
              </dd>
            </div>
            <div>
              <dt>{t("route")}</dt>
              <dd data-testid="candidate-type">{stats?.route ?? "–"}</dd>
            </div>
          </dl>
          {chatOpen && (
            <div className="chat card" data-testid="chat">
              <h2 id="chat-title">{t("chat")}</h2>
              <ol className="chat-lines" aria-live="polite" aria-labelledby="chat-title" tabIndex={0} data-testid="chat-lines">
                {chat.map((l, i) => (
                  <li key={i} className={l.from} data-from={l.from}>
                    <span className="muted">{l.from === "me" ? t("you") : t("remoteLabel")}: </span>
                    {l.text}
                  </li>
                ))}
              </ol>
              <form className="row" onSubmit={sendChat}>
                <label htmlFor="chat-input" className="visually-hidden">
                  {t("chatMessage")}
                </label>
                <input id="chat-input" value={draft} onChange={(e) => setDraft(e.target.value)} autoComplete="off" data-testid="chat-input" />
                <button type="submit" disabled={!channelOpen} data-testid="chat-send">
                  {t("send")}
                </button>
              </form>
            </div>
          )}
          <div className="controls" role="group" aria-label={t("roomTitle")}>
            <button type="button" aria-pressed={!audio} onClick={toggleAudio} data-testid="toggle-audio">
              {audio ? t("muteMic") : t("unmuteMic")}
            </button>
            <button type="button" aria-pressed={!video} onClick={toggleVideo} data-testid="toggle-video">
              {video ? t("cameraOff") : t("cameraOn")}
            </button>
            {"getDisplayMedia" in navigator.mediaDevices && (
              <button type="button" aria-pressed={sharing} onClick={() => void toggleShare()} data-testid="toggle-share">
                {sharing ? t("stopShare") : t("shareScreen")}
              </button>
            )}
            <button type="button" aria-pressed={chatOpen} onClick={() => setChatOpen((o) => !o)} data-testid="toggle-chat">
              {t("chat")}
            </button>
            <label className="device">
              <span className="visually-hidden">{t("camera")}</span>
              <select value={chosenDevices.camera ?? ""} onChange={(e) => e.target.value && void switchDevice("camera", e.target.value)} data-testid="call-camera">
                <option value="">{t("camera")}</option>
                {cameras.map((d, i) => (
                  <option key={d.deviceId || i} value={d.deviceId}>
                    {d.label || `${t("camera")} ${i + 1}`}
                  </option>
                ))}
              </select>
            </label>
            <label className="device">
              <span className="visually-hidden">{t("microphone")}</span>
              <select value={chosenDevices.microphone ?? ""} onChange={(e) => e.target.value && void switchDevice("microphone", e.target.value)} data-testid="call-microphone">
                <option value="">{t("microphone")}</option>
                {mics.map((d, i) => (
                  <option key={d.deviceId || i} value={d.deviceId}>
                    {d.label || `${t("microphone")} ${i + 1}`}
                  </option>
                ))}
              </select>
            </label>
            <button type="button" className="danger" onClick={() => setAsk("hangup")} data-testid="hangup">
              {t("hangup")}
            </button>
            {isPractitioner && (
              <button type="button" className="danger" onClick={() => setAsk("end")} data-testid="end">
                {t("end")}
              </button>
            )}
          </div>
        </div>
      )}
      <div className="row">
        <button type="button" className="secondary" onClick={() => setAsk("leave")} data-testid="room-back">
          {t("back")}
        </button>
      </div>
      <Confirm
        open={ask !== null}
        text={ask === "end" ? t("endAsk") : ask === "hangup" ? t("hangupAsk") : t("leaveAsk")}
        yes={ask === "end" ? t("yesEnd") : ask === "hangup" ? t("yesHangup") : t("yesLeave")}
        no={t("stay")}
        onNo={() => setAsk(null)}
        onYes={() => {
          const what = ask;
          setAsk(null);
          if (what === "end") void endConsultation();
          else if (what === "hangup") leave(`/ended/${encodeURIComponent(id)}?how=hungup`);
          else leave("/appointments");
        }}
        testid={`confirm-${ask ?? "none"}`}
      />
    </section>
  );
}
