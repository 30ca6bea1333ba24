#!/bin/sh
# Installs what building and booting a hoist host needs, when it is missing:
# QEMU, a kernel with modules, containerd + crun (their binaries go into the image; runc
# for hosts that choose it),
# busybox-static (the demo image), protoc (containerd-client's build), cpio (tests),
# g++ (libFuzzer, for tests/fuzz.sh), e2fsprogs (mke2fs and e2fsck go into images with
# volumes), dosfstools (the volume tests' foreign disk), dnsmasq-base (the DHCP tests'
# server on a tap device), iproute2 (the tap devices), nftables (nft goes into images with
# bridge services: their NAT), docker-registry and skopeo (the docker:// tests' registry
# on loopback, and the pushes to it).
# Idempotent; run as root on Debian or Ubuntu.
set -eu
missing=""
need() { command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
need qemu-system-x86_64 qemu-system-x86
need containerd containerd
need runc runc
need crun crun
need protoc protobuf-compiler
need cpio cpio
need lz4 lz4
need curl curl
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q static || missing="$missing busybox-static"
command -v file >/dev/null 2>&1 || missing="$missing file"
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || missing="$missing libc6-dev"   # static sd-notify client in the tests
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
command -v c++ >/dev/null 2>&1 || missing="$missing g++"   # libFuzzer, built by the fuzz targets (tests/fuzz.sh)
command -v modprobe >/dev/null 2>&1 || missing="$missing kmod"
{ [ -x /usr/sbin/mke2fs ] && [ -x /usr/sbin/e2fsck ]; } || missing="$missing e2fsprogs"
[ -x /usr/sbin/mkfs.vfat ] || missing="$missing dosfstools"
need dnsmasq dnsmasq-base
need nft nftables
need ip iproute2
need docker-registry docker-registry
need skopeo skopeo
ls /boot/vmlinuz-* >/dev/null 2>&1 || kernel=yes
if [ -n "$missing" ] || [ "${kernel:-}" = yes ]; then
    echo "installing:$missing ${kernel:+kernel}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    if [ "${kernel:-}" = yes ]; then
        if apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
            missing="$missing linux-image-cloud-amd64"
        else
            missing="$missing linux-image-virtual"   # Ubuntu
        fi
    fi
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# containerd must not run on the build machine for us; the package may have started it.
systemctl disable --now containerd >/dev/null 2>&1 || true
# Nor the registry on :5000: the tests start their own, on a free port.
systemctl disable --now docker-registry >/dev/null 2>&1 || true
