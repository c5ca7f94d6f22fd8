// benches/xdp: the time each CPU spends in softirq handlers, measured (this kernel's /proc/stat
// softirq column is tick-sampled and missed the generic-XDP receive entirely).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define NET_RX 3

// Per CPU: [0] the running handler's start, [1] NET_RX ns, [2] all vectors' ns.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} softirq_ns SEC(".maps");

// Raw tracepoints (attached by name, no tracefs needed): args[0] is the vector.
SEC("raw_tracepoint/softirq_entry")
int softirq_entry(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 k = 0;
	__u64 *start = bpf_map_lookup_elem(&softirq_ns, &k);
	if (start)
		*start = bpf_ktime_get_ns();
	return 0;
}

SEC("raw_tracepoint/softirq_exit")
int softirq_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 k = 0;
	__u64 *start = bpf_map_lookup_elem(&softirq_ns, &k);
	if (!start || !*start)
		return 0;
	__u64 d = bpf_ktime_get_ns() - *start;
	*start = 0;
	k = 2;
	__u64 *all = bpf_map_lookup_elem(&softirq_ns, &k);
	if (all)
		*all += d;
	if (ctx->args[0] == NET_RX) {
		k = 1;
		__u64 *rx = bpf_map_lookup_elem(&softirq_ns, &k);
		if (rx)
			*rx += d;
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
