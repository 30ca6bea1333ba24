//! Where things live in the guest. `hoist build` puts files at these paths; PID 1 and the
//! supervisor read them. One list, shared by build time and boot time.

/// The host config, as the user wrote it.
pub const HOST_CONFIG: &str = "/etc/hoist/host.toml";
/// What PID 1 needs of the host config, in [`crate::boot`]'s line format.
pub const BOOT_CONFIG: &str = "/etc/hoist/boot";
/// What the build resolved: each service's rootfs tree and image config (TOML, see hoist_config::manifest).
pub const BUILD_MANIFEST: &str = "/etc/hoist/build.toml";
/// Kernel modules directory prefix; the version is the running kernel's release.
pub const MODULES_DIR: &str = "/usr/lib/modules";
pub const SUPERVISOR: &str = "/usr/bin/hoist-supervisor";
pub const CONTAINERD: &str = "/usr/bin/containerd";
/// hoist's own containerd shim (crate `hoist-shim`): one small process per service, so a
/// shim that dies takes only its own service with it (FAULTS 7). containerd finds it on
/// its PATH by the runtime name [`SHIM_RUNTIME`].
pub const SHIM: &str = "/usr/bin/containerd-shim-hoist-v1";
/// The containerd runtime name every service container is created with.
pub const SHIM_RUNTIME: &str = "io.containerd.hoist.v1";
/// The type of the runtime options the supervisor gives each container and the shim
/// reads (containerd's runc options message; hoist sets its field 6, the OCI runtime).
pub const RUNTIME_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";
/// The OCI runtimes `[host] runtime` chooses from, by name; the image carries only the
/// chosen one, and the shim is told its path in each container's runtime options.
pub const OCI_RUNTIMES: &[(&str, &str)] = &[("crun", "/usr/bin/crun"), ("runc", "/usr/sbin/runc")];

/// The guest path of the OCI runtime called `name` (see [`OCI_RUNTIMES`]).
pub fn oci_runtime(name: &str) -> Option<&'static str> {
    OCI_RUNTIMES.iter().find(|(n, _)| *n == name).map(|(_, path)| *path)
}

pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// PID 1's and the supervisor's runtime directory (created by PID 1).
pub const RUN_DIR: &str = "/run/hoist";
/// Boot phases recorded by PID 1, read by the supervisor (format: [`crate::timeline`]).
pub const TIMELINE: &str = "/run/hoist/timeline";
/// How PID 1's network setup ended, once it has (format: [`crate::network::State`]).
pub const NETWORK_STATE: &str = "/run/hoist/network";
/// Bridge services' network namespaces, one bind mount each (named like the service).
pub const NETNS_DIR: &str = "/run/hoist/netns";
/// The bridge services' addresses, kept by the supervisor across its restarts.
pub const BRIDGE_STATE: &str = "/run/hoist/bridge/addresses";
/// The hosts file every bridge service sees as /etc/hosts: each bridge service by name.
pub const BRIDGE_HOSTS: &str = "/run/hoist/bridge/hosts";
/// nftables' command, in the image when a service is on the bridge (its NAT).
pub const NFT: &str = "/usr/sbin/nft";
/// The DHCP helper's lease (`[network] mode = "dhcp"`), so that a restarted helper keeps it.
pub const DHCP_LEASE: &str = "/run/hoist/dhcp-lease";
/// Problems PID 1 keeps reporting (one per line), read by the supervisor for `status`.
pub const PROBLEMS: &str = "/run/hoist/problems";
/// What the supervisor keeps across its own restarts (counters, held states).
pub const SUPERVISOR_STATE: &str = "/run/hoist/supervisor.toml";
/// Serials of client certificates revoked by `hoist apply` since boot (the build's are
/// in [`crate::pki::TLS_DIR`]); kept here across a supervisor restart.
pub const REVOKED_APPLIED: &str = "/run/hoist/revoked.txt";
/// The control API's Unix socket (root only: /run/hoist is 0700).
pub const CONTROL_SOCKET: &str = "/run/hoist/control.sock";
/// Writable upper layers of service roots (tmpfs).
pub const RW_DIR: &str = "/run/hoist/rw";
/// Scratch files of `exec` requests.
pub const EXEC_DIR: &str = "/run/hoist/exec";
/// Per-service sd_notify socket directories, on the host side of the bind mount.
pub const NOTIFY_HOST_DIR: &str = "/run/hoist/notify";
/// The same directory as a service sees it; `NOTIFY_SOCKET` points into it.
pub const NOTIFY_GUEST_DIR: &str = "/run/hoist-notify";
/// The sd_notify socket in either directory.
pub const NOTIFY_SOCKET_NAME: &str = "notify.sock";

/// A service's sd_notify directory on the host side (bind-mounted at [`NOTIFY_GUEST_DIR`]).
pub fn notify_host_dir(service: &str) -> std::path::PathBuf {
    std::path::Path::new(NOTIFY_HOST_DIR).join(service)
}
/// Volumes are mounted below this directory, one directory per name.
pub const VOLUMES_DIR: &str = "/var/lib/hoist/volumes";
/// With `[state] volume = NAME`, hoist's state lives in this directory of that volume
/// (containerd's root, generations, import records, logs of recent boots); services may
/// not bind it.
pub const STATE_SUBDIR: &str = "hoist-state";
/// The supervisor's generations (on the state volume when there is one).
pub const GENERATIONS_DIR: &str = "/run/hoist/generations";
/// Records of the images `hoist apply` imported (on the state volume when there is one).
pub const IMPORTS_DIR: &str = "/run/hoist/images";
/// containerd's root: content store, snapshots, metadata.
pub const CONTAINERD_ROOT: &str = "/var/lib/containerd";
/// With a state volume: the log directories of the boots kept, one path per line, oldest
/// first; the last is this boot's (bind-mounted on [`LOG_DIR`]). Absent: logs are in RAM.
pub const LOG_BOOTS: &str = "/run/hoist/log-boots";
/// Where the supervisor stages a service's volume binds: `SERVICE/INDEX` is a bind mount
/// of the directory it checked and holds open, so the OCI runtime never resolves a path
/// on the volume itself (a co-tenant could swap a checked directory for a symlink).
pub const BINDS_DIR: &str = "/run/hoist/binds";

/// The staging mount point of bind `index` of `service` (see [`BINDS_DIR`]).
pub fn volume_bind(service: &str, index: usize) -> std::path::PathBuf {
    std::path::Path::new(BINDS_DIR).join(service).join(index.to_string())
}

/// PID 1's volume helper writes how each volume ended up here, one file per name.
pub const VOLUME_STATES: &str = "/run/hoist/volumes";
/// e2fsprogs, in the image only when the config has volumes.
pub const MKE2FS: &str = "/usr/sbin/mke2fs";
pub const E2FSCK: &str = "/usr/sbin/e2fsck";
/// mke2fs's defaults (Debian's file), so that what it makes does not depend on the
/// defaults compiled into the binary.
pub const MKE2FS_CONF: &str = "/etc/mke2fs.conf";
/// Unpacked service images live below this directory.
pub const IMAGES_DIR: &str = "/var/lib/hoist/images";
/// Every log file: `NAME.log` per service, plus the three below.
pub const LOG_DIR: &str = "/var/log";
pub const CONTAINERD_LOG: &str = "/var/log/containerd.log";
pub const SUPERVISOR_LOG: &str = "/var/log/supervisor.log";

/// containerd's config. No CRI (we are not a kubelet's runtime, and it costs start-up
/// time), no snapshotters but overlayfs (the one hoist unpacks into), no restart monitor,
/// /opt plugin manager, gRPC health service or cgroup metrics monitor (task stats come from
/// the shim without it); logs at warn level so the console stays quiet. The v1 runtime
/// stays: containerd 1.6's task service refuses to load without one. `ctr` works as usual.
pub const CONTAINERD_CONFIG_TOML: &str = r#"version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
oom_score = -999
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.native",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
  "io.containerd.internal.v1.restart",
  "io.containerd.internal.v1.opt",
  "io.containerd.grpc.v1.healthcheck",
  "io.containerd.monitor.v1.cgroups",
]

[grpc]
  address = "/run/containerd/containerd.sock"

[debug]
  level = "warn"
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn containerd_listens_where_the_supervisor_connects() {
        assert!(super::CONTAINERD_CONFIG_TOML.contains(&format!("address = \"{}\"", super::CONTAINERD_SOCKET)));
    }
}
