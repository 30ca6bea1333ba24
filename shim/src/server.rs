//! The shim's one thread: a poll loop over the listening socket, containerd's
//! connections and a signalfd for SIGCHLD. Requests are handled in order; a Wait is
//! answered when the exit is reaped. The shim is its processes' subreaper and their only
//! reaper.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use prost::Message;

use crate::proto::TASK_SERVICE;
use crate::service::Shim;
use crate::ttrpc::{self, Code, Reader, RpcError, TYPE_REQUEST};

/// containerd keeps one or two connections; more is someone else, and is refused.
const MAX_CONNECTIONS: usize = 16;
/// A peer that does not take its reply within this time is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

struct Conn {
    stream: UnixStream,
    reader: Reader,
}

/// Serves until Shutdown (or the listener fails); then returns.
pub fn serve(listener: UnixListener, mut shim: Shim) -> Result<(), String> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(|e| format!("block SIGCHLD: {e}"))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("signalfd: {e}"))?;
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!("subreaper: {}", std::io::Error::last_os_error()));
    }
    listener.set_nonblocking(true).map_err(|e| format!("listener: {e}"))?;
    let mut conns: BTreeMap<u64, Conn> = BTreeMap::new();
    let mut next_conn = 1u64;
    // Exits that happened before the signal mask was set.
    let mut early = Vec::new();
    crate::runtime::reap(&mut early);
    shim.reaped(early);
    loop {
        flush(&mut shim, &mut conns);
        if shim.exiting {
            for pipe in &mut shim.logs {
                pipe.drain();
            }
            return Ok(());
        }
        shim.logs.retain(|p| !p.is_done());
        let ids: Vec<u64> = conns.keys().copied().collect();
        let (ready_sig, ready_listen, ready_conns, ready_logs) = {
            let mut fds =
                vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN), PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            for id in &ids {
                fds.push(PollFd::new(conns[id].stream.as_fd(), PollFlags::POLLIN));
            }
            let mut log_index = Vec::new();
            for (p, pipe) in shim.logs.iter().enumerate() {
                for (s, fd) in pipe.fds().into_iter().enumerate() {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                    log_index.push((p, s));
                }
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(format!("poll: {e}")),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let conns_end = 2 + ids.len();
            let conns_ready: Vec<u64> =
                ids.iter().zip(&fds[2..conns_end]).filter(|(_, f)| ready(f)).map(|(id, _)| *id).collect();
            let logs_ready: Vec<(usize, usize)> =
                log_index.into_iter().zip(&fds[conns_end..]).filter(|(_, f)| ready(f)).map(|(i, _)| i).collect();
            (ready(&fds[0]), ready(&fds[1]), conns_ready, logs_ready)
        };
        // Later streams first, so that a stream that ends (and is removed) does not shift
        // the index of one still to read.
        for (p, s) in ready_logs.into_iter().rev() {
            if let Some(pipe) = shim.logs.get_mut(p) {
                pipe.read(s);
            }
        }
        if ready_sig {
            while let Ok(Some(_)) = sigfd.read_signal() {}
            let mut exits = Vec::new();
            crate::runtime::reap(&mut exits);
            shim.reaped(exits);
        }
        if ready_listen {
            while let Ok((stream, _)) = listener.accept() {
                if conns.len() >= MAX_CONNECTIONS {
                    (shim.log)("too many connections; one refused");
                    continue;
                }
                let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
                let _ = stream.set_nonblocking(false);
                conns.insert(next_conn, Conn { stream, reader: Reader::default() });
                next_conn += 1;
            }
        }
        for id in ready_conns {
            if !read_conn(id, &mut conns, &mut shim) {
                conns.remove(&id);
                shim.forget(id);
            }
        }
    }
}

/// Reads what one connection sent and handles its whole requests; false when the
/// connection is finished (closed, broken, or speaking nonsense).
fn read_conn(id: u64, conns: &mut BTreeMap<u64, Conn>, shim: &mut Shim) -> bool {
    let Some(conn) = conns.get_mut(&id) else { return false };
    let mut buf = [0u8; 16 * 1024];
    // Readable per poll, so one read does not block.
    let n = match conn.stream.read(&mut buf) {
        Ok(0) | Err(_) => return false,
        Ok(n) => n,
    };
    conn.reader.push(&buf[..n]);
    handle_frames(id, conns, shim)
}

/// Handles the whole requests buffered for `id`, each reply sent before the next
/// request is read; false when the connection must go.
fn handle_frames(id: u64, conns: &mut BTreeMap<u64, Conn>, shim: &mut Shim) -> bool {
    loop {
        let Some(conn) = conns.get_mut(&id) else { return false };
        let frame = match conn.reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return true,
            Err(e) => {
                (shim.log)(&format!("connection dropped: {e}"));
                return false;
            }
        };
        if frame.kind != TYPE_REQUEST {
            continue;
        }
        match ttrpc::Request::decode(frame.payload.as_slice()) {
            Ok(req) if req.service == TASK_SERVICE => shim.handle(id, frame.stream, &req.method, &req.payload),
            Ok(req) => {
                let e = RpcError::new(Code::Unimplemented, format!("service {} is not served here", req.service));
                shim.outbox.push((id, frame.stream, Err(e)));
            }
            Err(e) => shim.outbox.push((
                id,
                frame.stream,
                Err(RpcError::new(Code::InvalidArgument, format!("bad request: {e}"))),
            )),
        }
        flush(shim, conns);
    }
}

/// Sends every reply due; a connection that cannot take one is dropped.
fn flush(shim: &mut Shim, conns: &mut BTreeMap<u64, Conn>) {
    for (id, stream, outcome) in std::mem::take(&mut shim.outbox) {
        let Some(conn) = conns.get_mut(&id) else { continue };
        if conn.stream.write_all(&ttrpc::response(stream, outcome)).is_err() {
            conns.remove(&id);
            shim.forget(id);
        }
    }
}
