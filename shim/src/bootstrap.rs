//! The shim's three lives, as containerd runs the binary:
//! - `start` (cwd = the bundle): make the socket, start the serving process detached from
//!   containerd (its own session, stdio on /dev/null), write the `address` file, print
//!   the address and exit.
//! - serving (no action; started by `start` with the listening socket on fd 3).
//! - `delete` (after a failed start or a dead shim): force-delete the container, unmount
//!   its root, and print a DeleteResponse.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use prost::Message;

use crate::args::{Args, valid_id};
use crate::service::{RUNTIME_FILE, Shim, runtime_binary, runtime_root};

/// Where shims' sockets live (containerd's own shims use the same directory).
pub const SOCKET_DIR: &str = "/run/containerd/s";
/// The listening socket's fd in the serving process, and its path, passed by `start`.
const LISTENER_FD: i32 = 3;
const SOCKET_ENV: &str = "HOIST_SHIM_SOCKET";

/// The socket of one start of the shim for (containerd address, namespace, id,
/// `nonce`): a hash, so that any id fits in a socket path. The nonce makes each start's
/// socket new: a shim left behind (containerd gave up on it and ran `delete`) never
/// blocks the next start of the same container.
pub fn socket_path(address: &str, namespace: &str, id: &str, nonce: &str) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{address}\0{namespace}\0{id}\0{nonce}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    Path::new(SOCKET_DIR).join(format!("hoist-{hex}"))
}

fn check(args: &Args) -> Result<(), String> {
    if !valid_id(&args.id) {
        return Err(format!("-id {:?} is not a container id", args.id));
    }
    if !valid_id(&args.namespace) {
        return Err(format!("-namespace {:?} is not a namespace", args.namespace));
    }
    Ok(())
}

/// Writes `name` in the bundle (never through a symlink).
fn write_bundle_file(name: &str, text: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(name)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{name}: {e}"))
}

/// `start`: returns the address to print.
pub fn start(args: &Args) -> Result<String, String> {
    use std::os::unix::process::CommandExt;
    check(args)?;
    let nonce = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let socket = socket_path(&args.address, &args.namespace, &args.id, &nonce);
    std::fs::create_dir_all(SOCKET_DIR).map_err(|e| format!("{SOCKET_DIR}: {e}"))?;
    if socket.exists() {
        if UnixStream::connect(&socket).is_ok() {
            return Err(format!("a shim for {} already serves {}", args.id, socket.display()));
        }
        let _ = std::fs::remove_file(&socket);
    }
    // SAFETY: umask only swaps the process's file mode mask; the socket is made owner-only.
    let old = unsafe { libc::umask(0o077) };
    let listener = UnixListener::bind(&socket).map_err(|e| format!("{}: {e}", socket.display()));
    // SAFETY: as above, restoring the mask.
    unsafe { libc::umask(old) };
    let listener = listener?;
    let exe = std::env::current_exe().map_err(|e| format!("own binary: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["-namespace", &args.namespace, "-id", &args.id, "-address", &args.address])
        .env(SOCKET_ENV, &socket)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let fd = listener.as_raw_fd();
    // SAFETY: runs between fork and exec and calls only setsid and dup2 (async-signal-
    // safe) on a descriptor this process owns; dup2 onto fd 3 clears its close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if fd == LISTENER_FD {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(fd, LISTENER_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("start the shim: {e}"))?;
    let address = format!("unix://{}", socket.display());
    // Whole or absent: containerd reads it again after its own restart.
    write_bundle_file(".address", &address)?;
    std::fs::rename(".address", "address").map_err(|e| format!("address: {e}"))?;
    write_bundle_file("shim.pid", &child.id().to_string())?;
    Ok(address)
}

/// The serving process.
pub fn serve(args: &Args) -> Result<(), String> {
    check(args)?;
    // SAFETY: `start` put the listening socket on fd 3 for us and nothing else in this
    // process uses that number; fstat below checks it is a socket before use.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTENER_FD) };
    let st = nix::sys::stat::fstat(&fd).map_err(|e| format!("fd {LISTENER_FD}: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(format!("fd {LISTENER_FD} is not the shim's socket (run by containerd, with `start`)"));
    }
    // `start` cleared close-on-exec for the handover; no runtime or container gets it.
    let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    let listener = UnixListener::from(fd);
    let bundle = std::env::current_dir().map_err(|e| format!("bundle: {e}"))?;
    let ttrpc = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
    let mut shim = Shim::new(args.id.clone(), args.namespace.clone(), bundle, ttrpc);
    shim.log = shim_log(&args.id);
    let result = crate::server::serve(listener, shim);
    if let Some(socket) = std::env::var_os(SOCKET_ENV) {
        let _ = std::fs::remove_file(socket);
    }
    result
}

/// Lines for containerd's log: containerd reads the bundle's `log` FIFO while it runs.
/// Opened read-write and non-blocking, so a write never waits for a reader; a line that
/// does not fit is dropped.
fn shim_log(id: &str) -> Box<dyn FnMut(&str)> {
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open("log")
        .ok()
        .filter(|f| f.metadata().is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type())));
    let id = id.to_string();
    match fifo {
        Some(mut f) => Box::new(move |line| {
            let _ = f.write_all(format!("level=warning msg=\"hoist-shim {id}: {line}\"\n").as_bytes());
        }),
        None => Box::new(|_| {}),
    }
}

/// `delete`: returns the DeleteResponse to print.
pub fn delete(args: &Args) -> Result<Vec<u8>, String> {
    check(args)?;
    let bundle = if args.bundle.is_empty() {
        std::env::current_dir().map_err(|e| format!("bundle: {e}"))?
    } else {
        PathBuf::from(&args.bundle)
    };
    let mut remembered = String::new();
    if let Ok(f) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(bundle.join(RUNTIME_FILE))
    {
        let _ = std::io::Read::read_to_string(&mut std::io::Read::take(f, 4096), &mut remembered);
    }
    let binary = if remembered.is_empty() { runtime_binary(None) } else { PathBuf::from(remembered.trim()) };
    let rt = crate::runtime::Runtime { root: runtime_root(&binary, &args.namespace), binary, bundle: bundle.clone() };
    // containerd runs this after every task's end, too, when the shim has already
    // deleted the container: then the runtime has no state for it and is not run.
    if rt.root.join(&args.id).exists() {
        let mut reaped = Vec::new();
        let _ = rt.run(&["delete", "--force", &args.id], None, &mut reaped);
    }
    crate::mounts::unmount_all(&bundle.join("rootfs"));
    let response = crate::proto::DeleteResponse {
        pid: 0,
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: Some(crate::events::now()),
    };
    Ok(response.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_short_distinct_and_stable() {
        let a = socket_path("/run/containerd/containerd.sock", "hoist", &"x".repeat(76), "1");
        assert!(a.as_os_str().len() < 100, "{}", a.display());
        assert_eq!(a, socket_path("/run/containerd/containerd.sock", "hoist", &"x".repeat(76), "1"));
        assert_ne!(socket_path("a", "hoist", "web", "1"), socket_path("a", "hoist", "web2", "1"));
        assert_ne!(socket_path("a", "ns", "web", "1"), socket_path("a", "ns2", "web", "1"));
        assert_ne!(socket_path("a", "ns", "web", "1"), socket_path("a", "ns", "web", "2"));
    }
}
