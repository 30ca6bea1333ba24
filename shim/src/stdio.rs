//! A process's stdio from the URIs containerd gives: nothing (`""`), a file
//! (`file:///path`), hoist's service log (`hoist-log:DIR?max_size=N`, pipes the shim
//! reads itself: [`crate::logs`]), a log binary (`binary:///path?key=value`, started with
//! the streams on fds 3 and 4 and a readiness pipe on fd 5, the way containerd's own
//! shims do), or a FIFO path made by the client (`ctr`). The descriptors are handed to
//! the OCI runtime, which passes them to the process.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// How long a log binary may take to say it is ready (close fd 5).
const LOGGER_READY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Null,
    File(PathBuf),
    Binary { path: PathBuf, args: Vec<String> },
    Fifo(PathBuf),
    ServiceLog { dir: PathBuf, max_size: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("stdio URI {0:?}: unsupported scheme (file://, binary:// or a FIFO path)")]
    Scheme(String),
    #[error("stdio URI {0:?}: the path must be absolute")]
    Relative(String),
    #[error("{path}: {source}")]
    Open { path: String, source: nix::Error },
    #[error("log binary {path}: {source}")]
    Logger { path: String, source: std::io::Error },
    #[error("log binary {0} did not become ready in {LOGGER_READY:?}")]
    LoggerTimeout(String),
    #[error("pipe: {0}")]
    Pipe(nix::Error),
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse(uri: &str) -> Result<Uri, StdioError> {
    if uri.is_empty() {
        return Ok(Uri::Null);
    }
    if uri.starts_with(hoist_guest::servicelog::SCHEME) {
        let (dir, max_size) =
            hoist_guest::servicelog::parse(uri).ok_or_else(|| StdioError::Relative(uri.to_string()))?;
        return Ok(Uri::ServiceLog { dir, max_size });
    }
    let absolute = |p: &str| {
        let path = PathBuf::from(unescape(p));
        if path.is_absolute() { Ok(path) } else { Err(StdioError::Relative(uri.to_string())) }
    };
    if let Some(rest) = uri.strip_prefix("file://") {
        return absolute(rest).map(Uri::File);
    }
    if let Some(rest) = uri.strip_prefix("binary://") {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut args = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            args.push(unescape(k));
            if !v.is_empty() {
                args.push(unescape(v));
            }
        }
        return Ok(Uri::Binary { path: absolute(path)?, args });
    }
    if let Some(rest) = uri.strip_prefix("fifo://") {
        return absolute(rest).map(Uri::Fifo);
    }
    if uri.contains("://") {
        return Err(StdioError::Scheme(uri.to_string()));
    }
    absolute(uri).map(Uri::Fifo)
}

/// Descriptors for the process's fds 0, 1 and 2.
#[derive(Debug)]
pub struct Fds {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

fn open(path: &std::path::Path, flags: OFlag) -> Result<OwnedFd, StdioError> {
    let flags = flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    nix::fcntl::open(path, flags, Mode::from_bits_truncate(0o640))
        .map_err(|source| StdioError::Open { path: path.display().to_string(), source })
}

fn null() -> Result<OwnedFd, StdioError> {
    open("/dev/null".as_ref(), OFlag::O_RDWR)
}

/// A FIFO opened read-write never blocks for want of a peer; then made blocking again.
fn fifo(path: &std::path::Path) -> Result<OwnedFd, StdioError> {
    let fd = open(path, OFlag::O_RDWR | OFlag::O_NONBLOCK)?;
    let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()));
    Ok(fd)
}

fn output(uri: &Uri) -> Result<OwnedFd, StdioError> {
    match uri {
        Uri::Null | Uri::Binary { .. } | Uri::ServiceLog { .. } => null(),
        Uri::File(path) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            open(path, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND)
        }
        Uri::Fifo(path) => fifo(path),
    }
}

/// Opens what the URIs name. A `binary://` stdout starts its log binary with both
/// streams, as containerd's shims do; a `hoist-log:` stdout makes both streams pipes whose
/// read ends come back for the shim to drain.
pub fn open_all(
    id: &str,
    namespace: &str,
    stdin: &str,
    stdout: &str,
    stderr: &str,
) -> Result<(Fds, Option<crate::logs::LogPipe>), StdioError> {
    let stdin = match parse(stdin)? {
        Uri::Null => null()?,
        Uri::Fifo(path) => fifo(&path)?,
        _ => return Err(StdioError::Scheme(stdin.to_string())),
    };
    let (out_uri, err_uri) = (parse(stdout)?, parse(stderr)?);
    if let Uri::Binary { path, args } = &out_uri {
        let (out, err) = start_logger(path, args, id, namespace)?;
        return Ok((Fds { stdin, stdout: out, stderr: err }, None));
    }
    if let Uri::ServiceLog { dir, max_size } = &out_uri {
        let (pipe, out, err) = crate::logs::LogPipe::new(id, dir, *max_size).map_err(StdioError::Pipe)?;
        return Ok((Fds { stdin, stdout: out, stderr: err }, Some(pipe)));
    }
    Ok((Fds { stdin, stdout: output(&out_uri)?, stderr: output(&err_uri)? }, None))
}

/// Starts the log binary on two new pipes; returns their write ends once it is ready.
fn start_logger(
    path: &std::path::Path,
    args: &[String],
    id: &str,
    namespace: &str,
) -> Result<(OwnedFd, OwnedFd), StdioError> {
    use std::os::unix::process::CommandExt;
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(StdioError::Pipe);
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut cmd = std::process::Command::new(path);
    cmd.args(args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: runs in the child between fork and exec and only calls fcntl and dup2,
    // which are async-signal-safe, on descriptors this process owns. Copying each source
    // above 10 first keeps a source that is already 3, 4 or 5 from being overwritten.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [0; 3];
            for (h, fd) in high.iter_mut().zip(fds) {
                *h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                if *h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (target, fd) in (3..).zip(high) {
                if libc::dup2(fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| StdioError::Logger { path: path.display().to_string(), source })?;
    drop((out_r, err_r, ready_w));
    // Ready when the logger closes its end of the readiness pipe (EOF here).
    let mut ready = File::from(ready_r);
    let deadline = std::time::Instant::now() + LOGGER_READY;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut pfd = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&ready), nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut pfd, ms) {
            Ok(0) => return Err(StdioError::LoggerTimeout(path.display().to_string())),
            Ok(_) => {
                let mut buf = [0u8; 64];
                match std::io::Read::read(&mut ready, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(StdioError::Pipe(e)),
        }
    }
    // Its exit is reaped by the shim's reaper, as an unknown pid.
    drop(child);
    Ok((out_w, err_w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_by_scheme() {
        assert_eq!(parse("").expect("null"), Uri::Null);
        assert_eq!(parse("file:///var/log/x%20y.log").expect("file"), Uri::File("/var/log/x y.log".into()));
        assert_eq!(
            parse("binary:///usr/bin/some-logger?max_size=1024").expect("binary"),
            Uri::Binary { path: "/usr/bin/some-logger".into(), args: vec!["max_size".into(), "1024".into()] }
        );
        assert_eq!(
            parse("/run/containerd/fifo/1/web-stdout").expect("fifo"),
            Uri::Fifo("/run/containerd/fifo/1/web-stdout".into())
        );
        assert_eq!(
            parse("hoist-log:/var/log?max_size=5").expect("service log"),
            Uri::ServiceLog { dir: "/var/log".into(), max_size: 5 }
        );
        assert!(parse("hoist-log:/var/log").is_err());
    }

    #[test]
    fn relative_paths_and_other_schemes_are_refused() {
        assert!(matches!(parse("file://relative/x"), Err(StdioError::Relative(_))));
        assert!(matches!(parse("out.log"), Err(StdioError::Relative(_))));
        assert!(matches!(parse("tcp://1.2.3.4:5"), Err(StdioError::Scheme(_))));
    }

    #[test]
    fn file_outputs_append_and_never_follow_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("sub/out.log");
        let uri = format!("file://{}", log.display());
        let (fds, pipe) = open_all("x", "ns", "", &uri, &uri).expect("open");
        assert!(pipe.is_none());
        nix::unistd::write(&fds.stdout, b"a").expect("write");
        nix::unistd::write(&fds.stderr, b"b").expect("write");
        assert_eq!(std::fs::read_to_string(&log).expect("log"), "ab");
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&log, &link).expect("symlink");
        let uri = format!("file://{}", link.display());
        assert!(open_all("x", "ns", "", &uri, "").is_err());
    }

    #[test]
    fn a_log_binary_gets_both_streams_and_signals_ready() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("logger");
        let out = dir.path().join("got");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec 5>&-\ncat <&3 >{0}.out & cat <&4 >{0}.err; wait\necho \"$CONTAINER_ID $*\" >{0}.env\n",
                out.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let uri = format!("binary://{}?max_size=9", script.display());
        let (fds, pipe) = open_all("web", "hoist", "", &uri, &uri).expect("open");
        assert!(pipe.is_none());
        nix::unistd::write(&fds.stdout, b"o").expect("write");
        nix::unistd::write(&fds.stderr, b"e").expect("write");
        drop(fds);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let env = out.with_extension("env");
        while !env.exists() {
            assert!(std::time::Instant::now() < deadline, "logger never finished");
            std::thread::sleep(Duration::from_millis(20));
        }
        let read = |ext| std::fs::read_to_string(out.with_extension(ext)).expect("read");
        assert_eq!((read("out"), read("err")), ("o".to_string(), "e".to_string()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while read("env").is_empty() {
            assert!(std::time::Instant::now() < deadline, "env never written");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(read("env"), "web max_size 9\n");
    }
}
