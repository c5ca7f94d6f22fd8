// benches/xdp: loads softirq.bpf.o, attaches its two tracepoint programs, pins its map at
// argv[2] and holds them until killed (the attachments end with this process).
#include <bpf/libbpf.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s OBJECT MAP-PIN-PATH\n", argv[0]);
		return 2;
	}
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || libbpf_get_error(obj) || bpf_object__load(obj)) {
		fprintf(stderr, "softirq-loader: cannot load %s\n", argv[1]);
		return 1;
	}
	struct bpf_program *prog;
	bpf_object__for_each_program(prog, obj) {
		if (libbpf_get_error(bpf_program__attach(prog))) {
			fprintf(stderr, "softirq-loader: cannot attach %s\n", bpf_program__name(prog));
			return 1;
		}
	}
	struct bpf_map *map = bpf_object__find_map_by_name(obj, "softirq_ns");
	if (!map || bpf_map__pin(map, argv[2])) {
		fprintf(stderr, "softirq-loader: cannot pin the map at %s\n", argv[2]);
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	printf("ready\n");
	fflush(stdout);
	while (!stop)
		pause();
	bpf_map__unpin(map, argv[2]);
	bpf_object__close(obj);
	return 0;
}
