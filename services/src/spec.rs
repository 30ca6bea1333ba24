//! OCI runtime specs for service containers, built with `oci-spec` from the same defaults
//! containerd's own clients get from its Go `oci` package (a non-Go client gets none of
//! them for free), tightened where newer containerd and Docker are: 13 default capabilities
//! (no CAP_NET_RAW; `add` brings it back) in the bounding, effective and permitted sets
//! only (inheritable and ambient stay empty, so a non-root service has none in effect and
//! `drop` works), the default seccomp profile ([`crate::seccomp`]) unless the service says
//! `seccomp = "unconfined"`, masked and read-only /proc and /sys paths, no_new_privileges,
//! a pids limit ([`hoist_config::Service::DEFAULT_PIDS`] unless set), the standard /proc,
//! /dev, /sys mounts and a device cgroup that denies everything runc does not allow by
//! default. There is no default memory limit: what a service needs is not knowable here,
//! and a guest's memory is the VM's; the OOM killer picks a service (oom_score_adj 0)
//! before PID 1, containerd or the supervisor.
//!
//! Services share the host's network namespace (system services, as LinuxKit's are) and
//! get their own pid, ipc, uts, mount and cgroup namespaces (a service sees its own cgroup
//! as `/`). Processes exec'd into a service ([`crate::exec`]) reuse this spec's process, and
//! runc applies the container's seccomp filter, cgroup and namespaces to them.

use std::collections::BTreeMap;

use hoist_config::manifest::ServiceImage;
use hoist_config::{Service, ServiceNetwork};
use hoist_guest::paths;
use oci_spec::runtime::{
    LinuxBuilder, LinuxDeviceCgroupBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder,
    LinuxSeccomp, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};

pub use hoist_config::seccomp::DEFAULT_CAPABILITIES;

pub const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
    // Energy counters leak what other tenants compute (the PLATYPUS side channel).
    "/sys/devices/virtual/powercap",
    // Per-CPU interrupt counts leak other processes' activity (keystroke timing).
    "/proc/interrupts",
];

pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("service {0}: no command: the config has none and the image has no entrypoint or cmd")]
    NoCommand(String),
    #[error("service {service}: user {user:?}: only numeric uid[:gid] is supported")]
    User { service: String, user: String },
    #[error("service {service}: {reason}")]
    Caps { service: String, reason: String },
    #[error("service {service}: seccomp profile: {reason}")]
    Seccomp { service: String, reason: String },
    #[error("service {service}: {cause}")]
    Build { service: String, cause: oci_spec::OciSpecError },
}

/// What a container needs from the config, shared by services and one-shot stages.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    pub user: Option<(u32, u32)>,
    pub readonly_rootfs: bool,
    pub capabilities: hoist_config::Capabilities,
    pub seccomp: hoist_config::Seccomp,
    pub binds: Vec<hoist_config::Bind>,
    pub memory: Option<u64>,
    /// None: [`hoist_config::Service::DEFAULT_PIDS`].
    pub pids: Option<u32>,
    pub cpu: Option<f64>,
    /// The writable layer's tmpfs size; None: [`hoist_config::Service::DEFAULT_DISK`].
    pub disk: Option<u64>,
    /// Share the host pid namespace.
    pub host_pid: bool,
    /// sd_notify readiness: mount the notify socket dir and set NOTIFY_SOCKET.
    pub notify: bool,
    /// The network namespace: the host's, an empty one, or one on the bridge.
    pub network: hoist_config::ServiceNetwork,
    /// Bridge only: recorded in the spec (annotation `hoist.publish`), so a change is a
    /// change of plan.
    pub publish: Vec<hoist_config::Publish>,
}

impl From<&Service> for Settings {
    fn from(s: &Service) -> Self {
        Settings {
            command: s.command.clone(),
            env: s.env.clone(),
            working_dir: s.working_dir.clone(),
            user: s.user,
            readonly_rootfs: s.readonly_rootfs,
            capabilities: s.capabilities.clone(),
            seccomp: s.seccomp,
            binds: s.binds.clone(),
            memory: s.memory,
            pids: s.pids,
            cpu: s.cpu,
            disk: Some(s.disk),
            host_pid: s.host_pid,
            notify: matches!(s.ready, hoist_config::Ready::Notify),
            network: s.network,
            publish: s.publish.clone(),
        }
    }
}

impl From<&hoist_config::OneShot> for Settings {
    fn from(s: &hoist_config::OneShot) -> Self {
        Settings {
            command: s.command.clone(),
            env: s.env.clone(),
            working_dir: s.working_dir.clone(),
            user: s.user,
            capabilities: s.capabilities.clone(),
            binds: s.binds.clone(),
            ..Default::default()
        }
    }
}

/// The argv: the config's command replaces the image's entrypoint + cmd entirely.
pub fn args(settings: &Settings, image: &ServiceImage) -> Vec<String> {
    if !settings.command.is_empty() {
        return settings.command.clone();
    }
    image.entrypoint.iter().chain(image.cmd.iter()).cloned().collect()
}

/// Image env, then the config's env on top (same key wins), PATH defaulted; sorted by key
/// so the spec is deterministic.
pub fn env(settings: &Settings, image: &ServiceImage) -> Vec<String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for kv in &image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        vars.insert(k.to_string(), v.to_string());
    }
    for (k, v) in &settings.env {
        vars.insert(k.clone(), v.clone());
    }
    if settings.notify {
        vars.insert("NOTIFY_SOCKET".into(), format!("{}/{}", paths::NOTIFY_GUEST_DIR, paths::NOTIFY_SOCKET_NAME));
    }
    let mut out: Vec<String> = vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !out.iter().any(|kv| kv.starts_with("PATH=")) {
        out.insert(0, DEFAULT_PATH.to_string());
    }
    out
}

fn user(name: &str, settings: &Settings, image: &ServiceImage) -> Result<(u32, u32), SpecError> {
    if let Some(u) = settings.user {
        return Ok(u);
    }
    let u = image.user.trim();
    if u.is_empty() {
        return Ok((0, 0));
    }
    let bad = || SpecError::User { service: name.to_string(), user: u.to_string() };
    let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
    Ok((uid.parse().map_err(|_| bad())?, gid.parse().map_err(|_| bad())?))
}

/// containerd's defaults, plus `add`, minus `drop` ("ALL" drops every one).
pub fn capabilities(caps: &hoist_config::Capabilities) -> Result<oci_spec::runtime::Capabilities, String> {
    hoist_config::seccomp::bounding_set(caps)
}

/// Where bind `index` of container `name` comes from in the VM: its path, or for a bind on
/// a volume the staging mount the runner makes of the checked directory
/// ([`crate::volume_dirs`]).
pub fn host_source(name: &str, index: usize, b: &hoist_config::Bind) -> String {
    match &b.volume {
        None => b.source.clone(),
        Some(_) => paths::volume_bind(name, index).to_string_lossy().into_owned(),
    }
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, oci_spec::OciSpecError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
}

fn mounts(name: &str, settings: &Settings) -> Result<Vec<Mount>, oci_spec::OciSpecError> {
    let mut m = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
        mount("/run", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        // The host's resolver settings apply in every namespace (a bridge service reaches
        // the host's name servers through NAT).
        mount("/etc/resolv.conf", "bind", "/etc/resolv.conf", &["rbind", "ro"])?,
        // Bridge services name each other; the rest see the host's names.
        match settings.network {
            ServiceNetwork::Bridge => mount("/etc/hosts", "bind", paths::BRIDGE_HOSTS, &["rbind", "ro"])?,
            _ => mount("/etc/hosts", "bind", "/etc/hosts", &["rbind", "ro"])?,
        },
    ];
    for (i, b) in settings.binds.iter().enumerate() {
        m.push(mount(&b.dest, "bind", &host_source(name, i, b), &["rbind", if b.readonly { "ro" } else { "rw" }])?);
    }
    if settings.notify {
        let dir = paths::notify_host_dir(name);
        m.push(mount(paths::NOTIFY_GUEST_DIR, "bind", &dir.to_string_lossy(), &["rbind", "rw"])?);
    }
    Ok(m)
}

fn resources(settings: &Settings) -> Result<oci_spec::runtime::LinuxResources, oci_spec::OciSpecError> {
    let deny_all = LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build()?;
    let mut r = LinuxResourcesBuilder::default().devices(vec![deny_all]);
    if let Some(bytes) = settings.memory {
        r = r.memory(oci_spec::runtime::LinuxMemoryBuilder::default().limit(bytes as i64).build()?);
    }
    let pids = settings.pids.unwrap_or(hoist_config::Service::DEFAULT_PIDS);
    r = r.pids(oci_spec::runtime::LinuxPidsBuilder::default().limit(i64::from(pids)).build()?);
    if let Some(cpus) = settings.cpu {
        const PERIOD: u64 = 100_000;
        let quota = (cpus * PERIOD as f64).round() as i64;
        r = r.cpu(oci_spec::runtime::LinuxCpuBuilder::default().quota(quota).period(PERIOD).build()?);
    }
    r.build()
}

/// The full runtime spec for one container.
pub fn build(name: &str, settings: &Settings, image: &ServiceImage) -> Result<Spec, SpecError> {
    let args = args(settings, image);
    if args.is_empty() {
        return Err(SpecError::NoCommand(name.to_string()));
    }
    let (uid, gid) = user(name, settings, image)?;
    let err = |cause| SpecError::Build { service: name.to_string(), cause };
    let caps =
        capabilities(&settings.capabilities).map_err(|e| SpecError::Caps { service: name.to_string(), reason: e })?;
    let seccomp = seccomp_profile(name, settings)?;
    // The builder's defaults fill inheritable and ambient; both must be empty.
    let capabilities = oci_spec::runtime::LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()
        .map_err(err)?;
    let cwd = settings.working_dir.clone().unwrap_or_else(|| match image.working_dir.as_str() {
        "" => "/".to_string(),
        w => w.to_string(),
    });
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(uid).gid(gid).build().map_err(err)?)
        .args(args)
        .env(env(settings, image))
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .hard(1024u64)
                .soft(1024u64)
                .build()
                .map_err(err)?,
        ])
        .no_new_privileges(true)
        // PID 1 and containerd protect themselves from the OOM killer and children inherit
        // that; a service must stay an ordinary candidate.
        .oom_score_adj(0)
        .build()
        .map_err(err)?;
    let mut kinds =
        vec![LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts, LinuxNamespaceType::Mount, LinuxNamespaceType::Cgroup];
    if !settings.host_pid {
        kinds.insert(0, LinuxNamespaceType::Pid);
    }
    let mut namespaces = kinds
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    match settings.network {
        ServiceNetwork::Host => {}
        // A new one: the runtime brings its loopback up, and nothing else is in it.
        ServiceNetwork::None => {
            namespaces.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network).build().map_err(err)?)
        }
        // The one the supervisor made and wired to the bridge before the start.
        ServiceNetwork::Bridge => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(crate::bridge::netns::path(name))
                .build()
                .map_err(err)?,
        ),
    }
    let mut linux = LinuxBuilder::default();
    if let Some(seccomp) = seccomp {
        linux = linux.seccomp(seccomp);
    }
    let linux = linux
        .namespaces(namespaces)
        .masked_paths(MASKED_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(READONLY_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .resources(resources(settings).map_err(err)?)
        .cgroups_path(cgroup_path(name))
        .build()
        .map_err(err)?;
    let mut annotations = std::collections::HashMap::new();
    if settings.network == ServiceNetwork::Bridge && !settings.publish.is_empty() {
        let rules: Vec<String> = settings.publish.iter().map(ToString::to_string).collect();
        annotations.insert("hoist.publish".to_string(), rules.join(","));
    }
    SpecBuilder::default()
        .version("1.0.2-dev")
        .hostname(name)
        .annotations(annotations)
        .root(RootBuilder::default().path("rootfs").readonly(settings.readonly_rootfs).build().map_err(err)?)
        .process(process)
        .mounts(mounts(name, settings).map_err(err)?)
        .linux(linux)
        .build()
        .map_err(err)
}

/// The container's syscall filter: None when its config says `seccomp = "unconfined"`.
pub fn seccomp_profile(name: &str, settings: &Settings) -> Result<Option<LinuxSeccomp>, SpecError> {
    // The same function the build compiles filters with: the profiles match byte for byte.
    crate::seccomp::for_container(&settings.capabilities, settings.seccomp)
        .map_err(|e| SpecError::Seccomp { service: name.to_string(), reason: e })
}

/// Hands crun the filter compiled at build time for this spec's profile, if the build
/// made one (`filters`: [`hoist_config::manifest::BuildManifest::seccomp_bpf`]).
pub fn attach_compiled_filter(spec: &mut Spec, filters: &BTreeMap<String, String>) {
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else { return };
    let Some(bpf) = crate::seccomp::key(profile).and_then(|k| filters.get(&k)) else { return };
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(crate::seccomp::BPF_ANNOTATION.to_string(), bpf.clone());
    spec.set_annotations(Some(annotations));
}

/// The container's cgroup (cgroup v2, under /sys/fs/cgroup).
pub fn cgroup_path(name: &str) -> String {
    format!("/hoist/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(command: &[&str]) -> Settings {
        let text = format!(
            "version = 1\n[service.web]\nimage = \"dir:/x\"\ncommand = [{}]\nenv = {{ A = \"1\", PATH = \"/bin\" }}\n",
            command.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
        );
        let mut config = hoist_config::parse(&text, "test.toml").expect("valid config");
        Settings::from(&config.service.remove("web").expect("web"))
    }

    fn image() -> ServiceImage {
        ServiceImage {
            entrypoint: vec!["/bin/httpd".into()],
            cmd: vec!["-f".into()],
            env: vec!["A=0".into(), "B=2".into()],
            working_dir: "/srv".into(),
            ..Default::default()
        }
    }

    #[test]
    fn command_replaces_the_image_entrypoint_and_cmd() {
        assert_eq!(args(&service(&["sh", "-c", "x"]), &image()), ["sh", "-c", "x"]);
        assert_eq!(args(&service(&[]), &image()), ["/bin/httpd", "-f"]);
    }

    #[test]
    fn config_env_overrides_image_env() {
        assert_eq!(env(&service(&[]), &image()), ["A=1", "B=2", "PATH=/bin"]);
        let mut plain = image();
        plain.env.clear();
        let mut s = service(&[]);
        s.env.clear();
        assert_eq!(env(&s, &plain), [DEFAULT_PATH]);
    }

    #[test]
    fn spec_has_containerd_defaults() {
        let spec = build("web", &service(&["httpd"]), &image()).expect("spec");
        let json: serde_json::Value = serde_json::to_value(&spec).expect("json");
        let caps = json["process"]["capabilities"]["bounding"].as_array().expect("caps");
        assert_eq!(caps.len(), 13);
        assert!(caps.iter().any(|c| c == "CAP_NET_BIND_SERVICE"));
        assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        assert!(!caps.iter().any(|c| c == "CAP_NET_RAW"), "{caps:?}");
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["process"]["cwd"], "/srv");
        assert_eq!(json["process"]["oomScoreAdj"], 0);
        let masked = json["linux"]["maskedPaths"].as_array().expect("masked");
        assert_eq!(masked.len(), 12);
        for path in ["/sys/devices/virtual/powercap", "/proc/interrupts", "/proc/kcore"] {
            assert!(masked.iter().any(|p| p == path), "{path} not masked");
        }
        assert!(json["linux"]["readonlyPaths"].as_array().expect("ro").iter().any(|p| p == "/proc/sys"));
        let ns: Vec<&str> =
            json["linux"]["namespaces"].as_array().expect("ns").iter().filter_map(|n| n["type"].as_str()).collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "cgroup"]);
        assert_eq!(json["root"]["path"], "rootfs");
        assert_eq!(json["linux"]["resources"]["devices"][0]["allow"], false);
        assert_eq!(json["linux"]["resources"]["pids"]["limit"], hoist_config::Service::DEFAULT_PIDS);
        assert!(json["linux"]["resources"].get("memory").is_none());
        assert_eq!(json["linux"]["cgroupsPath"], "/hoist/web");
    }

    /// runc sets every set it is given; a capability in inheritable or ambient that is
    /// not in bounding makes its capset fail (EPERM), and ambient ones stay in effect for
    /// a non-root user.
    #[test]
    fn inheritable_and_ambient_sets_are_empty() {
        let json = serde_json::to_value(build("web", &service(&["x"]), &image()).expect("spec")).expect("json");
        let caps = &json["process"]["capabilities"];
        for set in ["inheritable", "ambient"] {
            assert_eq!(caps[set], serde_json::json!([]), "{set}: {caps}");
        }
        let mut dropped = service(&["x"]);
        dropped.capabilities = hoist_config::Capabilities { add: vec![], drop: vec!["ALL".into()] };
        let json = serde_json::to_value(build("web", &dropped, &image()).expect("spec")).expect("json");
        for set in ["bounding", "effective", "permitted", "inheritable", "ambient"] {
            assert_eq!(json["process"]["capabilities"][set], serde_json::json!([]), "{set}");
        }
    }

    #[test]
    fn seccomp_is_on_unless_the_service_opts_out() {
        let json = serde_json::to_value(build("web", &service(&["x"]), &image()).expect("spec")).expect("json");
        let seccomp = &json["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
        // The profile follows the capabilities: CAP_SYS_ADMIN unlocks mount.
        let allowed = |v: &serde_json::Value| -> Vec<String> {
            v["linux"]["seccomp"]["syscalls"][0]["names"]
                .as_array()
                .expect("names")
                .iter()
                .map(|n| n.as_str().expect("name").to_string())
                .collect()
        };
        assert!(!allowed(&json).iter().any(|n| n == "mount"));
        let mut admin = service(&["x"]);
        admin.capabilities.add.push("CAP_SYS_ADMIN".into());
        let json = serde_json::to_value(build("web", &admin, &image()).expect("spec")).expect("json");
        assert!(allowed(&json).iter().any(|n| n == "mount"));
        let mut raw = service(&["x"]);
        raw.seccomp = hoist_config::Seccomp::Unconfined;
        let json = serde_json::to_value(build("web", &raw, &image()).expect("spec")).expect("json");
        assert!(json["linux"].get("seccomp").is_none(), "{}", json["linux"]);
    }

    #[test]
    fn resources_capabilities_binds_and_host_pid_reach_the_spec() {
        let text = r#"version = 1
[service.web]
image = "dir:/x"
command = ["x"]
memory = "64M"
pids = 50
cpu = 0.5
user = "1000:100"
host_pid = true
capabilities = { add = ["CAP_NET_ADMIN", "CAP_NET_RAW"], drop = ["CAP_KILL"] }
binds = ["/var/data:/data:ro"]
ready = { notify = true }
"#;
        let mut config = hoist_config::parse(text, "t.toml").expect("valid");
        let settings = Settings::from(&config.service.remove("web").expect("web"));
        let json = serde_json::to_value(build("web", &settings, &image()).expect("spec")).expect("json");
        let r = &json["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["pids"]["limit"], 50);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(json["process"]["user"]["uid"], 1000);
        let caps = json["process"]["capabilities"]["bounding"].as_array().expect("caps");
        assert!(caps.iter().any(|c| c == "CAP_NET_ADMIN"));
        assert!(caps.iter().any(|c| c == "CAP_NET_RAW"), "add brings CAP_NET_RAW back");
        assert!(!caps.iter().any(|c| c == "CAP_KILL"));
        assert_eq!(caps.len(), 14);
        let ns: Vec<&str> =
            json["linux"]["namespaces"].as_array().expect("ns").iter().filter_map(|n| n["type"].as_str()).collect();
        assert!(!ns.contains(&"pid"), "{ns:?}");
        let mounts = json["mounts"].as_array().expect("mounts");
        assert!(
            mounts.iter().any(|m| m["destination"] == "/data" && m["source"] == "/var/data" && m["options"][1] == "ro")
        );
        assert!(mounts.iter().any(|m| m["destination"] == paths::NOTIFY_GUEST_DIR));
        let env = json["process"]["env"].as_array().expect("env");
        assert!(env.iter().any(|e| e == "NOTIFY_SOCKET=/run/hoist-notify/notify.sock"));
    }

    #[test]
    fn dropping_all_capabilities_leaves_only_the_added_ones() {
        let caps = hoist_config::Capabilities { add: vec!["CAP_KILL".into()], drop: vec!["ALL".into()] };
        let set = capabilities(&caps).expect("caps");
        assert_eq!(set.len(), 1);
        assert!(set.contains(&oci_spec::runtime::Capability::Kill));
    }

    #[test]
    fn no_command_anywhere_is_an_error() {
        let err = build("web", &service(&[]), &ServiceImage::default()).expect_err("no command");
        assert!(err.to_string().contains("service web: no command"), "{err}");
    }

    #[test]
    fn non_numeric_users_are_refused() {
        let mut img = image();
        img.user = "nobody".into();
        assert!(build("web", &service(&["x"]), &img).is_err());
        img.user = "1000:100".into();
        let spec = build("web", &service(&["x"]), &img).expect("spec");
        let json = serde_json::to_value(&spec).expect("json");
        assert_eq!(json["process"]["user"]["uid"], 1000);
        assert_eq!(json["process"]["user"]["gid"], 100);
    }
}
