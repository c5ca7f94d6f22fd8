// @teletip/sdk: the client side of teletip-control for browsers, React Native and Node.
export { TeletipClient, type ClientOptions } from "./client.js";
export { TokenKeeper, refreshDelayMs, type StoredTokens, type TokenStorage, type AuthEvents } from "./auth.js";
export { Signaling, type JoinedRoom, type RoomPeer, type RoomRole, type PractitionerPresence, type SignalingEvents, type SignalingOptions, type IoFactory, type CandidateInit } from "./signaling.js";
export { Call, openLocalMedia, type CallEvents, type CallOptions, type CallState } from "./call.js";
export { RecoveryPolicy, DEFAULT_RECOVERY_LIMITS, type RecoveryLimits, type RecoveryStep } from "./recovery.js";
export { CallError, diagnose, FAILURE_ADVICE, type CallFailureCause, type FailureFacts } from "./diagnosis.js";
export { ApiError, NetworkError, SessionEndedError, SignalingError, TeletipError, type ProblemDocument, type FieldError, type SessionEndReason, type SignalingErrorCode } from "./errors.js";
export { problemFromAnswer } from "./problem.js";
export { systemClock, type Clock } from "./clock.js";
export type { FetchLike, ResponseLike, RequestInitLike } from "./http.js";
export type { PeerConnectionLike, PeerConnectionFactory, RtcConfiguration, MediaStreamLike, MediaTrackLike, DataChannelLike } from "./webrtc.js";
export type * from "./types.js";
export { subscribePush, unsubscribePush, listPushSubscriptions, vapidPublicKey, base64UrlToBytes, type PushSubscriptionJson, type PushSubscriptionView, type PushManagerLike, type BrowserPushSubscriptionLike } from "./push.js";
