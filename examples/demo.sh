#!/bin/sh
# Builds and boots the demo host: installs missing packages, builds hoist, makes the busybox
# image from Debian's busybox-static, builds the host, and boots it with the web service
# published on http://127.0.0.1:8080/. Ctrl-C powers the VM off cleanly.
#   examples/demo.sh          interactive: console on this terminal
#   examples/demo.sh --check  boots, fetches the page from the host, prints it, powers off
set -eu
cd "$(dirname "$0")/.."
tests/install-deps.sh
cargo build --locked --release --workspace --bins
hoist=target/release/hoist
if [ ! -f out/images/busybox/index.json ]; then
    rm -rf out/images/busybox
    $hoist image create out/images/busybox --add /bin/busybox:/bin/busybox \
        --busybox-applets /bin/busybox --add examples/www:/www
fi
$hoist build examples/demo.toml -o out/demo
if [ "${1:-}" != "--check" ]; then
    echo "Booting; from another terminal: curl http://127.0.0.1:8080/   (Ctrl-C here powers off)"
    exec $hoist run out/demo --publish 8080:80
fi
$hoist run out/demo --publish 8080:80 > out/demo-console.log 2>&1 &
pid=$!
i=0
until page=$(curl -fsS --max-time 5 http://127.0.0.1:8080/ 2>/dev/null); do
    i=$((i + 1))
    if [ $i -gt 120 ] || ! kill -0 $pid 2>/dev/null; then
        cat out/demo-console.log; echo "demo: the page did not come up" >&2; kill -INT $pid 2>/dev/null; exit 1
    fi
    sleep 1
done
grep 'hoist: ready' out/demo-console.log || true
echo "$page"
kill -INT $pid
wait $pid && echo "demo: powered off cleanly"
