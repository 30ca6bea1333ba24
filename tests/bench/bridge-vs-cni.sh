#!/bin/sh
# Added start latency of a bridge service, natively: hoist's own bridge code (netlink and
# one `nft -f`) against Debian's CNI plugins (bridge + host-local + portmap) doing the same
# work for N restarts of one service with one published port: the old namespace's
# interface removed, a new one attached, the address kept. Each side runs in a network and
# mount namespace of its own with a tmpfs on /run, so the machine's network is untouched.
# The CNI side is timed on the plugin calls only (DEL then ADD); making the namespace is
# left out of its time, and counted in hoist's.
# Usage (root): tests/bench/bridge-vs-cni.sh [N]   (needs containernetworking-plugins, iptables, nftables)
set -eu
n=${1:-50}
cd "$(dirname "$0")/../.."
for p in /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/portmap /usr/sbin/nft /usr/sbin/iptables; do
    [ -x "$p" ] || { echo "bridge-vs-cni: $p is missing: apt-get install containernetworking-plugins iptables nftables" >&2; exit 2; }
done
cargo build --quiet --release -p hoist-services --example bridge_bench
bin=$PWD/target/release/examples/bridge_bench
unshare -n -m --propagation private sh -eu -c 'mount -t tmpfs tmpfs /run; ip link set lo up; "$1" "$2"' sh "$bin" "$n"
unshare -n -m --propagation private sh -eu -c 'mount -t tmpfs tmpfs /run; ip link set lo up; exec python3 - "$1"' sh "$n" <<'PY'
import json, os, statistics, subprocess, sys, time
n = int(sys.argv[1])
net = {"cniVersion": "1.0.0", "name": "hoist-bench"}
bridge = dict(net, type="bridge", bridge="cni-bench", isGateway=True, ipMasq=True,
              ipam={"type": "host-local", "subnet": "10.88.0.0/16", "dataDir": "/run/cni-ipam"})
portmap = dict(net, type="portmap", capabilities={"portMappings": True},
               runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})

def plugin(conf, command, netns, prev=None):
    if prev is not None:
        conf = dict(conf, prevResult=prev)
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID="bench", CNI_NETNS=netns,
               CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
    p = subprocess.run(["/usr/lib/cni/" + conf["type"]], input=json.dumps(conf).encode(), env=env,
                       capture_output=True)
    if p.returncode != 0:
        sys.exit(f"cni {conf['type']} {command}: {p.stdout.decode()} {p.stderr.decode()}")
    return json.loads(p.stdout) if p.stdout.strip() else None

ms, addresses, prev, old = [], set(), None, None
for i in range(n):
    ns = f"bench{i}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    t = time.monotonic()
    if old is not None:  # a restart: the old attachment goes first, as hoist's does
        plugin(portmap, "DEL", f"/run/netns/{old}", prev)
        plugin(bridge, "DEL", f"/run/netns/{old}")
    result = plugin(bridge, "ADD", f"/run/netns/{ns}")
    prev = plugin(portmap, "ADD", f"/run/netns/{ns}", result)
    ms.append((time.monotonic() - t) * 1000)
    addresses.add(result["ips"][0]["address"])
    if old is not None:
        subprocess.run(["ip", "netns", "del", old], check=True)
    old = ns
first = ms.pop(0)
print(f"CNI plugins: first attach {first:.1f} ms; restart median {statistics.median(ms):.1f} ms, "
      f"mean {statistics.mean(ms):.1f} ms over {len(ms)} restarts; addresses handed out: {len(addresses)}")
PY
