// benches/xdp: XDP_PASS for the generator's end of the veth pair in the native-mode runs. A veth
// hands the frames that the relay's program sends back out (XDP_TX or a redirect) to its peer's
// NAPI, which the peer has only with an XDP program of its own (or GRO) attached.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
