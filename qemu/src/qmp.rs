//! One QMP connection: handshake, then a reader thread that routes replies by `id` and
//! records events; commands are serialized by the writer's mutex.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::QemuError;

/// An asynchronous QMP event, as QEMU sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// e.g. `SHUTDOWN`, `POWERDOWN`, `RESET`, `STOP`
    pub name: String,
    /// The event's `data` object (`Value::Null` when it has none).
    pub data: Value,
}

type Reply = Result<Value, (String, String)>;

#[derive(Default)]
struct State {
    replies: HashMap<u64, Reply>,
    events: Vec<QmpEvent>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) struct Qmp {
    path: PathBuf,
    writer: Mutex<UnixStream>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

impl Qmp {
    /// Reads the greeting, negotiates capabilities before `deadline`, and starts the reader.
    pub(crate) fn handshake(path: &Path, stream: UnixStream, deadline: Instant) -> Result<Qmp, QemuError> {
        let io = |source| QemuError::QmpIo { path: path.to_path_buf(), cause: source };
        let protocol = |detail: String| QemuError::QmpProtocol { path: path.to_path_buf(), detail };
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left)).map_err(io)?;
        let mut reader = BufReader::new(stream.try_clone().map_err(io)?);
        let mut writer = stream;

        let greeting = read_message(&mut reader).map_err(io)?;
        if greeting.get("QMP").is_none() {
            return Err(protocol(format!("expected a greeting, got {greeting}")));
        }
        writeln!(writer, "{}", json!({"execute": "qmp_capabilities", "id": 0})).map_err(io)?;
        let reply = read_message(&mut reader).map_err(io)?;
        if reply.get("return").is_none() {
            return Err(protocol(format!("qmp_capabilities: {reply}")));
        }
        writer.set_read_timeout(None).map_err(io)?;

        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        std::thread::Builder::new().name("qemu-qmp".into()).spawn(move || read_loop(reader, &s)).map_err(io)?;
        Ok(Qmp { path: path.to_path_buf(), writer: Mutex::new(writer), shared, next_id: AtomicU64::new(1) })
    }

    /// Runs one command and returns its `return` value.
    pub(crate) fn execute(&self, command: &str, args: Option<Value>, timeout: Duration) -> Result<Value, QemuError> {
        let closed = || QemuError::QmpClosed { command: command.to_string() };
        // Held until the reply arrives: one command at a time.
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"execute": command, "id": id});
        if let Some(args) = args {
            msg["arguments"] = args;
        }
        if self.shared.lock().closed {
            return Err(closed());
        }
        if let Err(source) = writeln!(writer, "{msg}") {
            return Err(match source.kind() {
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => closed(),
                _ => QemuError::QmpIo { path: self.path.clone(), cause: source },
            });
        }
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(reply) = state.replies.remove(&id) {
                return reply.map_err(|(class, desc)| QemuError::QmpCommand {
                    command: command.to_string(),
                    class,
                    desc,
                });
            }
            if state.closed {
                return Err(closed());
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(QemuError::Timeout {
                    what: format!("the reply to QMP {command}"),
                    after: timeout,
                    tail: String::new(),
                });
            };
            state = self.shared.cond.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    pub(crate) fn events(&self) -> Vec<QmpEvent> {
        self.shared.lock().events.clone()
    }

    /// The `reason` of the last `SHUTDOWN` event.
    pub(crate) fn shutdown_reason(&self) -> Option<String> {
        let state = self.shared.lock();
        let event = state.events.iter().rev().find(|e| e.name == "SHUTDOWN")?;
        Some(event.data.get("reason").and_then(Value::as_str).unwrap_or("unknown").to_string())
    }

    /// Waits until QEMU has closed the connection (it does when it exits), so every event it
    /// sent has been recorded; false if `deadline` passed first.
    pub(crate) fn wait_closed(&self, deadline: Instant) -> bool {
        let mut state = self.shared.lock();
        loop {
            if state.closed {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            state = self.shared.cond.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

fn read_message(reader: &mut impl BufRead) -> std::io::Result<Value> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

fn read_loop(mut reader: impl BufRead, shared: &Shared) {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("QMP read: {e}");
                break;
            }
        }
        let msg: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("QMP: unparsable message {line:?}: {e}");
                continue;
            }
        };
        dispatch(msg, &mut shared.lock());
        shared.cond.notify_all();
    }
    shared.lock().closed = true;
    shared.cond.notify_all();
}

fn dispatch(msg: Value, state: &mut State) {
    if let Some(name) = msg.get("event").and_then(Value::as_str) {
        log::debug!("QMP event {msg}");
        let data = msg.get("data").cloned().unwrap_or(Value::Null);
        state.events.push(QmpEvent { name: name.to_string(), data });
        return;
    }
    let Some(id) = msg.get("id").and_then(Value::as_u64) else {
        log::warn!("QMP: message without id or event: {msg}");
        return;
    };
    let reply = if let Some(ret) = msg.get("return") {
        Ok(ret.clone())
    } else {
        let err = msg.get("error");
        let field = |k: &str| err.and_then(|e| e.get(k)).and_then(Value::as_str).unwrap_or("?").to_string();
        Err((field("class"), field("desc")))
    };
    state.replies.insert(id, reply);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A scripted QMP peer: answers by `id`, emits a SHUTDOWN event, then hangs up.
    fn fake_qemu(listener: UnixListener) -> std::thread::JoinHandle<Vec<Value>> {
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut w = stream;
            let mut seen = Vec::new();
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).expect("greet");
            for _ in 0..4 {
                let msg = read_message(&mut reader).expect("command");
                let id = msg["id"].clone();
                match msg["execute"].as_str() {
                    Some("qmp_capabilities" | "query-status") => {
                        writeln!(w, "{}", json!({"return": {"status": "running"}, "id": id})).expect("reply");
                    }
                    Some("system_powerdown") => {
                        writeln!(w, r#"{{"event": "POWERDOWN", "timestamp": {{}}}}"#).expect("event");
                        writeln!(w, "{}", json!({"return": {}, "id": id})).expect("reply");
                        writeln!(
                            w,
                            r#"{{"event": "SHUTDOWN", "data": {{"guest": true, "reason": "guest-shutdown"}}}}"#
                        )
                        .expect("event");
                    }
                    _ => writeln!(w, "{}", json!({"error": {"class": "CommandNotFound", "desc": "nope"}, "id": id}))
                        .expect("reply"),
                }
                seen.push(msg);
            }
            seen
        })
    }

    #[test]
    fn replies_events_and_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("qmp.sock");
        let peer = fake_qemu(UnixListener::bind(&path).expect("bind"));
        let stream = UnixStream::connect(&path).expect("connect");
        let qmp = Qmp::handshake(&path, stream, Instant::now() + Duration::from_secs(10)).expect("handshake");
        let t = Duration::from_secs(10);

        assert_eq!(qmp.execute("query-status", None, t).expect("status")["status"], "running");
        let err = qmp.execute("bogus", Some(json!({"x": 1})), t).expect_err("unknown command");
        assert_eq!(err.to_string(), "QMP bogus: CommandNotFound: nope");
        qmp.execute("system_powerdown", None, t).expect("powerdown");

        let seen = peer.join().expect("peer");
        assert_eq!(seen[2]["arguments"], json!({"x": 1}));
        assert!(qmp.wait_closed(Instant::now() + t));
        assert_eq!(qmp.shutdown_reason().as_deref(), Some("guest-shutdown"));
        let names: Vec<_> = qmp.events().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["POWERDOWN", "SHUTDOWN"]);
        assert!(matches!(qmp.execute("cont", None, t), Err(QemuError::QmpClosed { .. })));
    }
}
