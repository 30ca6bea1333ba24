//! OCI runtime specs for service containers, built with `oci-spec` from the same defaults
//! containerd's own clients get from its Go `oci` package (a non-Go client gets none of
//! them for free): the 14 default capabilities, masked and read-only /proc paths,
//! no_new_privileges, the standard /proc, /dev, /sys mounts and a device cgroup that
//! denies everything runc does not allow by default.
//!
//! Services share the host's network namespace (system services, as LinuxKit's are) and
//! get their own pid, ipc, uts and mount namespaces.

use std::collections::BTreeMap;

use hoist_config::Service;
use hoist_config::manifest::ServiceImage;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxDeviceCgroupBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};

/// containerd's default capability set (oci.defaultUnixCaps / populateDefaultUnixSpec).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

pub const MASKED_PATHS: [&str; 10] = [
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
];

pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("service {0}: no command: the config has none and the image has no entrypoint or cmd")]
    NoCommand(String),
    #[error("service {service}: user {user:?}: only numeric uid[:gid] is supported")]
    User { service: String, user: String },
    #[error("service {service}: {source}")]
    Build { service: String, source: oci_spec::OciSpecError },
}

/// The argv: the config's command replaces the image's entrypoint + cmd entirely.
pub fn args(service: &Service, image: &ServiceImage) -> Vec<String> {
    if !service.command.is_empty() {
        return service.command.clone();
    }
    image.entrypoint.iter().chain(image.cmd.iter()).cloned().collect()
}

/// Image env, then the config's env on top (same key wins), PATH defaulted; sorted by key
/// so the spec is deterministic.
pub fn env(service: &Service, image: &ServiceImage) -> Vec<String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for kv in &image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        vars.insert(k.to_string(), v.to_string());
    }
    for (k, v) in &service.env {
        vars.insert(k.clone(), v.clone());
    }
    let mut out: Vec<String> = vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !out.iter().any(|kv| kv.starts_with("PATH=")) {
        out.insert(0, DEFAULT_PATH.to_string());
    }
    out
}

fn user(name: &str, image: &ServiceImage) -> Result<(u32, u32), SpecError> {
    let u = image.user.trim();
    if u.is_empty() {
        return Ok((0, 0));
    }
    let bad = || SpecError::User { service: name.to_string(), user: u.to_string() };
    let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
    Ok((uid.parse().map_err(|_| bad())?, gid.parse().map_err(|_| bad())?))
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, oci_spec::OciSpecError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
}

fn default_mounts() -> Result<Vec<Mount>, oci_spec::OciSpecError> {
    Ok(vec![
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
        // Host network namespace: the host's resolver settings apply.
        mount("/etc/resolv.conf", "bind", "/etc/resolv.conf", &["rbind", "ro"])?,
        mount("/etc/hosts", "bind", "/etc/hosts", &["rbind", "ro"])?,
    ])
}

/// The full runtime spec for one service.
pub fn build(name: &str, service: &Service, image: &ServiceImage) -> Result<Spec, SpecError> {
    let args = args(service, image);
    if args.is_empty() {
        return Err(SpecError::NoCommand(name.to_string()));
    }
    let (uid, gid) = user(name, image)?;
    let err = |source| SpecError::Build { service: name.to_string(), source };
    let caps: oci_spec::runtime::Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    let capabilities = oci_spec::runtime::LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(err)?;
    let cwd = service.working_dir.clone().unwrap_or_else(|| match image.working_dir.as_str() {
        "" => "/".to_string(),
        w => w.to_string(),
    });
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(uid).gid(gid).build().map_err(err)?)
        .args(args)
        .env(env(service, image))
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
    let namespaces =
        [LinuxNamespaceType::Pid, LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts, LinuxNamespaceType::Mount]
            .into_iter()
            .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
    let deny_all = LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().map_err(err)?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(MASKED_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(READONLY_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .resources(LinuxResourcesBuilder::default().devices(vec![deny_all]).build().map_err(err)?)
        .cgroups_path(format!("/hoist/{name}"))
        .build()
        .map_err(err)?;
    SpecBuilder::default()
        .version("1.0.2-dev")
        .hostname(name)
        .root(RootBuilder::default().path("rootfs").readonly(service.readonly_rootfs).build().map_err(err)?)
        .process(process)
        .mounts(default_mounts().map_err(err)?)
        .linux(linux)
        .build()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(command: &[&str]) -> Service {
        let text = format!(
            "version = 1\n[service.web]\nimage = \"dir:/x\"\ncommand = [{}]\nenv = {{ A = \"1\", PATH = \"/bin\" }}\n",
            command.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
        );
        let mut config = hoist_config::parse(&text, "test.toml").expect("valid config");
        config.service.remove("web").expect("web")
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
        assert_eq!(caps.len(), 14);
        assert!(caps.iter().any(|c| c == "CAP_NET_BIND_SERVICE"));
        assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["process"]["cwd"], "/srv");
        assert_eq!(json["process"]["oomScoreAdj"], 0);
        assert_eq!(json["linux"]["maskedPaths"].as_array().expect("masked").len(), 10);
        assert!(json["linux"]["readonlyPaths"].as_array().expect("ro").iter().any(|p| p == "/proc/sys"));
        let ns: Vec<&str> =
            json["linux"]["namespaces"].as_array().expect("ns").iter().filter_map(|n| n["type"].as_str()).collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount"]);
        assert_eq!(json["root"]["path"], "rootfs");
        assert_eq!(json["linux"]["resources"]["devices"][0]["allow"], false);
        assert_eq!(json["linux"]["cgroupsPath"], "/hoist/web");
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
