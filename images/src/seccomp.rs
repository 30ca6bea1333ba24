//! Seccomp filters compiled at build time.
//!
//! crun compiles a container's seccomp profile with libseccomp when it creates the
//! container: about 60% of a create's CPU natively, a third of a second per container
//! under emulation. (Newer crun keeps a cache of compiled profiles; the crun 1.8.1 here
//! paid the compile on each of 20 creates in a row, and containers created at the same
//! time at boot would all miss a cache anyway.) The build compiles each distinct profile once, with the very libseccomp
//! library it puts into the image for crun (loaded with `dlopen`), making the calls crun
//! makes, in crun's order. The supervisor then hands crun the program
//! (`run.oci.seccomp_bpf_data`) and crun loads it as given.
//!
//! Only what hoist's profiles use is compiled: actions allow, errno, kill, trap, log; a
//! profile with anything else gets no compiled filter, and crun compiles it at create as
//! before. Nothing here decides policy: the profile does, libseccomp translates it.

use std::ffi::{CString, c_char, c_int, c_uint, c_void};
use std::io::{Read, Seek};
use std::path::Path;

use serde_json::Value;

/// Largest program the kernel loads (BPF_MAXINSNS), in bytes.
const MAX_PROGRAM: u64 = 4096 * 8;

// libseccomp's action values (seccomp.h).
const ACT_KILL_PROCESS: u32 = 0x8000_0000;
const ACT_KILL_THREAD: u32 = 0x0000_0000;
const ACT_TRAP: u32 = 0x0003_0000;
const ACT_ERRNO: u32 = 0x0005_0000;
const ACT_LOG: u32 = 0x7ffc_0000;
const ACT_ALLOW: u32 = 0x7fff_0000;
const EPERM: u32 = 1;
/// What seccomp_syscall_resolve_name answers for a name it does not know.
const NR_SCMP_ERROR: c_int = -1;

/// `struct scmp_arg_cmp`.
#[repr(C)]
struct ArgCmp {
    arg: c_uint,
    op: c_uint,
    datum_a: u64,
    datum_b: u64,
}

type Ctx = *mut c_void;

/// The libseccomp entry points crun uses.
struct Lib {
    handle: *mut c_void,
    init: unsafe extern "C" fn(u32) -> Ctx,
    release: unsafe extern "C" fn(Ctx),
    arch_add: unsafe extern "C" fn(Ctx, u32) -> c_int,
    arch_resolve_name: unsafe extern "C" fn(*const c_char) -> u32,
    syscall_resolve_name: unsafe extern "C" fn(*const c_char) -> c_int,
    rule_add_array: unsafe extern "C" fn(Ctx, u32, c_int, c_uint, *const ArgCmp) -> c_int,
    export_bpf: unsafe extern "C" fn(Ctx, c_int) -> c_int,
}

impl Drop for Lib {
    fn drop(&mut self) {
        // SAFETY: handle came from dlopen and no function from it is used after this.
        unsafe { libc::dlclose(self.handle) };
    }
}

/// Looks up `name` in `handle`. SAFETY (caller): `T` is the symbol's true function type.
unsafe fn symbol<T: Copy>(handle: *mut c_void, name: &str) -> Result<T, String> {
    let c = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: handle is a live dlopen handle and c a NUL-terminated string.
    let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
    if p.is_null() {
        return Err(format!("libseccomp has no {name}"));
    }
    assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: p is the address of function `name`, whose type the caller names as T (a
    // function pointer, the size of a data pointer as asserted).
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

impl Lib {
    fn open(path: &Path) -> Result<Lib, String> {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: c is a NUL-terminated path; dlopen runs the library's constructors,
        // which libseccomp has none of that matter here.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(format!("cannot load {}", path.display()));
        }
        // SAFETY: each type below is the C prototype of that libseccomp 2 function.
        let lib = unsafe {
            (|| {
                Ok(Lib {
                    handle,
                    init: symbol(handle, "seccomp_init")?,
                    release: symbol(handle, "seccomp_release")?,
                    arch_add: symbol(handle, "seccomp_arch_add")?,
                    arch_resolve_name: symbol(handle, "seccomp_arch_resolve_name")?,
                    syscall_resolve_name: symbol(handle, "seccomp_syscall_resolve_name")?,
                    rule_add_array: symbol(handle, "seccomp_rule_add_array")?,
                    export_bpf: symbol(handle, "seccomp_export_bpf")?,
                })
            })()
        };
        if lib.is_err() {
            // SAFETY: handle came from dlopen above and nothing from it is kept.
            unsafe { libc::dlclose(handle) };
        }
        lib
    }
}

/// A filter context, released when dropped.
struct Filter<'a> {
    lib: &'a Lib,
    ctx: Ctx,
}

impl Drop for Filter<'_> {
    fn drop(&mut self) {
        // SAFETY: ctx came from seccomp_init and is released once.
        unsafe { (self.lib.release)(self.ctx) };
    }
}

/// libseccomp's value for an OCI action name, with `errno` for the errno action. An errno
/// given with another action is an error crun reports: left to crun.
pub fn action(name: &str, errno: Option<u32>) -> Result<u32, String> {
    if errno.is_some() && name != "SCMP_ACT_ERRNO" {
        return Err(format!("errno given with {name}: left to the runtime"));
    }
    let errno = errno.unwrap_or(EPERM);
    Ok(match name {
        "SCMP_ACT_ALLOW" => ACT_ALLOW,
        "SCMP_ACT_ERRNO" => ACT_ERRNO | (errno & 0xffff),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ACT_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => ACT_KILL_PROCESS,
        "SCMP_ACT_TRAP" => ACT_TRAP,
        "SCMP_ACT_LOG" => ACT_LOG,
        other => return Err(format!("action {other} is left to the runtime")),
    })
}

/// libseccomp's value for an OCI comparison name.
pub fn operator(name: &str) -> Result<c_uint, String> {
    Ok(match name {
        "SCMP_CMP_NE" => 1,
        "SCMP_CMP_LT" => 2,
        "SCMP_CMP_LE" => 3,
        "SCMP_CMP_EQ" => 4,
        "SCMP_CMP_GE" => 5,
        "SCMP_CMP_GT" => 6,
        "SCMP_CMP_MASKED_EQ" => 7,
        other => return Err(format!("unknown comparison {other}")),
    })
}

fn u32_of(v: &Value, what: &str) -> Result<u32, String> {
    v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| format!("{what}: not a number"))
}

/// Compiles an OCI seccomp profile (`linux.seccomp` as JSON) with the libseccomp at
/// `library`, as crun would: returns the BPF program.
pub fn compile(library: &Path, profile: &Value) -> Result<Vec<u8>, String> {
    if profile.get("listenerPath").is_some_and(|v| !v.is_null()) || profile.get("flags").is_some_and(|v| !v.is_null()) {
        return Err("listener and flags are left to the runtime".into());
    }
    let lib = Lib::open(library)?;
    let default_errno = match profile.get("defaultErrnoRet") {
        Some(v) if !v.is_null() => Some(u32_of(v, "defaultErrnoRet")?),
        _ => None,
    };
    let default_name = profile.get("defaultAction").and_then(Value::as_str).ok_or("no defaultAction")?;
    let default_action = action(default_name, default_errno)?;
    // SAFETY: seccomp_init takes an action value and returns a context or NULL.
    let ctx = unsafe { (lib.init)(default_action) };
    if ctx.is_null() {
        return Err(format!("seccomp_init refused {default_name}"));
    }
    let filter = Filter { lib: &lib, ctx };
    for arch in profile.get("architectures").and_then(Value::as_array).into_iter().flatten() {
        let name = arch.as_str().ok_or("architecture: not a string")?;
        let lower = name.trim_start_matches("SCMP_ARCH_").to_ascii_lowercase();
        let c = CString::new(lower).map_err(|e| e.to_string())?;
        // SAFETY: c is NUL-terminated; the call only reads it.
        let token = unsafe { (lib.arch_resolve_name)(c.as_ptr()) };
        if token == 0 {
            return Err(format!("unknown architecture {name}"));
        }
        // SAFETY: filter.ctx is live; token came from libseccomp.
        let ret = unsafe { (lib.arch_add)(filter.ctx, token) };
        if ret < 0 && ret != -libc::EEXIST {
            return Err(format!("seccomp_arch_add {name}: {}", std::io::Error::from_raw_os_error(-ret)));
        }
    }
    for rule in profile.get("syscalls").and_then(Value::as_array).into_iter().flatten() {
        let errno = match rule.get("errnoRet") {
            Some(v) if !v.is_null() => Some(u32_of(v, "errnoRet")?),
            _ => None,
        };
        let act = action(rule.get("action").and_then(Value::as_str).ok_or("rule without action")?, errno)?;
        if act == default_action {
            continue;
        }
        let mut cmps = Vec::new();
        for a in rule.get("args").and_then(Value::as_array).into_iter().flatten().take(6) {
            let index = u32_of(a.get("index").ok_or("arg without index")?, "index")?;
            if index >= 6 {
                return Err(format!("argument index {index}"));
            }
            let op = operator(a.get("op").and_then(Value::as_str).ok_or("arg without op")?)?;
            let value = |k: &str| a.get(k).and_then(Value::as_u64).unwrap_or(0);
            cmps.push(ArgCmp { arg: index, op, datum_a: value("value"), datum_b: value("valueTwo") });
        }
        // Two comparisons of one argument cannot share a rule (libseccomp would AND them
        // into one that never matches): crun adds one rule per comparison then.
        let repeated = (0..6).any(|i| cmps.iter().filter(|c| c.arg == i).count() > 1);
        let groups: Vec<&[ArgCmp]> = if repeated { cmps.chunks(1).collect() } else { vec![&cmps[..]] };
        for name in rule.get("names").and_then(Value::as_array).into_iter().flatten() {
            let name = name.as_str().ok_or("syscall name: not a string")?;
            let c = CString::new(name).map_err(|e| e.to_string())?;
            // SAFETY: c is NUL-terminated; the call only reads it.
            let nr = unsafe { (lib.syscall_resolve_name)(c.as_ptr()) };
            if nr == NR_SCMP_ERROR {
                // Unknown to this libseccomp (newer than it): crun skips it too. Other
                // negative numbers are libseccomp's stand-ins for syscalls only other
                // architectures have, and go in like any other.
                continue;
            }
            for group in &groups {
                let ptr = if group.is_empty() { std::ptr::null() } else { group.as_ptr() };
                // SAFETY: ptr points to group.len() comparisons that outlive the call.
                let ret = unsafe { (lib.rule_add_array)(filter.ctx, act, nr, group.len() as c_uint, ptr) };
                if ret < 0 {
                    return Err(format!("seccomp rule for {name}: {}", std::io::Error::from_raw_os_error(-ret)));
                }
            }
        }
    }
    let out = nix::sys::memfd::memfd_create("seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| format!("memfd: {e}"))?;
    let mut out = std::fs::File::from(out);
    // SAFETY: filter.ctx is live and the descriptor open for writing.
    let ret = unsafe { (lib.export_bpf)(filter.ctx, std::os::fd::AsRawFd::as_raw_fd(&out)) };
    if ret < 0 {
        return Err(format!("seccomp_export_bpf: {}", std::io::Error::from_raw_os_error(-ret)));
    }
    drop(filter);
    let mut program = Vec::new();
    out.seek(std::io::SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    out.take(MAX_PROGRAM + 1).read_to_end(&mut program).map_err(|e| e.to_string())?;
    if program.is_empty() || program.len() % 8 != 0 || program.len() as u64 > MAX_PROGRAM {
        return Err(format!("libseccomp wrote a program of {} bytes", program.len()));
    }
    Ok(program)
}

/// Standard base64 with padding, as crun decodes the annotation.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
