// The connection-quality indicator, from getStats: round-trip time of the selected pair and
// the share of inbound packets lost since the last sample.
export type Quality = "good" | "fair" | "poor" | "none";

export interface Sample {
  quality: Quality;
  route: string | null;
  rttMs: number | null;
  lossPct: number | null;
  framesDecoded: number;
  received: number;
  lost: number;
}

export async function sample(pc: RTCPeerConnection, prev: Sample | null): Promise<Sample> {
  const stats = await pc.getStats();
  let pair: RTCIceCandidatePairStats | undefined;
  let received = 0;
  let lost = 0;
  let framesDecoded = 0;
  stats.forEach((s: { type: string } & Record<string, unknown>) => {
    if (s.type === "transport" && typeof s.selectedCandidatePairId === "string") pair = stats.get(s.selectedCandidatePairId) as RTCIceCandidatePairStats;
    if (s.type === "inbound-rtp") {
      received += Number(s.packetsReceived ?? 0);
      lost += Math.max(0, Number(s.packetsLost ?? 0));
      if (s.kind === "video") framesDecoded += Number(s.framesDecoded ?? 0);
    }
  });
  if (!pair) stats.forEach((s: { type: string } & Record<string, unknown>) => {
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s as unknown as RTCIceCandidatePairStats;
  });
  let route: string | null = null;
  if (pair) {
    const local = stats.get(pair.localCandidateId) as { candidateType?: string; relayProtocol?: string } | undefined;
    const remote = stats.get(pair.remoteCandidateId) as { candidateType?: string } | undefined;
    route = `${local?.candidateType ?? "?"} ↔ ${remote?.candidateType ?? "?"}${local?.relayProtocol ? ` (${local.relayProtocol})` : ""}`;
  }
  const rttMs = pair?.currentRoundTripTime !== undefined ? Math.round(pair.currentRoundTripTime * 1000) : null;
  const dRecv = received - (prev?.received ?? 0);
  const dLost = lost - (prev?.lost ?? 0);
  const lossPct = dRecv + dLost > 0 ? (100 * dLost) / (dRecv + dLost) : null;
  let quality: Quality = "none";
  if (pair && pc.connectionState === "connected") {
    const r = rttMs ?? 0;
    const l = lossPct ?? 0;
    quality = r < 300 && l < 2 ? "good" : r < 700 && l < 8 ? "fair" : "poor";
  }
  return { quality, route, rttMs, lossPct, framesDecoded, received, lost };
}
