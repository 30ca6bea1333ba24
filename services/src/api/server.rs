//! The control API server. Handlers are thin: validate, ask the supervisor's state owner
//! through [`Cmd`] (or containerd, for exec), map errors in one place ([`to_status`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hoist_guest::pki;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::auth::{AuthLayer, Caller, Revocations, audit, audit_as};
use crate::containerd::Containerd;
use crate::core::{Command, Event, Refused, ServiceView};
use hoist_api::pb::{self, control_server::Control, control_server::ControlServer};

/// What the API asks the supervisor's state owner (the driver, which asks the core).
#[derive(Debug)]
pub enum Cmd {
    Status(oneshot::Sender<pb::StatusReply>),
    Describe(String, oneshot::Sender<Result<pb::ServiceDetail, Refused>>),
    /// Start, stop or restart.
    Act(Command, oneshot::Sender<Result<String, Refused>>),
    /// The process JSON to exec with, if the service runs.
    ExecPlan(String, oneshot::Sender<Result<Vec<u8>, Refused>>),
    Timeline(oneshot::Sender<Vec<(String, u64)>>),
    /// What a config would change.
    Plan(Box<pb::ApplyRequest>, oneshot::Sender<Result<pb::PlanReply, Status>>),
    /// Roll a config out.
    Apply(Box<pb::ApplyRequest>, oneshot::Sender<Result<Rollout, Status>>),
    /// Roll back to a generation (none: the one before), or the tentative one back.
    Rollback(Option<u64>, oneshot::Sender<Result<Rollout, Status>>),
    History(oneshot::Sender<pb::HistoryReply>),
    /// The generation being applied or tentative, if any.
    Busy(oneshot::Sender<Option<u64>>),
}

/// A rollout under way: its generation, its plan, and its progress (none when there is
/// nothing to change).
#[derive(Debug)]
pub struct Rollout {
    pub generation: u64,
    pub plan: pb::PlanReply,
    pub progress: Option<broadcast::Receiver<pb::ApplyProgress>>,
}

/// The end of a rollout, for the stream that follows it.
fn is_final(p: &pb::ApplyProgress) -> bool {
    p.service.is_empty() && crate::core::FINAL_KINDS.contains(&p.kind.as_str())
}

/// The plan, then the rollout's progress until its end.
fn follow(r: Rollout) -> Stream_<pb::ApplyProgress> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let generation = r.generation;
        let first = pb::ApplyProgress { generation, kind: "plan".into(), plan: Some(r.plan), ..Default::default() };
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        let Some(mut sub) = r.progress else {
            let done = pb::ApplyProgress {
                generation,
                kind: "done".into(),
                detail: "nothing to change".into(),
                ..Default::default()
            };
            let _ = tx.send(Ok(done)).await;
            return;
        };
        loop {
            let p = match sub.recv().await {
                Ok(p) if p.generation == generation => p,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // The end may be among what was dropped: say so rather than wait forever.
                    let lost =
                        format!("{n} progress messages dropped (too slow); `hoist ctl history` shows the outcome");
                    let _ = tx.send(Err(Status::data_loss(lost))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let last = is_final(&p);
            // A client gone does not stop the rollout; only this stream ends.
            if tx.send(Ok(p)).await.is_err() || last {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// How long a handler waits for the state owner's answer.
const ASK_DEADLINE: Duration = Duration::from_secs(5);
/// Largest exec output returned; the rest is cut and the reply says so.
pub const EXEC_OUTPUT_MAX: u64 = 1 << 20;

/// The one place refusals become gRPC codes.
pub fn to_status(e: Refused) -> Status {
    match e {
        Refused::NoService(_) => Status::not_found(e.to_string()),
        Refused::Conflict(_) => Status::failed_precondition(e.to_string()),
        Refused::Unavailable(_) => Status::unavailable(e.to_string()),
        Refused::Invalid(_) => Status::invalid_argument(e.to_string()),
        Refused::Busy(_) => Status::aborted(e.to_string()),
    }
}

pub fn to_pb(v: ServiceView) -> pb::ServiceStatus {
    pb::ServiceStatus {
        name: v.name,
        state: v.state.to_string(),
        pid: v.pid,
        restarts: v.restarts,
        last_exit: v.last_exit.map(i64::from).unwrap_or(-1),
        uptime_ms: v.uptime_ms,
        ready: v.ready,
        waiting_for: v.waiting_for,
        reason: v.reason,
    }
}

pub fn event_to_pb(e: Event) -> pb::Event {
    pb::Event { uptime_ms: e.uptime_ms, service: e.service, kind: e.kind.to_string(), detail: e.detail }
}

#[derive(Clone)]
pub struct ControlService {
    cmds: mpsc::UnboundedSender<Cmd>,
    events: broadcast::Sender<pb::Event>,
    /// Set once containerd answers (exec needs it); the API serves before that.
    client: Arc<OnceLock<Containerd>>,
    exec_seq: Arc<AtomicU64>,
    library: Arc<crate::images::Library>,
    /// Uploads at once, and the bytes they announced.
    uploads: Arc<tokio::sync::Semaphore>,
    reserved: Arc<AtomicU64>,
    /// Open `logs -f` and `events` streams.
    streams: super::limits::Streams,
    /// The client certificates refused: the build's list and what applies added.
    revocations: Revocations,
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl ControlService {
    pub fn new(
        cmds: mpsc::UnboundedSender<Cmd>,
        events: broadcast::Sender<pb::Event>,
        client: Arc<OnceLock<Containerd>>,
        library: Arc<crate::images::Library>,
    ) -> Self {
        ControlService {
            cmds,
            events,
            client,
            exec_seq: Arc::new(AtomicU64::new(0)),
            library,
            uploads: Arc::new(tokio::sync::Semaphore::new(super::blobs::MAX_UPLOADS)),
            reserved: Arc::new(AtomicU64::new(0)),
            streams: super::limits::Streams::new(super::limits::STREAMS_PER_CONNECTION, super::limits::STREAMS_TOTAL),
            revocations: Revocations::load(
                &Path::new(hoist_api::TLS_DIR).join(pki::REVOKED),
                Path::new(hoist_guest::paths::REVOKED_APPLIED),
            ),
        }
    }

    /// Asks the state owner, within [`ASK_DEADLINE`].
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(make(tx)).map_err(|_| Status::unavailable("supervisor is shutting down"))?;
        match tokio::time::timeout(ASK_DEADLINE, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(Status::unavailable("supervisor is shutting down")),
            Err(_) => Err(Status::unavailable(format!("supervisor did not answer within {ASK_DEADLINE:?}"))),
        }
    }

    async fn action(&self, command: Command) -> Result<Response<pb::ActionReply>, Status> {
        let message = self.ask(|tx| Cmd::Act(command, tx)).await?.map_err(to_status)?;
        Ok(Response::new(pb::ActionReply { message }))
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusReply>, Status> {
        Ok(Response::new(self.ask(Cmd::Status).await?))
    }

    async fn describe(&self, r: Request<pb::ServiceRequest>) -> Result<Response<pb::ServiceDetail>, Status> {
        let name = r.into_inner().name;
        Ok(Response::new(self.ask(|tx| Cmd::Describe(name, tx)).await?.map_err(to_status)?))
    }

    async fn start(&self, r: Request<pb::ServiceRequest>) -> Result<Response<pb::ActionReply>, Status> {
        audit(&r, &r.get_ref().name);
        self.action(Command::Start(r.into_inner().name)).await
    }

    async fn stop(&self, r: Request<pb::ServiceRequest>) -> Result<Response<pb::ActionReply>, Status> {
        audit(&r, &r.get_ref().name);
        self.action(Command::Stop(r.into_inner().name)).await
    }

    async fn restart(&self, r: Request<pb::ServiceRequest>) -> Result<Response<pb::ActionReply>, Status> {
        audit(&r, &r.get_ref().name);
        self.action(Command::Restart(r.into_inner().name)).await
    }

    type LogsStream = Stream_<pb::LogLine>;

    async fn logs(&self, r: Request<pb::LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let peer = r.remote_addr();
        let req = r.into_inner();
        // Only a follow stays open; a tail ends by itself.
        let slot = if req.follow { Some(self.streams.open(peer)?) } else { None };
        let (tx, rx) = mpsc::channel(256);
        let tail = req.tail as usize;
        if req.boot != 0 && (req.follow || req.source == "kernel") {
            return Err(Status::invalid_argument("an earlier boot's log is read whole: no follow, no kernel source"));
        }
        if req.source == "kernel" {
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                super::logs::stream_kernel(tail, req.follow, tx)
            });
        } else {
            let dir = super::logs::dir_of_boot(Path::new(hoist_guest::paths::LOG_BOOTS), req.boot)
                .map_err(|e| Status::not_found(e.to_string()))?;
            let path = super::logs::file_of(&dir, &req.source).map_err(|e| Status::not_found(e.to_string()))?;
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                super::logs::stream_file(path, req.source, tail, req.follow, tx)
            });
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type EventsStream = Stream_<pb::Event>;

    async fn events(&self, r: Request<pb::EventsRequest>) -> Result<Response<Self::EventsStream>, Status> {
        let slot = self.streams.open(r.remote_addr())?;
        let mut sub = self.events.subscribe();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let _slot = slot;
            loop {
                let next = tokio::select! {
                    // A client gone frees its slot now, not at the next event.
                    _ = tx.closed() => return,
                    next = sub.recv() => next,
                };
                let item = match next {
                    Ok(e) => Ok(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Err(Status::data_loss(format!("{n} events dropped: too slow")))
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn exec(&self, r: Request<pb::ExecRequest>) -> Result<Response<pb::ExecReply>, Status> {
        audit(&r, &r.get_ref().service);
        let req = r.into_inner();
        if req.command.is_empty() {
            return Err(to_status(Refused::Invalid("exec needs a command".into())));
        }
        let timeout = super::limits::exec_timeout(req.timeout_secs)?;
        let name = req.service.clone();
        let base = self.ask(|tx| Cmd::ExecPlan(name, tx)).await?.map_err(to_status)?;
        let process =
            crate::exec::process_with_args(&base, &req.command).map_err(|e| Status::internal(e.to_string()))?;
        let client = self.client.get().ok_or_else(|| Status::unavailable("containerd is not answering yet"))?;
        let id = format!("ctl-{}", self.exec_seq.fetch_add(1, Ordering::Relaxed));
        let dir = Path::new(hoist_guest::paths::EXEC_DIR);
        let _ = std::fs::create_dir_all(dir);
        // containerd's shim copies both streams of a file:// stdio into one file, each in
        // its own order (two copiers: the order between the streams is not kept).
        let out = dir.join(format!("{id}.out"));
        let uri = format!("file://{}", out.display());
        let status = client.exec(&req.service, &id, process, &uri, &uri, timeout).await;
        let output = read_capped(&out, EXEC_OUTPUT_MAX);
        let _ = std::fs::remove_file(&out);
        let status = status.map_err(|e| match e {
            crate::containerd::ClientError::Timeout { .. } => Status::deadline_exceeded(e.to_string()),
            e => Status::failed_precondition(e.to_string()),
        })?;
        let (stdout, truncated) = output.map_err(|e| Status::internal(format!("{}: {e}", out.display())))?;
        Ok(Response::new(pb::ExecReply { exit_code: status as i32, stdout, stderr: Vec::new(), truncated }))
    }

    async fn shutdown(&self, r: Request<pb::ShutdownRequest>) -> Result<Response<pb::ActionReply>, Status> {
        use hoist_guest::signals::Action;
        use nix::sys::signal::{Signal, kill};
        audit(&r, if r.get_ref().reboot { "reboot" } else { "power-off" });
        let reboot = r.into_inner().reboot;
        // PID 1 owns the machine's shutdown; we ask it with its signal protocol.
        let action = if reboot { Action::Reboot } else { Action::PowerOff };
        let sig = Signal::try_from(action.signal()).map_err(|e| Status::internal(format!("signal PID 1: {e}")))?;
        kill(nix::unistd::Pid::from_raw(1), sig).map_err(|e| Status::internal(format!("signal PID 1: {e}")))?;
        Ok(Response::new(pb::ActionReply { message: if reboot { "rebooting".into() } else { "powering off".into() } }))
    }

    async fn plan(&self, r: Request<pb::ApplyRequest>) -> Result<Response<pb::PlanReply>, Status> {
        let req = Box::new(r.into_inner());
        Ok(Response::new(self.ask(|tx| Cmd::Plan(req, tx)).await??))
    }

    type ApplyStream = Stream_<pb::ApplyProgress>;

    async fn apply(&self, r: Request<pb::ApplyRequest>) -> Result<Response<Self::ApplyStream>, Status> {
        audit(&r, &crate::generations::digest(&r.get_ref().config));
        let req = Box::new(r.into_inner());
        // What is cheap to refuse is refused before any image is unpacked.
        let config = hoist_config::parse(&req.config, crate::candidate::file_name(&req.file))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Revocations take effect now, whatever becomes of the rollout.
        let added = self.revocations.add(&req.revoked)?;
        if added > 0 {
            crate::say(&format!("control API: {added} client certificates revoked by apply"));
        }
        if let Some(g) = self.ask(Cmd::Busy).await? {
            return Err(Status::aborted(format!(
                "generation {g} is being applied or is tentative; one apply at a time"
            )));
        }
        // Images sent for this apply are unpacked first; the rollout needs them all. They
        // are pinned against collection until the core has taken the generation.
        let manifests: BTreeMap<String, String> = req.manifests.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let names = image_names(&config, &req.images);
        let pinned: std::collections::BTreeSet<String> = req.images.values().cloned().collect();
        self.library.pin(&pinned);
        let started = async {
            self.library.ensure(&manifests, &names).await.map_err(Status::invalid_argument)?;
            self.ask(|tx| Cmd::Apply(req, tx)).await?
        };
        let started = started.await;
        self.library.unpin(&pinned);
        Ok(Response::new(follow(started?)))
    }

    async fn confirm(&self, r: Request<pb::ConfirmRequest>) -> Result<Response<pb::ActionReply>, Status> {
        audit(&r, "");
        self.action(Command::Confirm).await
    }

    type RollbackStream = Stream_<pb::ApplyProgress>;

    async fn rollback(&self, r: Request<pb::RollbackRequest>) -> Result<Response<Self::RollbackStream>, Status> {
        audit(&r, &r.get_ref().generation.map(|g| g.to_string()).unwrap_or_default());
        let target = r.into_inner().generation;
        Ok(Response::new(follow(self.ask(|tx| Cmd::Rollback(target, tx)).await??)))
    }

    async fn history(&self, _: Request<pb::HistoryRequest>) -> Result<Response<pb::HistoryReply>, Status> {
        Ok(Response::new(self.ask(Cmd::History).await?))
    }

    async fn missing_blobs(
        &self,
        r: Request<pb::MissingBlobsRequest>,
    ) -> Result<Response<pb::MissingBlobsReply>, Status> {
        // Each apply that sends images starts here: a good time to drop what earlier ones
        // sent and never used.
        self.library.spawn_collect();
        Ok(Response::new(self.library.missing(&r.into_inner().images).await.map_err(Status::invalid_argument)?))
    }

    async fn upload_blob(
        &self,
        r: Request<tonic::Streaming<pb::BlobChunk>>,
    ) -> Result<Response<pb::UploadBlobReply>, Status> {
        use tokio_stream::StreamExt;
        let caller = r.extensions().get::<Caller>().cloned();
        let mut stream = r.into_inner();
        let idle = super::blobs::IDLE;
        let first = tokio::time::timeout(idle, stream.next())
            .await
            .map_err(|_| Status::deadline_exceeded(format!("upload: no data for {idle:?}")))?
            .ok_or_else(|| Status::invalid_argument("upload: no chunk"))??;
        let (digest, size) = (first.digest.clone(), first.size);
        audit_as(caller.as_ref(), &digest);
        if !crate::images::valid_digest(&digest) {
            return Err(Status::invalid_argument(format!("invalid blob digest {digest:?}")));
        }
        let _slot = self.uploads.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!("{} uploads run already; try again", super::blobs::MAX_UPLOADS))
        })?;
        let _room = super::blobs::Reservation::take(&self.reserved, size)?;
        let client = self.client.get().ok_or_else(|| Status::unavailable("containerd is not answering yet"))?;
        let rest = stream.timeout(idle).map(move |c| match c {
            Ok(Ok(c)) => Ok(c.data),
            Ok(Err(s)) => Err(format!("upload cut: {}", s.message())),
            Err(_) => Err(format!("upload stalled: no data for {idle:?}")),
        });
        let chunks = tokio_stream::once(Ok(first.data)).chain(rest);
        let existed =
            client.write_blob(&digest, size, Box::pin(chunks)).await.map_err(|e| super::blobs::refused(&digest, e))?;
        Ok(Response::new(pb::UploadBlobReply { digest, size, existed }))
    }

    async fn version(&self, _: Request<pb::VersionRequest>) -> Result<Response<pb::VersionReply>, Status> {
        let timeline = self.ask(Cmd::Timeline).await?;
        Ok(Response::new(pb::VersionReply {
            version: env!("CARGO_PKG_VERSION").to_string(),
            timeline: timeline.into_iter().map(|(name, ms)| pb::Phase { name, uptime_ms: ms }).collect(),
        }))
    }
}

/// Image digest -> the image source as the config names it (the record containerd lists).
fn image_names(
    config: &hoist_config::Config,
    digests: &std::collections::HashMap<String, String>,
) -> BTreeMap<String, String> {
    config.containers().filter_map(|c| Some((digests.get(c.name)?.clone(), c.image.describe()))).collect()
}

/// At most `max` bytes of the file, and whether there was more.
fn read_capped(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(e),
    };
    let mut data = Vec::new();
    file.take(max + 1).read_to_end(&mut data)?;
    let truncated = data.len() as u64 > max;
    data.truncate(max as usize);
    Ok((data, truncated))
}

fn server(svc: ControlService) -> ControlServer<ControlService> {
    ControlServer::new(svc)
        .max_decoding_message_size(hoist_api::MAX_MESSAGE)
        .max_encoding_message_size(hoist_api::MAX_MESSAGE)
}

/// Serves on the Unix socket (every caller is `local`, an admin), and on TCP with mutual
/// TLS when the build put a PKI in [`hoist_api::TLS_DIR`] (roles from the client
/// certificate, [`super::auth`]). A port that cannot be bound is said on the console and
/// tried again with backoff ([`super::limits::bind_delay`]); the supervisor goes on meanwhile.
pub fn spawn(svc: ControlService) {
    let socket = Path::new(hoist_api::SOCKET);
    if let Some(dir) = socket.parent() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let _ = std::fs::remove_file(socket);
    match tokio::net::UnixListener::bind(socket) {
        Ok(l) => {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(l);
            let s = server(svc.clone());
            tokio::spawn(
                async move { Server::builder().layer(AuthLayer::local()).serve_with_incoming(s, incoming).await },
            );
        }
        Err(e) => log::warn!("control socket {}: {e}", socket.display()),
    }
    let dir = Path::new(hoist_api::TLS_DIR);
    let read = |f: &str| std::fs::read(dir.join(f));
    let (Ok(ca), Ok(cert), Ok(key)) = (read(pki::CA_CERT), read(pki::SERVER_CERT), read(pki::SERVER_KEY)) else {
        log::warn!("no TLS material in {}: control API on the Unix socket only", dir.display());
        return;
    };
    let revoked = svc.revocations.clone();
    if let Some(e) = revoked.with(|list| list.as_ref().err().cloned()) {
        crate::say(&format!("control API: revocation list {e}: refusing every certificate"));
    }
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(ca))
        .timeout(Duration::from_secs(10));
    tokio::spawn(async move {
        let listener = bind_with_retry(("0.0.0.0", hoist_api::PORT), super::limits::bind_delay, &crate::say).await;
        let builder = match Server::builder().tls_config(tls) {
            Ok(b) => b,
            Err(e) => {
                crate::say(&format!("control API TLS: {e}: TCP API off"));
                return;
            }
        };
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let layered = builder.layer(AuthLayer::tls(revoked));
        if let Err(e) = layered.serve_with_incoming(server(svc), incoming).await {
            crate::say(&format!("control API: {e}"));
        }
    });
}

/// Binds `addr`, saying why it cannot (`say`, the console in the supervisor) and trying
/// again after each `delay(attempt)` ([`bind_delay`](super::limits::bind_delay)), until it can.
async fn bind_with_retry(
    addr: (&str, u16),
    delay: fn(u32) -> Duration,
    say: &(dyn Fn(&str) + Sync),
) -> tokio::net::TcpListener {
    let mut attempt = 0u32;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                if attempt > 0 {
                    say(&format!("control API port {}: listening after {attempt} retries", addr.1));
                }
                return l;
            }
            Err(e) => {
                let wait = delay(attempt);
                say(&format!("control API port {}: {e}; retrying in {} ms", addr.1, wait.as_millis()));
                tokio::time::sleep(wait).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_output_is_capped_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out");
        std::fs::write(&path, vec![b'x'; 100]).expect("write");
        assert_eq!(read_capped(&path, 100).expect("read"), (vec![b'x'; 100], false));
        let (data, truncated) = read_capped(&path, 64).expect("read");
        assert_eq!((data.len(), truncated), (64, true));
        assert_eq!(read_capped(&dir.path().join("none"), 64).expect("missing"), (Vec::new(), false));
    }

    #[tokio::test]
    async fn a_port_in_use_is_said_and_retried_until_free() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = holder.local_addr().expect("addr").port();
        let said = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = said.clone();
        let task = tokio::spawn(async move {
            let say = move |l: &str| log.lock().expect("lock").push(l.to_string());
            bind_with_retry(("127.0.0.1", port), |_| Duration::from_millis(20), &say).await
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while said.lock().expect("lock").len() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "no retry said: {:?}", said.lock().expect("lock"));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(holder);
        let bound = tokio::time::timeout(Duration::from_secs(10), task).await.expect("bound once free").expect("task");
        assert_eq!(bound.local_addr().expect("addr").port(), port);
        let said = said.lock().expect("lock").clone();
        assert!(
            said[0].contains(&format!("control API port {port}: ")) && said[0].contains("retrying in 20 ms"),
            "{said:?}"
        );
        assert!(said.last().expect("last").contains("listening after"), "{said:?}");
    }
}
