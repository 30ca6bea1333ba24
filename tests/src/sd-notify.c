/* sd-notify MESSAGE [COMMAND ARGS...]: sends MESSAGE to $NOTIFY_SOCKET, then execs
 * COMMAND in the same process (so the sender is the service's main pid when used as
 * `exec`). Built statically by the tests and put into the test image: busybox has no
 * sd_notify client. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: sd-notify MESSAGE [COMMAND...]\n"); return 2; }
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path) { fprintf(stderr, "sd-notify: NOTIFY_SOCKET not set\n"); return 1; }
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0 || sendto(fd, argv[1], strlen(argv[1]), 0, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("sd-notify");
        return 1;
    }
    close(fd);
    if (argc > 2) { execvp(argv[2], argv + 2); perror("sd-notify: exec"); return 127; }
    return 0;
}
