// Camera and microphone: opening with chosen devices, and what a refusal means.
import { CallError, openLocalMedia, type MediaStreamLike } from "@teletip/sdk";

export type MediaProblem = "permission" | "no-device" | null;

export async function openMedia(camera: string | null, microphone: string | null): Promise<MediaStream> {
  const constraints = {
    audio: microphone ? { deviceId: { exact: microphone } } : true,
    video: camera ? { deviceId: { exact: camera } } : true,
  };
  // openLocalMedia turns a refusal into CallError("permission-denied").
  const stream = await openLocalMedia(() => navigator.mediaDevices.getUserMedia(constraints) as unknown as Promise<MediaStreamLike>);
  return stream as unknown as MediaStream;
}

export function problemOf(e: unknown): MediaProblem {
  if (e instanceof CallError && e.cause === "permission-denied") return "permission";
  const name = (e as { name?: string } | null)?.name ?? "";
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "NotReadableError") return "no-device";
  return "permission";
}

export async function listDevices(): Promise<{ cameras: MediaDeviceInfo[]; microphones: MediaDeviceInfo[] }> {
  const all = await navigator.mediaDevices.enumerateDevices();
  return { cameras: all.filter((d) => d.kind === "videoinput"), microphones: all.filter((d) => d.kind === "audioinput") };
}

/** A short two-tone chime from WebAudio (no audio file: nothing else to ship or allow in the CSP). */
export function chime(): void {
  try {
    const ctx = new AudioContext();
    const gain = ctx.createGain();
    gain.gain.value = 0.08;
    gain.connect(ctx.destination);
    [660, 880].forEach((f, i) => {
      const o = ctx.createOscillator();
      o.frequency.value = f;
      o.connect(gain);
      o.start(ctx.currentTime + i * 0.18);
      o.stop(ctx.currentTime + i * 0.18 + 0.15);
    });
    setTimeout(() => void ctx.close(), 800);
  } catch {
    /* no audio output: the badge and the list still show it */
  }
}
