//! Where things live in the guest. `hoist build` puts files at these paths; PID 1 and the
//! supervisor read them. One list, shared by build time and boot time.

/// The host config, as the user wrote it.
pub const HOST_CONFIG: &str = "/etc/hoist/host.toml";
/// What the build resolved: each service's rootfs tree and image config (TOML, see hoist_config::manifest).
pub const BUILD_MANIFEST: &str = "/etc/hoist/build.toml";
/// Kernel modules directory prefix; the version is the running kernel's release.
pub const MODULES_DIR: &str = "/usr/lib/modules";
pub const SUPERVISOR: &str = "/usr/bin/hoist-supervisor";
pub const LOGGER: &str = "/usr/bin/hoist-logger";
pub const CONTAINERD: &str = "/usr/bin/containerd";
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
pub const CONTAINERD_LOG: &str = "/var/log/containerd.log";
/// Boot phases recorded by PID 1 (`name ms` per line), read by the supervisor.
pub const TIMELINE: &str = "/run/hoist/timeline";
/// Problems PID 1 keeps reporting (one per line), read by the supervisor for `status`.
pub const PROBLEMS: &str = "/run/hoist/problems";
/// Unpacked service images live below this directory.
pub const IMAGES_DIR: &str = "/var/lib/hoist/images";

/// containerd's config. No CRI (we are not a kubelet's runtime, and it costs start-up
/// time), no snapshotters we do not use, logs at warn level so the console stays quiet.
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
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "/run/containerd/containerd.sock"

[debug]
  level = "warn"
"#;
