import { useEffect, useRef, useState } from "react";
import { useT } from "../i18n.js";
import { listDevices, openMedia, problemOf, type MediaProblem } from "../media.js";
import { navigate } from "../router.js";
import { client, reason } from "../session.js";
import { chosenDevices } from "../settings.js";

type RelayResult = "testing" | "ok" | "bad" | { refused: string };

/**
 * Whether the relay gives this browser a relayed candidate, with the consultation's own
 * credentials: one allocation, closed at once. (A network that blocks the relay fails here,
 * before the call, with a plain way forward.)
 */
async function probeRelay(appointmentId: string): Promise<RelayResult> {
  let ice;
  try {
    ice = (await client.consultationSession(appointmentId)).ice;
  } catch (e) {
    return { refused: reason(e) };
  }
  const pc = new RTCPeerConnection({
    iceServers: ice.iceServers.map((s) => ({ urls: s.urls, ...(s.username ? { username: s.username } : {}), ...(s.credential ? { credential: s.credential } : {}) })),
    iceTransportPolicy: "relay",
  });
  try {
    const found = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 8000);
      pc.addEventListener("icecandidate", (ev) => {
        if (ev.candidate && / typ relay/.test(ev.candidate.candidate)) {
          clearTimeout(timer);
          resolve(true);
        }
        if (!ev.candidate) {
          clearTimeout(timer);
          resolve(false);
        }
      });
    });
    pc.createDataChannel("probe");
    await pc.setLocalDescription(await pc.createOffer());
    return (await found) ? "ok" : "bad";
  } finally {
    pc.close();
  }
}

export function DeviceCheck(props: { appointmentId: string }) {
  const { t } = useT();
  const video = useRef<HTMLVideoElement>(null);
  const [stream, setStream] = useState<MediaStream | null>(null);
  const [problem, setProblem] = useState<MediaProblem>(null);
  const [cameras, setCameras] = useState<MediaDeviceInfo[]>([]);
  const [mics, setMics] = useState<MediaDeviceInfo[]>([]);
  const [camera, setCamera] = useState<string | null>(chosenDevices.camera);
  const [mic, setMic] = useState<string | null>(chosenDevices.microphone);
  const [level, setLevel] = useState(0);
  const [relay, setRelay] = useState<RelayResult>("testing");
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let live: MediaStream | null = null;
    let stopped = false;
    let raf = 0;
    let ctx: AudioContext | null = null;
    (async () => {
      try {
        live = await openMedia(camera, mic);
        if (stopped) return live.getTracks().forEach((tr) => tr.stop());
        setStream(live);
        setProblem(null);
        const d = await listDevices();
        setCameras(d.cameras);
        setMics(d.microphones);
        // The microphone's level, so a person sees that the right one hears them.
        ctx = new AudioContext();
        const analyser = ctx.createAnalyser();
        analyser.fftSize = 512;
        ctx.createMediaStreamSource(live).connect(analyser);
        const buf = new Uint8Array(analyser.fftSize);
        const tick = () => {
          analyser.getByteTimeDomainData(buf);
          let peak = 0;
          for (const v of buf) peak = Math.max(peak, Math.abs(v - 128));
          setLevel(Math.min(100, Math.round((peak / 128) * 100)));
          raf = requestAnimationFrame(tick);
        };
        tick();
      } catch (e) {
        if (!stopped) setProblem(problemOf(e));
      }
    })();
    return () => {
      stopped = true;
      cancelAnimationFrame(raf);
      void ctx?.close();
      live?.getTracks().forEach((tr) => tr.stop());
    };
  }, [camera, mic, attempt]);

  useEffect(() => {
    if (video.current) video.current.srcObject = stream;
  }, [stream]);

  useEffect(() => {
    let gone = false;
    setRelay("testing");
    void probeRelay(props.appointmentId).then((r) => !gone && setRelay(r));
    return () => {
      gone = true;
    };
  }, [props.appointmentId, attempt]);

  function join() {
    chosenDevices.camera = camera;
    chosenDevices.microphone = mic;
    navigate(`/room/${encodeURIComponent(props.appointmentId)}`);
  }

  return (
    <section className="view" aria-labelledby="check-title" data-testid="check-view">
      <h1 id="check-title">{t("checkTitle")}</h1>
      <div className="check-grid">
        <div className="card stack">
          <video ref={video} className="preview" autoPlay playsInline muted data-testid="preview" />
          <p className="visually-hidden">{t("previewLabel")}</p>
          {problem && (
            <p className="alert" role="alert" data-testid="media-problem">
              {problem === "permission" ? t("permissionHelp") : t("noDevice")}
            </p>
          )}
          <label className="field">
            <span>{t("micLevel")}</span>
            <meter min={0} max={100} value={level} data-testid="mic-level" />
          </label>
        </div>
        <div className="card stack">
          <div className="field">
            <label htmlFor="camera-select">{t("camera")}</label>
            <select id="camera-select" value={camera ?? ""} onChange={(e) => setCamera(e.target.value || null)} data-testid="camera-select">
              <option value="">—</option>
              {cameras.map((d, i) => (
                <option key={d.deviceId || i} value={d.deviceId}>
                  {d.label || `${t("camera")} ${i + 1}`}
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor="mic-select">{t("microphone")}</label>
            <select id="mic-select" value={mic ?? ""} onChange={(e) => setMic(e.target.value || null)} data-testid="mic-select">
              <option value="">—</option>
              {mics.map((d, i) => (
                <option key={d.deviceId || i} value={d.deviceId}>
                  {d.label || `${t("microphone")} ${i + 1}`}
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <span>{t("relayTest")}</span>
            <p data-testid="relay-check" data-result={typeof relay === "string" ? relay : "refused"} className={relay === "ok" ? "good" : relay === "testing" ? "" : "alert"}>
              {relay === "testing" ? t("relayTesting") : relay === "ok" ? t("relayOk") : relay === "bad" ? t("relayBad") : t("relayNotYet", { reason: relay.refused })}
            </p>
          </div>
          <div className="row">
            <button type="button" onClick={join} data-testid="join">
              {t("joinNow")}
            </button>
            <button type="button" className="secondary" onClick={() => setAttempt((a) => a + 1)} data-testid="check-again">
              {t("tryAgain")}
            </button>
            <button type="button" className="secondary" onClick={() => navigate("/appointments")}>
              {t("back")}
            </button>
          </div>
        </div>
      </div>
    </section>
  );
}
