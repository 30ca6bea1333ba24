//! Task events to containerd, over its ttrpc socket (`TTRPC_ADDRESS`), the way its own
//! shims forward them. Best effort: an event that cannot be sent now is dropped and
//! logged. Nothing in hoist depends on them (the supervisor asks containerd for exits
//! and watches pids itself); they keep `ctr events` and other subscribers informed.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use prost::Message;

use crate::proto::{EVENTS_SERVICE, Envelope, Event, ForwardRequest};

#[derive(Debug)]
pub struct Publisher {
    address: String,
    namespace: String,
    conn: Option<UnixStream>,
    stream: u32,
}

pub fn now() -> prost_types::Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

/// The Forward request that carries `event`.
pub fn forward(namespace: &str, event: Event) -> Vec<u8> {
    let envelope = Envelope {
        timestamp: Some(now()),
        namespace: namespace.to_string(),
        topic: event.topic.to_string(),
        event: Some(event.event),
    };
    ForwardRequest { envelope: Some(envelope) }.encode_to_vec()
}

impl Publisher {
    pub fn new(address: String, namespace: String) -> Self {
        Publisher { address: address.trim_start_matches("unix://").to_string(), namespace, conn: None, stream: 1 }
    }

    fn connect(&mut self) -> std::io::Result<&mut UnixStream> {
        if self.conn.is_none() {
            let s = UnixStream::connect(&self.address)?;
            s.set_write_timeout(Some(Duration::from_secs(2)))?;
            s.set_nonblocking(false)?;
            self.conn = Some(s);
        }
        self.conn.as_mut().ok_or_else(|| std::io::Error::other("no connection"))
    }

    /// Sends `event`; on a broken connection, reconnects once. Replies are read and
    /// dropped so they never fill the socket.
    pub fn publish(&mut self, event: Event) -> Result<(), String> {
        if self.address.is_empty() {
            return Ok(());
        }
        let payload = forward(&self.namespace, event);
        for _ in 0..2 {
            let stream = self.stream;
            self.stream = self.stream.wrapping_add(2) | 1;
            let frame = crate::ttrpc::request(stream, EVENTS_SERVICE, "Forward", payload.clone());
            let sent = self.connect().and_then(|s| s.write_all(&frame));
            match sent {
                Ok(()) => {
                    self.drain();
                    return Ok(());
                }
                Err(_) => self.conn = None,
            }
        }
        Err(format!("events: {} does not answer", self.address))
    }

    fn drain(&mut self) {
        let Some(s) = &self.conn else { return };
        let mut buf = [0u8; 4096];
        loop {
            match nix::sys::socket::recv(
                std::os::fd::AsRawFd::as_raw_fd(s),
                &mut buf,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => {
                    self.conn = None;
                    return;
                }
                Ok(_) => continue,
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::TaskExit;

    #[test]
    fn an_event_reaches_the_events_service_as_a_forward_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ttrpc.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let mut p = Publisher::new(format!("unix://{}", path.display()), "hoist".into());
        let exit =
            TaskExit { container_id: "web".into(), id: "web".into(), pid: 7, exit_status: 3, exited_at: Some(now()) };
        p.publish(Event::exit(exit.clone())).expect("publish");
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut reader = crate::ttrpc::Reader::default();
        let frame = loop {
            let mut buf = [0u8; 1024];
            let n = std::io::Read::read(&mut conn, &mut buf).expect("read");
            assert!(n > 0, "closed before a whole frame");
            reader.push(&buf[..n]);
            if let Some(f) = reader.next_frame().expect("frame") {
                break f;
            }
        };
        let req = crate::ttrpc::Request::decode(frame.payload.as_slice()).expect("request");
        assert_eq!((req.service.as_str(), req.method.as_str(), frame.stream % 2), (EVENTS_SERVICE, "Forward", 1));
        let env = ForwardRequest::decode(req.payload.as_slice()).expect("forward").envelope.expect("envelope");
        assert_eq!((env.namespace.as_str(), env.topic.as_str()), ("hoist", "/tasks/exit"));
        let any = env.event.expect("event");
        assert_eq!(any.type_url, "containerd.events.TaskExit");
        assert_eq!(TaskExit::decode(any.value.as_slice()).expect("exit"), exit);
    }
}
