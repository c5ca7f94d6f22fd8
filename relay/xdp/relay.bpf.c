// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// Licensed apart from the rest of teletip (Apache-2.0): the kernel lets only programs under a
// GPL-compatible licence call GPL-only helpers, and bpf_fib_lookup is one. BSD-2-Clause keeps it
// permissive for everyone else (the LICENSE string at the end says the same to the kernel).
//
// teletip's XDP fast path: relays TURN ChannelData over UDP inside the kernel, for exactly the
// channel bindings and permissions the user-space relay wrote into the maps below, and passes
// everything else up unchanged (XDP_PASS). The user-space state machine stays the authority:
// this program never creates, extends or infers state; it only reads the maps, counts what it
// relayed into them and draws from a byte budget the relay granted (docs/relay-security.md,
// "The XDP offload").
//
// Three paths, IPv4 and IPv6 (both legs of one family; a leg change of family goes up):
//   client -> peer:   ChannelData on a listener; strip the 4-byte header (and the padding, if
//                     the client padded), send from the allocation's relayed address to the
//                     channel's peer.
//   peer -> client:   a datagram to a relayed address from a peer with a live channel; add the
//                     header, send from the listener address to the client.
//   client -> client: ChannelData whose peer is another allocation's relayed address that has a
//                     channel for the sender's relayed address (the same-relay short circuit):
//                     swap the channel number and the addresses and drop the padding, if any;
//                     nothing else changes.
// Padding: over UDP a client may pad ChannelData to a multiple of 4 bytes (RFC 8656 §12.5; pion's
// encoder always does). The program relays exactly the padding the RFC allows (the length field
// rounded up to 4, the padding's bytes ignored as receivers must) and trims it; any other surplus
// goes up. It adds no padding towards a client over UDP (the RFC's "MAY"; the socket path does
// not pad over UDP either).
// The egress is chosen by the kernel's FIB (bpf_fib_lookup); any lookup that does not give a
// resolved neighbour passes the original packet up, where the socket path sends it (and so
// resolves the neighbour for the next one).
//
// The layout of every map key and value is mirrored in relay/src/xdp/maps.rs; change both.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2
#define AF_INET6 10
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IP_DF 0x4000
#define CHANNEL_HEADER 4
// The TTL / hop limit of a datagram the relay originates, as its sockets would send it.
#define ORIGIN_TTL 64

// An address in the maps: IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), port in network order.
struct addr {
	__u8 ip[16];
	__be16 port;
	__u16 pad;
};

// Client -> peer: (client, listener address, channel number in host order).
struct c2p_key {
	struct addr client;
	struct addr server;
	__u16 channel;
	__u16 pad;
};

struct c2p_val {
	struct addr peer;
	struct addr relay;      // the relayed socket's bound address: the source towards the peer
	struct addr relay_seen; // the relayed address as peers see it (external-ip applied)
	__u32 alloc;
	__u32 pad[2];           // spelled out: expires_ns is 8-byte aligned
	__u64 expires_ns;       // the channel's expiry, CLOCK_MONOTONIC
};

// Peer -> client: (relayed socket's bound address, peer).
struct p2c_key {
	struct addr relay;
	struct addr peer;
};

struct p2c_val {
	struct addr client;
	struct addr server;
	__u16 channel;
	__u16 pad;
	__u32 alloc;
	__u64 expires_ns;
};

struct perm_key {
	__u32 alloc;
	__u8 ip[16];
};

struct perm_val {
	__u64 expires_ns;
};

struct alloc_val {
	__u64 expires_ns;  // 0: ended, nothing of it is relayed here
	__u64 granted;     // bytes this program may have relayed for it in all (~0: no cap), a
	                   // lease the relay takes from the allocation's token bucket
	__u8 tos;          // the relay's DSCP << 2
	__u8 pad[7];
};

// What this program relayed per allocation, per CPU (no atomics); user space sums the CPUs and
// never writes it except to zero a slot before reusing it.
struct counters {
	__u64 c2p_packets;
	__u64 c2p_bytes;
	__u64 p2c_packets;
	__u64 p2c_bytes;
};

#define MAX_ALLOCS 65536
#define MAX_ENTRIES 262144

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct c2p_key);
	__type(value, struct c2p_val);
} c2p SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct p2c_key);
	__type(value, struct p2c_val);
} p2c SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct perm_key);
	__type(value, struct perm_val);
} perms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ALLOCS);
	__type(key, __u32);
	__type(value, struct alloc_val);
} allocs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_ALLOCS);
	__type(key, __u32);
	__type(value, struct counters);
} counters SEC(".maps");

// Bytes relayed under a cap, per allocation, shared by the CPUs (atomic): drawn against
// `granted`, which only user space writes, so neither side overwrites the other's number.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ALLOCS);
	__type(key, __u32);
	__type(value, __u64);
} spent SEC(".maps");

// What to do with a datagram that is ours.
struct plan {
	struct addr src, dst;
	int delta;          // -4: strip the header, +4: add it, 0: swap the channel number
	int trim;           // padding bytes to cut off the end (0-3; client -> peer or client)
	__be16 channel;     // the header's new channel number (delta >= 0)
	__u32 from;         // counts client -> peer (~0: none)
	__u32 to;           // counts peer -> client (~0: none)
	__u64 len;          // application data bytes, as user space counts them
	__u8 tos;
};

#define NONE 0xffffffffu

// Per-CPU scratch for what does not fit the 512-byte BPF stack beside the header copies.
struct scratch {
	struct plan plan;
	struct bpf_fib_lookup fib;
	struct ethhdr eth;
	struct iphdr ip4;
	struct ipv6hdr ip6;
	struct udphdr udp;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

static __always_inline struct scratch *scratch_area(void)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (s)
		__builtin_memset(s, 0, sizeof(*s));
	return s;
}

static __always_inline int alive(__u64 expires, __u64 now)
{
	return expires > now;
}

static __always_inline struct alloc_val *live_alloc(__u32 id, __u64 now)
{
	struct alloc_val *a = bpf_map_lookup_elem(&allocs, &id);
	if (!a || !alive(a->expires_ns, now))
		return 0;
	return a;
}

static __always_inline int permitted(__u32 alloc, const __u8 *ip, __u64 now)
{
	struct perm_key k = { .alloc = alloc };
	__builtin_memcpy(k.ip, ip, 16);
	struct perm_val *p = bpf_map_lookup_elem(&perms, &k);
	return p && alive(p->expires_ns, now);
}

static __always_inline int same_family(const struct addr *a, const struct addr *b)
{
	int a4 = a->ip[10] == 0xff && a->ip[11] == 0xff && !a->ip[0] && !a->ip[8];
	int b4 = b->ip[10] == 0xff && b->ip[11] == 0xff && !b->ip[0] && !b->ip[8];
	return a4 == b4;
}

// Draws `len` bytes from an allocation's lease; 0 when it does not hold them (user space then
// sees the datagram and its own token bucket decides).
static __always_inline int take(__u32 id, struct alloc_val *a, __u64 len)
{
	if (a->granted == ~0ULL)
		return 1;
	__u64 *used = bpf_map_lookup_elem(&spent, &id);
	if (!used)
		return 0;
	__u64 before = __sync_fetch_and_add(used, len);
	if (before + len > a->granted) {
		__sync_fetch_and_sub(used, len);
		return 0;
	}
	return 1;
}

static __always_inline void give_back(__u32 id, struct alloc_val *a, __u64 len)
{
	if (a->granted == ~0ULL)
		return;
	__u64 *used = bpf_map_lookup_elem(&spent, &id);
	if (used)
		__sync_fetch_and_sub(used, len);
}

// Decides whether a datagram from `src` to `dst` with UDP payload `payload` (its first four
// bytes, when it has them, in `head`) is ours. Returns 1 with `plan` filled, 0 to pass it up.
static __noinline int decide(const struct addr *src, const struct addr *dst, const __u8 *head,
				  __u32 payload, struct plan *plan)
{
	__u64 now = bpf_ktime_get_ns();
	// ChannelData: channel 0x4000-0x4fff, then either exactly the length's bytes or those and
	// the padding to a multiple of 4 (RFC 8656 §12.5); any other surplus goes up, where user
	// space decides.
	__u32 len = (__u32)head[2] << 8 | head[3];
	__u32 rest = payload - CHANNEL_HEADER;
	if (payload >= CHANNEL_HEADER && (head[0] & 0xf0) == 0x40 && rest >= len &&
	    (rest == len || rest - len == (-len & 3))) {
		struct c2p_key k = {};
		k.client = *src;
		k.server = *dst;
		k.channel = (__u16)head[0] << 8 | head[1];
		struct c2p_val *v = bpf_map_lookup_elem(&c2p, &k);
		if (v) {
			if (!alive(v->expires_ns, now))
				return 0;
			struct alloc_val *a = live_alloc(v->alloc, now);
			if (!a || !permitted(v->alloc, v->peer.ip, now))
				return 0;
			plan->len = len;
			plan->trim = rest - len;
			plan->from = v->alloc;
			plan->tos = a->tos;
			// The same-relay short circuit: the peer is a relayed address of this relay
			// with a live channel back to the sender's relayed address.
			struct p2c_key k2 = {};
			k2.relay = v->peer;
			k2.peer = v->relay_seen;
			struct p2c_val *w = bpf_map_lookup_elem(&p2c, &k2);
			if (w) {
				struct alloc_val *b = live_alloc(w->alloc, now);
				if (!alive(w->expires_ns, now) || !b ||
				    !permitted(w->alloc, v->relay_seen.ip, now) ||
				    !same_family(&w->client, src))
					return 0;
				plan->src = w->server;
				plan->dst = w->client;
				plan->delta = 0;
				plan->channel = bpf_htons(w->channel);
				plan->to = w->alloc;
				return 1;
			}
			if (!same_family(&v->peer, src))
				return 0;
			plan->src = v->relay;
			plan->dst = v->peer;
			plan->delta = -CHANNEL_HEADER;
			plan->to = NONE;
			return 1;
		}
	}
	struct p2c_key k = {};
	k.relay = *dst;
	k.peer = *src;
	struct p2c_val *w = bpf_map_lookup_elem(&p2c, &k);
	if (!w || !alive(w->expires_ns, now) || !same_family(&w->client, src))
		return 0;
	struct alloc_val *b = live_alloc(w->alloc, now);
	if (!b || !permitted(w->alloc, src->ip, now))
		return 0;
	if (payload > 0xffff - CHANNEL_HEADER)
		return 0;
	plan->src = w->server;
	plan->dst = w->client;
	plan->delta = CHANNEL_HEADER;
	plan->channel = bpf_htons(w->channel);
	plan->from = NONE;
	plan->to = w->alloc;
	plan->len = payload;
	plan->tos = b->tos;
	return 1;
}

// Takes the budgets (both legs of a short circuit) and, when they held, counts the datagram.
static __always_inline int charge(struct plan *plan)
{
	struct alloc_val *first = 0, *second = 0;
	__u32 from = plan->from, to = plan->to;
	if (from != NONE && !(first = bpf_map_lookup_elem(&allocs, &from)))
		return 0;
	if (to != NONE && !(second = bpf_map_lookup_elem(&allocs, &to)))
		return 0;
	if (first && !take(from, first, plan->len))
		return 0;
	if (second && !take(to, second, plan->len)) {
		if (first)
			give_back(from, first, plan->len);
		return 0;
	}
	if (first) {
		struct counters *c = bpf_map_lookup_elem(&counters, &from);
		if (c) {
			c->c2p_packets++;
			c->c2p_bytes += plan->len;
		}
	}
	if (second) {
		struct counters *c = bpf_map_lookup_elem(&counters, &to);
		if (c) {
			c->p2c_packets++;
			c->p2c_bytes += plan->len;
		}
	}
	return 1;
}

// One's-complement sum helpers for the incremental UDP checksum (RFC 1624): words are taken
// as they lie in memory, so the result is in memory order too.
static __always_inline __u32 sum_words(__u32 sum, const void *p, int words)
{
	const __u16 *w = p;
#pragma unroll
	for (int i = 0; i < 8; i++)
		if (i < words)
			sum += w[i];
	return sum;
}

static __always_inline __u32 sub_words(__u32 sum, const void *p, int words)
{
	const __u16 *w = p;
#pragma unroll
	for (int i = 0; i < 8; i++)
		if (i < words)
			sum += (__u16)~w[i];
	return sum;
}

static __always_inline __u16 fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

// The new UDP checksum after the addresses, ports and length changed, the channel header was
// removed (`old_head`), added (`new_head`) or replaced (both) and the padding was cut off
// (`old_tail`: the payload's last 4 bytes, an even offset into the UDP header since a padded
// datagram's length is a multiple of 4, with all but the padding zeroed).
static __always_inline __u16 udp_csum(__u16 old, const void *old_ip_src, const void *old_ip_dst,
				      const void *new_ip_src, const void *new_ip_dst, int ip_words,
				      const struct udphdr *old_udp, const struct udphdr *new_udp,
				      const __u16 *old_head, const __u16 *new_head, const __u16 *old_tail)
{
	__u32 sum = (__u16)~old;
	sum = sub_words(sum, old_ip_src, ip_words);
	sum = sub_words(sum, old_ip_dst, ip_words);
	sum = sum_words(sum, new_ip_src, ip_words);
	sum = sum_words(sum, new_ip_dst, ip_words);
	// The length is in the pseudo-header and in the UDP header: twice.
	sum += (__u16)~old_udp->len;
	sum += (__u16)~old_udp->len;
	sum += new_udp->len;
	sum += new_udp->len;
	sum += (__u16)~old_udp->source;
	sum += (__u16)~old_udp->dest;
	sum += new_udp->source;
	sum += new_udp->dest;
	if (old_head) {
		sum += (__u16)~old_head[0];
		sum += (__u16)~old_head[1];
	}
	if (new_head) {
		sum += new_head[0];
		sum += new_head[1];
	}
	sum += (__u16)~old_tail[0];
	sum += (__u16)~old_tail[1];
	__u16 c = ~fold(sum);
	return c ? c : 0xffff;
}

// Copies the UDP payload's last 4 bytes into `tail` with all but the last `trim` (the padding)
// zeroed: what leaves the checksum when the padding is cut off. 0 if they are not in the frame.
static __always_inline int padding(const struct udphdr *udph, __u16 ulen, int trim, void *end,
				   __u8 *tail)
{
	__builtin_memset(tail, 0, 4);
	if (!trim)
		return 1;
	// ulen >= 8 + 4 + 1 + trim here (a padded length is at least 1). The verifier takes a
	// variable packet offset only when offset + fixed part stays under 64 KiB: 16 KiB bounds
	// it, far above any XDP frame (one page without multi-buffer, which is not enabled here).
	__u32 off = ulen - 4;
	if (off >= 0x4000)
		return 0;
	const __u8 *t = (const __u8 *)udph + off;
	if ((void *)(t + 4) > end)
		return 0;
#pragma unroll
	for (int i = 0; i < 4; i++)
		if (i >= 4 - trim)
			tail[i] = t[i];
	return 1;
}

static __always_inline __u16 ipv4_csum(struct iphdr *ip)
{
	__u32 sum = 0;
	ip->check = 0;
	const __u16 *w = (const __u16 *)ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return ~fold(sum);
}

static __always_inline int forward(struct xdp_md *ctx, struct bpf_fib_lookup *fib)
{
	if (fib->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(fib->ifindex, 0);
}

static __noinline int relay_v4(struct xdp_md *ctx, void *data, void *end)
{
	struct iphdr *iph = data + sizeof(struct ethhdr);
	if ((void *)(iph + 1) > end)
		return XDP_PASS;
	// IP options and fragments are not ours.
	if (iph->ihl != 5 || iph->version != 4 || iph->protocol != IPPROTO_UDP ||
	    (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return XDP_PASS;
	struct udphdr *udph = (void *)(iph + 1);
	if ((void *)(udph + 1) > end)
		return XDP_PASS;
	__u16 tot = bpf_ntohs(iph->tot_len);
	__u16 ulen = bpf_ntohs(udph->len);
	if (tot > (long)(end - (void *)iph) || ulen != tot - sizeof(struct iphdr) || ulen < sizeof(struct udphdr))
		return XDP_PASS;
	__u8 *head = (void *)(udph + 1);
	__u8 h[4] = {};
	if ((void *)(head + 4) <= end)
		__builtin_memcpy(h, head, 4);
	struct iphdr ip = *iph;
	struct udphdr udp = *udph;
	struct addr src = {}, dst = {};
	src.ip[10] = dst.ip[10] = 0xff;
	src.ip[11] = dst.ip[11] = 0xff;
	__builtin_memcpy(&src.ip[12], &ip.saddr, 4);
	__builtin_memcpy(&dst.ip[12], &ip.daddr, 4);
	src.port = udp.source;
	dst.port = udp.dest;

	struct scratch *s = scratch_area();
	if (!s)
		return XDP_PASS;
	struct plan *plan = &s->plan;
	struct bpf_fib_lookup *fib = &s->fib;
	if (!decide(&src, &dst, h, ulen - sizeof(struct udphdr), plan))
		return XDP_PASS;
	__u16 tail[2];
	if (!padding(udph, ulen, plan->trim, end, (__u8 *)tail))
		return XDP_PASS;
	// What the datagram grows by: the header added or taken, the padding cut.
	int grow = plan->delta - plan->trim;

	struct iphdr *nip = &s->ip4;
	*nip = ip;
	__builtin_memcpy(&nip->saddr, &plan->src.ip[12], 4);
	__builtin_memcpy(&nip->daddr, &plan->dst.ip[12], 4);
	nip->tot_len = bpf_htons(tot + grow);
	nip->ttl = ORIGIN_TTL;
	nip->tos = plan->tos;
	nip->frag_off = bpf_htons(IP_DF);

	fib->family = AF_INET;
	fib->l4_protocol = IPPROTO_UDP;
	fib->sport = plan->src.port;
	fib->dport = plan->dst.port;
	fib->tot_len = tot + grow;
	fib->tos = nip->tos;
	fib->ipv4_src = nip->saddr;
	fib->ipv4_dst = nip->daddr;
	fib->ifindex = ctx->ingress_ifindex;
	if (bpf_fib_lookup(ctx, fib, sizeof(*fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;
	if (!charge(plan))
		return XDP_PASS;

	struct udphdr *nudp = &s->udp;
	*nudp = udp;
	struct ethhdr *eth = &s->eth;
	*eth = *(struct ethhdr *)data;
	nudp->source = plan->src.port;
	nudp->dest = plan->dst.port;
	nudp->len = bpf_htons(ulen + grow);
	__u16 old_head[2], new_head[2];
	__builtin_memcpy(old_head, h, 4);
	new_head[0] = plan->channel;
	new_head[1] = bpf_htons(plan->len);
	if (udp.check) {
		nudp->check = udp_csum(udp.check, &ip.saddr, &ip.daddr, &nip->saddr, &nip->daddr, 2, &udp,
				      nudp, plan->delta <= 0 ? old_head : 0, plan->delta >= 0 ? new_head : 0, tail);
	}
	nip->check = ipv4_csum(nip);
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);

	if (plan->trim && bpf_xdp_adjust_tail(ctx, -plan->trim))
		return XDP_ABORTED;
	if (plan->delta && bpf_xdp_adjust_head(ctx, -plan->delta))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	const int hdrs = sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr);
	if (data + hdrs > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, eth, sizeof(*eth));
	__builtin_memcpy(data + sizeof(struct ethhdr), nip, sizeof(*nip));
	__builtin_memcpy(data + sizeof(struct ethhdr) + sizeof(struct iphdr), nudp, sizeof(*nudp));
	if (plan->delta >= 0) {
		if (data + hdrs + CHANNEL_HEADER > end)
			return XDP_ABORTED;
		__builtin_memcpy(data + hdrs, new_head, 4);
	}
	return forward(ctx, fib);
}

static __noinline int relay_v6(struct xdp_md *ctx, void *data, void *end)
{
	struct ipv6hdr *iph = data + sizeof(struct ethhdr);
	if ((void *)(iph + 1) > end)
		return XDP_PASS;
	// Extension headers (fragments among them) are not ours.
	if (iph->nexthdr != IPPROTO_UDP)
		return XDP_PASS;
	struct udphdr *udph = (void *)(iph + 1);
	if ((void *)(udph + 1) > end)
		return XDP_PASS;
	__u16 plen = bpf_ntohs(iph->payload_len);
	__u16 ulen = bpf_ntohs(udph->len);
	// A zero UDP checksum is invalid over IPv6: user space decides what to do with it.
	if (plen > (long)(end - (void *)udph) || ulen != plen || ulen < sizeof(struct udphdr) || !udph->check)
		return XDP_PASS;
	__u8 *head = (void *)(udph + 1);
	__u8 h[4] = {};
	if ((void *)(head + 4) <= end)
		__builtin_memcpy(h, head, 4);
	struct ipv6hdr ip = *iph;
	struct udphdr udp = *udph;
	struct addr src = {}, dst = {};
	__builtin_memcpy(src.ip, &ip.saddr, 16);
	__builtin_memcpy(dst.ip, &ip.daddr, 16);
	src.port = udp.source;
	dst.port = udp.dest;

	struct scratch *s = scratch_area();
	if (!s)
		return XDP_PASS;
	struct plan *plan = &s->plan;
	struct bpf_fib_lookup *fib = &s->fib;
	if (!decide(&src, &dst, h, ulen - sizeof(struct udphdr), plan))
		return XDP_PASS;
	__u16 tail[2];
	if (!padding(udph, ulen, plan->trim, end, (__u8 *)tail))
		return XDP_PASS;
	int grow = plan->delta - plan->trim;

	struct ipv6hdr *nip = &s->ip6;
	*nip = ip;
	__builtin_memcpy(&nip->saddr, plan->src.ip, 16);
	__builtin_memcpy(&nip->daddr, plan->dst.ip, 16);
	nip->payload_len = bpf_htons(plen + grow);
	nip->hop_limit = ORIGIN_TTL;
	// Traffic class: the relay's DSCP, flow label kept.
	nip->priority = plan->tos >> 4;
	nip->flow_lbl[0] = (nip->flow_lbl[0] & 0x0f) | (plan->tos << 4);

	fib->family = AF_INET6;
	fib->l4_protocol = IPPROTO_UDP;
	fib->sport = plan->src.port;
	fib->dport = plan->dst.port;
	fib->tot_len = sizeof(struct ipv6hdr) + plen + grow;
	__builtin_memcpy(fib->ipv6_src, &nip->saddr, 16);
	__builtin_memcpy(fib->ipv6_dst, &nip->daddr, 16);
	fib->ifindex = ctx->ingress_ifindex;
	if (bpf_fib_lookup(ctx, fib, sizeof(*fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;
	if (!charge(plan))
		return XDP_PASS;

	struct udphdr *nudp = &s->udp;
	*nudp = udp;
	struct ethhdr *eth = &s->eth;
	*eth = *(struct ethhdr *)data;
	nudp->source = plan->src.port;
	nudp->dest = plan->dst.port;
	nudp->len = bpf_htons(ulen + grow);
	__u16 old_head[2], new_head[2];
	__builtin_memcpy(old_head, h, 4);
	new_head[0] = plan->channel;
	new_head[1] = bpf_htons(plan->len);
	nudp->check = udp_csum(udp.check, &ip.saddr, &ip.daddr, &nip->saddr, &nip->daddr, 8, &udp, nudp,
			      plan->delta <= 0 ? old_head : 0, plan->delta >= 0 ? new_head : 0, tail);
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);

	if (plan->trim && bpf_xdp_adjust_tail(ctx, -plan->trim))
		return XDP_ABORTED;
	if (plan->delta && bpf_xdp_adjust_head(ctx, -plan->delta))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	const int hdrs = sizeof(struct ethhdr) + sizeof(struct ipv6hdr) + sizeof(struct udphdr);
	if (data + hdrs > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, eth, sizeof(*eth));
	__builtin_memcpy(data + sizeof(struct ethhdr), nip, sizeof(*nip));
	__builtin_memcpy(data + sizeof(struct ethhdr) + sizeof(struct ipv6hdr), nudp, sizeof(*nudp));
	if (plan->delta >= 0) {
		if (data + hdrs + CHANNEL_HEADER > end)
			return XDP_ABORTED;
		__builtin_memcpy(data + hdrs, new_head, 4);
	}
	return forward(ctx, fib);
}

SEC("xdp")
int teletip_relay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	// VLAN-tagged and everything that is not IP go up.
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return relay_v4(ctx, data, end);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return relay_v6(ctx, data, end);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
