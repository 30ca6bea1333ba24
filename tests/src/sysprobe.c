/* sysprobe syscalls | sysprobe forkbomb: what a service's confinement lets it do, from
 * inside. Built statically by the tests and put into the test image.
 *
 * `syscalls` makes each syscall a container escape or kernel attack surface starts with
 * and prints one line `sysprobe NAME=RESULT` each (RESULT: ok, or the errno's name), then
 * `sysprobe done`. `forkbomb` forks children that wait forever until fork fails, prints
 * `sysprobe forkbomb stopped at N: ERRNO`, and keeps trying once a second. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *name, long rc) {
    printf("sysprobe %s=%s\n", name, rc < 0 ? strerrorname_np(errno) : "ok");
    fflush(stdout);
}

static int syscalls(void) {
    report("unshare", unshare(CLONE_NEWUSER));
    report("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    report("add_key", syscall(SYS_add_key, "user", "hoist-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING));
    union bpf_attr map = { .map_type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 4, .max_entries = 1 };
    report("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &map, sizeof map));
    struct perf_event_attr pe = { .type = PERF_TYPE_SOFTWARE, .size = sizeof pe, .config = PERF_COUNT_SW_TASK_CLOCK,
                                  .disabled = 1, .exclude_kernel = 1, .exclude_hv = 1 };
    report("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
    /* UFFD_USER_MODE_ONLY (1): the variant an unprivileged user may have. */
    report("userfaultfd", syscall(SYS_userfaultfd, O_CLOEXEC | 1));
    printf("sysprobe done\n");
    return 0;
}

static int forkbomb(void) {
    long children = 0;
    int said = 0;
    for (;;) {
        pid_t pid = fork();
        if (pid == 0) {
            for (;;) pause();
        }
        if (pid > 0) {
            children++;
            continue;
        }
        if (!said) {
            printf("sysprobe forkbomb stopped at %ld: %s\n", children, strerrorname_np(errno));
            fflush(stdout);
            said = 1;
        }
        sleep(1);
    }
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "syscalls") == 0) return syscalls();
    if (argc == 2 && strcmp(argv[1], "forkbomb") == 0) return forkbomb();
    fprintf(stderr, "usage: sysprobe syscalls|forkbomb\n");
    return 2;
}
