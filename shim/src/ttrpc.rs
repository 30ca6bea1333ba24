//! ttrpc's wire format, as containerd speaks it to its shims: frames of a 10-byte header
//! (payload length and stream id, both big-endian u32, then the message type and flags)
//! and a protobuf payload. A request names the service and method and carries the
//! method's own message; a response carries a status and the reply. Pure: bytes in,
//! frames out, so the codec is tested without a socket.

use prost::Message;

/// The header: length (4), stream id (4), type (1), flags (1).
pub const HEADER_LEN: usize = 10;
/// ttrpc's own limit on one message; a peer that claims more is cut off.
pub const MAX_MESSAGE: usize = 4 << 20;

pub const TYPE_REQUEST: u8 = 1;
pub const TYPE_RESPONSE: u8 = 2;

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Request {
    #[prost(string, tag = "1")]
    pub service: String,
    #[prost(string, tag = "2")]
    pub method: String,
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    #[prost(int64, tag = "4")]
    pub timeout_nano: i64,
    #[prost(message, repeated, tag = "5")]
    pub metadata: Vec<KeyValue>,
}

/// google.rpc.Status.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Response {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
}

/// gRPC status codes containerd maps back to its error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unknown = 2,
    InvalidArgument = 3,
    NotFound = 5,
    AlreadyExists = 6,
    FailedPrecondition = 9,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

/// A method's failure, as the peer will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: Code,
    pub message: String,
}

impl RpcError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub stream: u32,
    pub kind: u8,
    pub flags: u8,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("message of {0} bytes is over ttrpc's limit")]
    TooLarge(usize),
}

/// Accumulates bytes from a stream and hands out whole frames.
#[derive(Default)]
pub struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one has arrived. A frame that claims more than
    /// [`MAX_MESSAGE`] is an error before its payload is read: the connection is dropped.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_MESSAGE {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let stream = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
        let (kind, flags) = (self.buf[8], self.buf[9]);
        let payload = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        if self.buf.capacity() > 64 * 1024 && self.buf.is_empty() {
            self.buf = Vec::new();
        }
        Ok(Some(Frame { stream, kind, flags, payload }))
    }
}

/// One frame on the wire.
pub fn encode(stream: u32, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(payload);
    out
}

/// The response frame to `stream`: the reply, or the error as a status.
pub fn response(stream: u32, result: Result<Vec<u8>, RpcError>) -> Vec<u8> {
    let response = match result {
        Ok(payload) => Response { status: Some(Status { code: 0, ..Default::default() }), payload },
        Err(e) => Response {
            status: Some(Status { code: e.code as i32, message: e.message, details: Vec::new() }),
            payload: Vec::new(),
        },
    };
    encode(stream, TYPE_RESPONSE, &response.encode_to_vec())
}

/// A request frame (for the events we send containerd).
pub fn request(stream: u32, service: &str, method: &str, payload: Vec<u8>) -> Vec<u8> {
    let request = Request { service: service.into(), method: method.into(), payload, ..Default::default() };
    encode(stream, TYPE_REQUEST, &request.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_come_out_whole() {
        let wire = request(1, "containerd.task.v2.Task", "State", vec![1, 2, 3]);
        let mut r = Reader::default();
        for byte in &wire[..wire.len() - 1] {
            r.push(std::slice::from_ref(byte));
            assert_eq!(r.next_frame(), Ok(None));
        }
        r.push(&wire[wire.len() - 1..]);
        let frame = r.next_frame().expect("frame").expect("whole");
        assert_eq!((frame.stream, frame.kind), (1, TYPE_REQUEST));
        let req = Request::decode(frame.payload.as_slice()).expect("request");
        assert_eq!(
            (req.service.as_str(), req.method.as_str(), req.payload),
            ("containerd.task.v2.Task", "State", vec![1, 2, 3])
        );
        assert_eq!(r.next_frame(), Ok(None));
    }

    #[test]
    fn two_frames_in_one_read() {
        let mut wire = encode(3, TYPE_REQUEST, b"a");
        wire.extend(encode(5, TYPE_REQUEST, b"bc"));
        let mut r = Reader::default();
        r.push(&wire);
        assert_eq!(r.next_frame().expect("ok").map(|f| (f.stream, f.payload)), Some((3, b"a".to_vec())));
        assert_eq!(r.next_frame().expect("ok").map(|f| (f.stream, f.payload)), Some((5, b"bc".to_vec())));
    }

    #[test]
    fn a_claimed_length_over_the_limit_is_refused_before_reading_it() {
        let mut r = Reader::default();
        r.push(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0]);
        assert_eq!(r.next_frame(), Err(FrameError::TooLarge(0x7fff_ffff)));
    }

    #[test]
    fn errors_travel_as_a_status_with_no_payload() {
        let wire = response(7, Err(RpcError::new(Code::NotFound, "process x: not found")));
        assert_eq!(&wire[4..10], &[0, 0, 0, 7, TYPE_RESPONSE, 0]);
        let resp = Response::decode(&wire[HEADER_LEN..]).expect("response");
        let status = resp.status.expect("status");
        assert_eq!((status.code, status.message.as_str()), (5, "process x: not found"));
        let ok = Response::decode(&response(9, Ok(vec![8]))[HEADER_LEN..]).expect("response");
        assert_eq!((ok.status.map(|s| s.code), ok.payload), (Some(0), vec![8]));
    }
}
