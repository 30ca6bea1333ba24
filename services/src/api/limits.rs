//! The control API's limits, each decided here and unit-tested: how many streams (`logs
//! -f`, `events`) may run at once per connection and in all ([`Streams`]), how long an
//! exec may run ([`exec_timeout`]), and how binding the TCP port is retried
//! ([`bind_delay`]). A stream past its cap is refused as `ResourceExhausted`; it holds
//! its slot until the stream ends (the client going away ends it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::Status;

/// Streams at once from one connection.
pub const STREAMS_PER_CONNECTION: usize = 4;
/// Streams at once in all.
pub const STREAMS_TOTAL: usize = 32;
/// An exec's timeout when the request sets none.
pub const EXEC_DEFAULT: Duration = Duration::from_secs(30);
/// The longest timeout an exec may ask for.
pub const EXEC_MAX: Duration = Duration::from_secs(600);

/// The exec timeout a request asks for (0: [`EXEC_DEFAULT`]); more than [`EXEC_MAX`]
/// is refused rather than quietly cut.
pub fn exec_timeout(secs: u32) -> Result<Duration, Status> {
    let asked = if secs == 0 { EXEC_DEFAULT } else { Duration::from_secs(secs.into()) };
    if asked > EXEC_MAX {
        return Err(Status::invalid_argument(format!(
            "exec timeout {secs} s is over the cap of {} s",
            EXEC_MAX.as_secs()
        )));
    }
    Ok(asked)
}

/// The wait before bind attempt `attempt + 1`: 1 s, doubling, at most 30 s.
pub fn bind_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64.checked_shl(attempt).unwrap_or(u64::MAX).min(30))
}

/// Counts the open streams, per connection (its peer address; the Unix socket's
/// connections share one count) and in all.
#[derive(Debug, Clone)]
pub struct Streams {
    open: Arc<Mutex<Count>>,
    per_connection: usize,
    total: usize,
}

#[derive(Debug, Default)]
struct Count {
    by_peer: HashMap<Option<SocketAddr>, usize>,
    total: usize,
}

/// One open stream; its slot is given back when dropped.
#[derive(Debug)]
pub struct Slot {
    open: Arc<Mutex<Count>>,
    peer: Option<SocketAddr>,
}

impl Streams {
    pub fn new(per_connection: usize, total: usize) -> Self {
        Streams { open: Arc::default(), per_connection, total }
    }

    /// A slot for a new stream from `peer`, or `ResourceExhausted` naming the cap.
    pub fn open(&self, peer: Option<SocketAddr>) -> Result<Slot, Status> {
        let mut count = self.open.lock().map_err(|_| Status::internal("stream count poisoned"))?;
        let mine = count.by_peer.get(&peer).copied().unwrap_or(0);
        if mine >= self.per_connection {
            return Err(Status::resource_exhausted(format!(
                "{mine} streams open on this connection (at most {}); close one first",
                self.per_connection
            )));
        }
        if count.total >= self.total {
            return Err(Status::resource_exhausted(format!(
                "{} streams open on this host (at most {}); try again later",
                count.total, self.total
            )));
        }
        count.total += 1;
        *count.by_peer.entry(peer).or_default() += 1;
        Ok(Slot { open: self.open.clone(), peer })
    }

    /// Streams open now.
    pub fn total(&self) -> usize {
        self.open.lock().map(|c| c.total).unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut count) = self.open.lock() {
            count.total = count.total.saturating_sub(1);
            if let Some(n) = count.by_peer.get_mut(&self.peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    count.by_peer.remove(&self.peer);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([10, 0, 2, 2], port)))
    }

    #[test]
    fn streams_are_capped_per_connection_and_in_all() {
        let streams = Streams::new(2, 3);
        let a1 = streams.open(addr(1)).expect("first");
        let _a2 = streams.open(addr(1)).expect("second");
        let err = streams.open(addr(1)).expect_err("third on one connection");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("at most 2"), "{}", err.message());
        let _b1 = streams.open(addr(2)).expect("another connection");
        let err = streams.open(None).expect_err("over the total");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("on this host (at most 3)"), "{}", err.message());
        drop(a1);
        assert_eq!(streams.total(), 2);
        let _a3 = streams.open(addr(1)).expect("a closed stream gives its slot back");
        assert!(streams.open(addr(3)).is_err());
    }

    #[test]
    fn exec_timeouts_default_and_are_capped() {
        assert_eq!(exec_timeout(0).expect("default"), EXEC_DEFAULT);
        assert_eq!(exec_timeout(600).expect("the cap"), Duration::from_secs(600));
        let err = exec_timeout(601).expect_err("over");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(exec_timeout(u32::MAX).is_err());
    }

    #[test]
    fn binding_is_retried_with_capped_backoff() {
        let waits: Vec<u64> = (0..8).map(|a| bind_delay(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(bind_delay(u32::MAX), Duration::from_secs(30));
    }
}
