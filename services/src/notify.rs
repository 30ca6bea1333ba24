//! The sd_notify protocol for `ready = { notify = true }`: one datagram socket per service
//! under /run/hoist/notify/NAME/, bind-mounted into the container at [`GUEST_DIR`] with
//! NOTIFY_SOCKET pointing at it. The kernel attaches the sender's credentials
//! (SO_PASSCRED), so `READY=1` is accepted only from the service's main process: a child
//! or an exec'd helper cannot declare the service ready.

use std::os::fd::AsRawFd;

use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, bind, recvmsg, setsockopt, socket,
    sockopt,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::core::Input;

pub use hoist_guest::paths::{
    NOTIFY_GUEST_DIR as GUEST_DIR, NOTIFY_HOST_DIR as HOST_DIR, NOTIFY_SOCKET_NAME as SOCKET_NAME,
};

/// Parses `KEY=VALUE` lines of an sd_notify datagram.
pub fn parse(payload: &[u8]) -> (bool, Option<String>) {
    let text = String::from_utf8_lossy(payload);
    let mut ready = false;
    let mut status = None;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => ready = true,
            Some(("STATUS", s)) => status = Some(s.to_string()),
            _ => {}
        }
    }
    (ready, status)
}

pub use hoist_guest::paths::notify_host_dir as host_dir;

/// Binds the service's socket and forwards every `READY=1`, with its sender pid, to `tx`
/// (as [`Input::Notify`]) from a thread (recvmsg with credentials is a blocking call with
/// no tokio wrapper). The core decides whether the sender is the main process.
pub fn listen(service: &str, tx: UnboundedSender<Input>) -> std::io::Result<()> {
    let dir = host_dir(service);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&path);
    let fd = socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::PassCred, &true)?;
    bind(fd.as_raw_fd(), &UnixAddr::new(&path)?)?;
    let service = service.to_string();
    std::thread::Builder::new().name(format!("notify-{service}")).spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let msg = match recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()) {
                Ok(m) => m,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            };
            let pid = msg
                .cmsgs()
                .ok()
                .and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid() as u32),
                        _ => None,
                    })
                })
                .unwrap_or(0);
            let len = msg.bytes;
            let (ready, _status) = parse(&buf[..len]);
            if ready && tx.send(Input::Notify { name: service.clone(), pid }).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_and_status_are_parsed() {
        assert_eq!(parse(b"STATUS=warming up\nREADY=1\n"), (true, Some("warming up".to_string())));
        assert_eq!(parse(b"READY=0"), (false, None));
        assert_eq!(parse(b"WATCHDOG=1"), (false, None));
    }

    #[test]
    fn datagrams_arrive_with_the_senders_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        // listen() uses HOST_DIR; exercise the same socket code on a temp path instead.
        let path = dir.path().join("n.sock");
        let fd = socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).expect("socket");
        setsockopt(&fd, sockopt::PassCred, &true).expect("passcred");
        bind(fd.as_raw_fd(), &UnixAddr::new(&path).expect("addr")).expect("bind");
        let client = std::os::unix::net::UnixDatagram::unbound().expect("client");
        client.send_to(b"READY=1", &path).expect("send");
        let mut buf = [0u8; 64];
        let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).expect("recv");
        let pid = msg.cmsgs().expect("cmsgs").find_map(|c| match c {
            ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid() as u32),
            _ => None,
        });
        assert_eq!(pid, Some(std::process::id()));
    }
}
