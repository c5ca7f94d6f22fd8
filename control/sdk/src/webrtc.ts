// The part of the WebRTC API the call uses, as structural types: the browser's RTCPeerConnection,
// react-native-webrtc's and @roamhq/wrtc's all fit, and the SDK needs no DOM typings.
import type { CandidateInit } from "./signaling.js";

export interface SessionDescription {
  type: string;
  sdp?: string;
}

export interface IceCandidateLike {
  candidate: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
  toJSON?(): CandidateInit;
}

export interface DataChannelLike {
  readonly readyState: string;
  send(data: string | ArrayBuffer): void;
  close(): void;
  addEventListener(type: "open" | "close", listener: () => void): void;
  addEventListener(type: "message", listener: (ev: { data: unknown }) => void): void;
}

export interface MediaTrackLike {
  readonly kind: string;
  stop(): void;
}

export interface MediaStreamLike {
  getTracks(): MediaTrackLike[];
}

export interface PeerConnectionLike {
  readonly connectionState?: string;
  readonly iceConnectionState: string;
  readonly signalingState: string;
  readonly localDescription: SessionDescription | null;
  readonly remoteDescription: SessionDescription | null;
  createOffer(options?: { iceRestart?: boolean }): Promise<SessionDescription>;
  createAnswer(): Promise<SessionDescription>;
  setLocalDescription(description: SessionDescription): Promise<void>;
  setRemoteDescription(description: SessionDescription): Promise<void>;
  addIceCandidate(candidate: CandidateInit): Promise<void>;
  createDataChannel(label: string, init: { negotiated: boolean; id: number }): DataChannelLike;
  addTrack(track: MediaTrackLike, stream: MediaStreamLike): unknown;
  setConfiguration(configuration: RtcConfiguration): void;
  close(): void;
  addEventListener(type: "icecandidate", listener: (ev: { candidate: IceCandidateLike | null }) => void): void;
  addEventListener(type: "icecandidateerror", listener: (ev: { errorCode: number }) => void): void;
  addEventListener(type: "connectionstatechange" | "iceconnectionstatechange", listener: () => void): void;
  addEventListener(type: "track", listener: (ev: { track: MediaTrackLike; streams: readonly MediaStreamLike[] }) => void): void;
}

export interface RtcConfiguration {
  iceServers: Array<{ urls: string[]; username?: string; credential?: string }>;
  iceTransportPolicy: "relay" | "all";
}

export type PeerConnectionFactory = (configuration: RtcConfiguration) => PeerConnectionLike;

/** The platform's RTCPeerConnection (browsers; React Native after react-native-webrtc's registerGlobals()). */
export function platformPeerConnection(): PeerConnectionFactory {
  const Ctor = (globalThis as unknown as { RTCPeerConnection?: new (c: RtcConfiguration) => PeerConnectionLike }).RTCPeerConnection;
  if (!Ctor) throw new Error("no RTCPeerConnection on this platform: pass `peerConnection` (e.g. from react-native-webrtc or @roamhq/wrtc)");
  return (c) => new Ctor(c);
}
