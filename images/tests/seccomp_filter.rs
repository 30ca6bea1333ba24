//! The filters the build compiles with the host's libseccomp (the one crun gets in the
//! image) do what hoist's default profile says: run through a small classic-BPF
//! interpreter with seccomp's input, per architecture. x86_64 only: the syscall numbers
//! and library paths below are that architecture's.
#![cfg(target_arch = "x86_64")]

use std::path::PathBuf;

use hoist_images::seccomp::{base64, compile};

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
const X32_BIT: u32 = 0x4000_0000;
const ALLOW: u32 = 0x7fff_0000;
const EPERM: u32 = 0x0005_0001;
const ENOSYS: u32 = 0x0005_0026;

/// The libseccomp crun links on this machine (CI installs crun).
fn libseccomp() -> PathBuf {
    let found = ["/lib/x86_64-linux-gnu/libseccomp.so.2", "/usr/lib/x86_64-linux-gnu/libseccomp.so.2"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.expect("libseccomp.so.2 not found: install crun (apt-get install crun), which the build puts in images")
}

/// Runs a seccomp program on (nr, arch, args) and returns what it returns.
fn run(program: &[u8], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = Vec::new();
    data.extend_from_slice(&nr.to_le_bytes());
    data.extend_from_slice(&arch.to_le_bytes());
    data.extend_from_slice(&0u64.to_le_bytes());
    for a in args {
        data.extend_from_slice(&a.to_le_bytes());
    }
    let insns: Vec<(u16, u8, u8, u32)> = program
        .chunks(8)
        .map(|c| (u16::from_le_bytes([c[0], c[1]]), c[2], c[3], u32::from_le_bytes([c[4], c[5], c[6], c[7]])))
        .collect();
    let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
    loop {
        let (code, jt, jf, k) = insns[pc];
        pc += 1;
        let jump = |cond: bool| if cond { jt as usize } else { jf as usize };
        match code {
            0x20 => {
                let o = k as usize;
                a = u32::from_le_bytes(data[o..o + 4].try_into().expect("4 bytes"));
            }
            0x00 => a = k,
            0x01 => x = k,
            0x60 => a = mem[k as usize],
            0x61 => x = mem[k as usize],
            0x02 => mem[k as usize] = a,
            0x03 => mem[k as usize] = x,
            0x04 => a = a.wrapping_add(k),
            0x14 => a = a.wrapping_sub(k),
            0x44 => a |= k,
            0x54 => a &= k,
            0x64 => a <<= k,
            0x74 => a >>= k,
            0x07 => x = a,
            0x87 => a = x,
            0x05 => pc += k as usize,
            0x15 => pc += jump(a == k),
            0x25 => pc += jump(a > k),
            0x35 => pc += jump(a >= k),
            0x45 => pc += jump(a & k != 0),
            0x1d => pc += jump(a == x),
            0x2d => pc += jump(a > x),
            0x3d => pc += jump(a >= x),
            0x4d => pc += jump(a & x != 0),
            0x06 => return k,
            0x16 => return a,
            other => panic!("instruction {other:#x} at {} is not interpreted here", pc - 1),
        }
    }
}

fn default_profile() -> serde_json::Value {
    let profile = hoist_config::seccomp::for_container(&Default::default(), hoist_config::Seccomp::Default)
        .expect("profile")
        .expect("confined");
    serde_json::to_value(profile).expect("json")
}

#[test]
fn the_default_profile_compiles_to_what_it_says_on_every_abi() {
    let program = compile(&libseccomp(), &default_profile()).expect("compile");
    let x86_64 = |nr: u32, args: [u64; 6]| run(&program, nr, AUDIT_ARCH_X86_64, args);
    let none = [0u64; 6];
    assert_eq!(x86_64(0, none), ALLOW, "read");
    assert_eq!(x86_64(272, none), EPERM, "unshare without CAP_SYS_ADMIN");
    assert_eq!(x86_64(435, none), ENOSYS, "clone3 answers ENOSYS so libc falls back");
    assert_eq!(x86_64(41, [40, 1, 0, 0, 0, 0]), EPERM, "socket(AF_VSOCK)");
    assert_eq!(x86_64(41, [2, 1, 0, 0, 0, 0]), ALLOW, "socket(AF_INET)");
    assert_eq!(x86_64(135, [8, 0, 0, 0, 0, 0]), ALLOW, "personality(PER_LINUX32)");
    assert_eq!(x86_64(135, [0x0400_0000, 0, 0, 0, 0, 0]), EPERM, "personality(READ_IMPLIES_EXEC)");
    assert_eq!(x86_64(56, [0x11, 0, 0, 0, 0, 0]), ALLOW, "clone(SIGCHLD)");
    assert_eq!(x86_64(56, [0x2_0011, 0, 0, 0, 0, 0]), EPERM, "clone(CLONE_NEWNS)");
    assert_eq!(x86_64(321, none), EPERM, "bpf");
    assert_eq!(run(&program, 3, AUDIT_ARCH_I386, none), ALLOW, "i386 read");
    assert_eq!(run(&program, 310, AUDIT_ARCH_I386, none), EPERM, "i386 unshare");
    assert_eq!(run(&program, X32_BIT, AUDIT_ARCH_X86_64, none), ALLOW, "x32 read");
    let foreign = run(&program, 63, AUDIT_ARCH_AARCH64, none);
    assert!(foreign == 0 || foreign == 0x8000_0000, "another architecture is killed, got {foreign:#x}");
}

#[test]
fn profiles_beyond_what_the_build_compiles_are_left_to_the_runtime() {
    let mut profile = default_profile();
    profile["defaultAction"] = "SCMP_ACT_NOTIFY".into();
    assert!(compile(&libseccomp(), &profile).expect_err("notify").contains("left to the runtime"));
    let mut profile = default_profile();
    profile["syscalls"][0]["errnoRet"] = 5.into();
    assert!(compile(&libseccomp(), &profile).expect_err("errno on allow").contains("errno given"));
    let mut profile = default_profile();
    profile["listenerPath"] = "/run/listener.sock".into();
    assert!(compile(&libseccomp(), &profile).is_err());
    assert!(compile(std::path::Path::new("/nonexistent/libseccomp.so.2"), &default_profile()).is_err());
}

#[test]
fn base64_is_standard_with_padding() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
}
