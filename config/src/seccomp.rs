//! The default seccomp profile: what every service container may call unless its config
//! says `seccomp = "unconfined"`, and the capability set it depends on. Here, not in the
//! supervisor, because the build compiles these profiles too (hoist-images) and both
//! must make the same bytes.
//!
//! The same policy as containerd's and Docker's default profile, written from their
//! documented syscall lists: anything not listed fails with EPERM; a base list of syscalls
//! any program may make is allowed; syscalls that only make sense with a capability are
//! allowed only when the container's bounding set holds it (mount and unshare with
//! CAP_SYS_ADMIN, ptrace with CAP_SYS_PTRACE, ...); without CAP_SYS_ADMIN, `clone` may
//! not create namespaces and `clone3` answers ENOSYS (its flags are behind a pointer the
//! filter cannot read, and ENOSYS makes libc fall back to `clone`); `personality` takes
//! only the harmless personas; `socket` may not open AF_VSOCK (the host side of a VM), and
//! x86's `socketcall` is not allowed at all (its arguments are behind a pointer, so it
//! would get around that rule).
//!
//! Stricter than Docker where nothing legitimate needs more: `ptrace` needs
//! CAP_SYS_PTRACE, `io_uring_*` is not allowed (its ring carries syscalls past the filter),
//! `syslog` needs CAP_SYSLOG or CAP_SYS_ADMIN. Names unknown to the runtime's libseccomp
//! (newer syscalls) are skipped by runc; syscalls newer than the profile get ENOSYS from
//! runc, so a program falls back instead of failing on EPERM.

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

/// What a denied syscall returns: EPERM.
pub const DENIED_ERRNO: u32 = 1;
const ENOSYS: u32 = 38;

/// The syscalls every container may make (config/src/seccomp-base.txt).
const BASE_TEXT: &str = include_str!("seccomp-base.txt");

/// The names in [`BASE_TEXT`].
pub fn base() -> impl Iterator<Item = &'static str> {
    BASE_TEXT.lines().map(|l| l.split('#').next().unwrap_or_default()).flat_map(str::split_whitespace)
}

/// Architecture-specific syscalls every container may make on this build's architecture.
#[cfg(target_arch = "x86_64")]
const ARCH_BASE: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(target_arch = "aarch64")]
const ARCH_BASE: &[&str] = &["arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls"];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH_BASE: &[&str] = &[];

/// The ABIs a process on this build's architecture can enter the kernel through: a filter
/// that leaves one out leaves its syscall numbers unfiltered.
#[cfg(target_arch = "x86_64")]
const ARCHES: &[Arch] = &[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32];
#[cfg(target_arch = "aarch64")]
const ARCHES: &[Arch] = &[Arch::ScmpArchAarch64, Arch::ScmpArchArm];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCHES: &[Arch] = &[Arch::ScmpArchNative];

/// Syscalls allowed only with a capability in the bounding set (the kernel checks the
/// capability too; the filter keeps the code path out of reach without it).
pub const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (Capability::SysModule, &["delete_module", "init_module", "finit_module"]),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (Capability::SysTime, &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    (Capability::SysTtyConfig, &["vhangup"]),
    (Capability::SysNice, &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// The clone flags that create namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID, NEWNET): without CAP_SYS_ADMIN, `clone` must have none of them.
pub const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// `personality` values allowed: PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26,
/// and 0xffffffff (query without change).
pub const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const AF_VSOCK: u64 = 40;

/// The syscall names the profile allows unconditionally for a container whose bounding
/// set is `caps`, sorted and without duplicates (argument-filtered rules not included).
pub fn allowed(caps: &oci_spec::runtime::Capabilities) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = base().chain(ARCH_BASE.iter().copied()).collect();
    for (cap, calls) in BY_CAPABILITY {
        if caps.contains(cap) {
            names.extend_from_slice(calls);
        }
    }
    names.sort_unstable();
    names.dedup();
    names
}

fn rule(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscallBuilder {
    LinuxSyscallBuilder::default().names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).action(action)
}

fn with_arg(names: &[&str], index: usize, op: LinuxSeccompOperator, value: u64) -> Result<LinuxSyscall, String> {
    let mut arg = LinuxSeccompArgBuilder::default().index(index).value(value).op(op);
    if op == LinuxSeccompOperator::ScmpCmpMaskedEq {
        arg = arg.value_two(0u64);
    }
    let arg = arg.build().map_err(|e| e.to_string())?;
    rule(names, LinuxSeccompAction::ScmpActAllow).args(vec![arg]).build().map_err(|e| e.to_string())
}

/// containerd's default capability set (oci.defaultUnixCaps) without CAP_NET_RAW, as
/// newer containerd and Docker have it: raw sockets forge packets on the host network.
pub const DEFAULT_CAPABILITIES: [Capability; 13] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// A container's bounding set: containerd's defaults, plus `add`, minus `drop` ("ALL"
/// drops every one).
pub fn bounding_set(caps: &crate::Capabilities) -> Result<oci_spec::runtime::Capabilities, String> {
    let parse = |name: &str| {
        name.strip_prefix("CAP_")
            .unwrap_or(name)
            .parse::<Capability>()
            .map_err(|_| format!("capability {name} is not known to the OCI spec builder"))
    };
    let mut set: oci_spec::runtime::Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    for name in &caps.drop {
        if name == "ALL" {
            set.clear();
        } else {
            set.remove(&parse(name)?);
        }
    }
    for name in &caps.add {
        set.insert(parse(name)?);
    }
    Ok(set)
}

/// The filter a container gets: None for `seccomp = "unconfined"`.
pub fn for_container(caps: &crate::Capabilities, mode: crate::Seccomp) -> Result<Option<LinuxSeccomp>, String> {
    match mode {
        crate::Seccomp::Unconfined => Ok(None),
        crate::Seccomp::Default => profile(&bounding_set(caps)?).map(Some),
    }
}

/// The annotation that hands crun a compiled filter in place of the profile.
pub const BPF_ANNOTATION: &str = "run.oci.seccomp_bpf_data";

/// What a compiled filter is filed under in the build manifest: the hex sha256 of the
/// profile's JSON (the same bytes at build time and at boot: one type, one serializer).
/// None if the profile does not serialize (then no compiled filter is ever used for it).
pub fn key(profile: &LinuxSeccomp) -> Option<String> {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(profile).ok()?;
    Some(Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect())
}

/// The profile for a container whose bounding set is `caps`.
pub fn profile(caps: &oci_spec::runtime::Capabilities) -> Result<LinuxSeccomp, String> {
    let allow = rule(&allowed(caps), LinuxSeccompAction::ScmpActAllow).build().map_err(|e| e.to_string())?;
    let mut syscalls = vec![allow];
    for persona in PERSONALITIES {
        syscalls.push(with_arg(&["personality"], 0, LinuxSeccompOperator::ScmpCmpEq, persona)?);
    }
    syscalls.push(with_arg(&["socket"], 0, LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK)?);
    if !caps.contains(&Capability::SysAdmin) {
        // x86 and arm take the flags first (s390 second; not a build target).
        syscalls.push(with_arg(&["clone"], 0, LinuxSeccompOperator::ScmpCmpMaskedEq, CLONE_NAMESPACE_FLAGS)?);
        let enosys = rule(&["clone3"], LinuxSeccompAction::ScmpActErrno).errno_ret(ENOSYS);
        syscalls.push(enosys.build().map_err(|e| e.to_string())?);
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(DENIED_ERRNO)
        .architectures(ARCHES.to_vec())
        .syscalls(syscalls)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[Capability]) -> oci_spec::runtime::Capabilities {
        list.iter().copied().collect()
    }

    fn json(caps: &oci_spec::runtime::Capabilities) -> serde_json::Value {
        serde_json::to_value(profile(caps).expect("profile")).expect("json")
    }

    /// Names in rules that allow them whatever the arguments.
    fn unconditional(v: &serde_json::Value) -> Vec<String> {
        let rules = v["syscalls"].as_array().expect("syscalls");
        rules
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
            .flat_map(|r| r["names"].as_array().expect("names").iter().map(|n| n.as_str().expect("name").to_string()))
            .collect()
    }

    #[test]
    fn denies_with_eperm_on_every_abi_of_the_build() {
        let v = json(&caps(&[]));
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["defaultErrnoRet"], 1);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(v["architectures"], serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]));
    }

    #[test]
    fn escapes_are_not_allowed_without_capabilities() {
        let names = unconditional(&json(&DEFAULT_CAPABILITIES.into_iter().collect()));
        for denied in [
            "unshare",
            "setns",
            "mount",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "ptrace",
            "init_module",
            "kexec_load",
            "reboot",
            "clone",
            "clone3",
            "io_uring_setup",
            "syslog",
            "acct",
            "open_by_handle_at",
            "settimeofday",
            "personality",
            "socket",
        ] {
            assert!(!names.iter().any(|n| n == denied), "{denied} is allowed");
        }
        // CAP_SYS_CHROOT is a default capability.
        assert!(names.iter().any(|n| n == "chroot"));
        assert!(names.iter().any(|n| n == "execve"));
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let admin = json(&caps(&[Capability::SysAdmin, Capability::SysPtrace, Capability::SysTime]));
        let names = unconditional(&admin);
        for allowed in ["mount", "unshare", "setns", "clone", "clone3", "bpf", "ptrace", "settimeofday"] {
            assert!(names.iter().any(|n| n == allowed), "{allowed} is not allowed");
        }
        let rules = admin["syscalls"].as_array().expect("rules");
        assert!(!rules.iter().any(|r| r["names"][0] == "clone3" && r["action"] == "SCMP_ACT_ERRNO"));
        let names = unconditional(&json(&caps(&[Capability::Bpf])));
        assert!(names.iter().any(|n| n == "bpf"));
        assert!(!names.iter().any(|n| n == "perf_event_open"));
    }

    #[test]
    fn clone_may_not_create_namespaces_and_clone3_falls_back() {
        let v = json(&caps(&[]));
        let rules = v["syscalls"].as_array().expect("rules");
        let clone = rules.iter().find(|r| r["names"] == serde_json::json!(["clone"])).expect("clone rule");
        assert_eq!(clone["args"][0]["index"], 0);
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["value"], 0x7E02_0000u64);
        assert_eq!(clone["args"][0]["valueTwo"], 0);
        let clone3 = rules.iter().find(|r| r["names"] == serde_json::json!(["clone3"])).expect("clone3 rule");
        assert_eq!(clone3["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3["errnoRet"], 38);
        let personas: Vec<u64> = rules
            .iter()
            .filter(|r| r["names"][0] == "personality")
            .map(|r| r["args"][0]["value"].as_u64().expect("value"))
            .collect();
        assert_eq!(personas, PERSONALITIES);
    }

    /// The README quotes this count; a change to the lists must update it.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_default_capabilities_allow_355_syscalls_unconditionally() {
        let defaults: oci_spec::runtime::Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
        assert_eq!(allowed(&defaults).len(), 355);
        assert_eq!(unconditional(&json(&defaults)).len(), 355);
        assert!(!allowed(&defaults).contains(&"socketcall"), "socketcall would get around the socket rule");
    }

    #[test]
    fn lists_have_no_duplicates() {
        let mut names: Vec<&str> = base().collect();
        let listed = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), listed);
        assert!(names.contains(&"execve") && names.contains(&"writev") && !names.contains(&"#"));
        let none = allowed(&caps(&[]));
        assert!(none.len() > 300, "{}", none.len());
    }
}
