//! The control API server. Handlers are thin: validate, ask the supervisor's state owner
//! through [`Cmd`] (or containerd, for exec), map errors in one place ([`to_status`]).

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::pb::{self, control_server::Control, control_server::ControlServer};
use crate::containerd::Containerd;

/// What the API asks the supervisor's state owner.
#[derive(Debug)]
pub enum Cmd {
    Status(oneshot::Sender<Vec<pb::ServiceStatus>>),
    Describe(String, oneshot::Sender<Result<pb::ServiceDetail, ApiError>>),
    Start(String, oneshot::Sender<Result<String, ApiError>>),
    Stop(String, oneshot::Sender<Result<String, ApiError>>),
    Restart(String, oneshot::Sender<Result<String, ApiError>>),
    /// The process JSON to exec with, if the service runs.
    ExecPlan(String, oneshot::Sender<Result<Vec<u8>, ApiError>>),
    Timeline(oneshot::Sender<Vec<(String, u128)>>),
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no service {0:?}")]
    NoService(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
}

/// The one place API errors become gRPC codes.
pub fn to_status(e: ApiError) -> Status {
    match e {
        ApiError::NoService(_) => Status::not_found(e.to_string()),
        ApiError::Conflict(_) => Status::failed_precondition(e.to_string()),
        ApiError::Unavailable(_) => Status::unavailable(e.to_string()),
        ApiError::Invalid(_) => Status::invalid_argument(e.to_string()),
    }
}

#[derive(Clone)]
pub struct ControlService {
    cmds: mpsc::UnboundedSender<Cmd>,
    events: broadcast::Sender<pb::Event>,
    client: Containerd,
    exec_seq: Arc<AtomicU64>,
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl ControlService {
    pub fn new(cmds: mpsc::UnboundedSender<Cmd>, events: broadcast::Sender<pb::Event>, client: Containerd) -> Self {
        ControlService { cmds, events, client, exec_seq: Arc::new(AtomicU64::new(0)) }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(make(tx)).map_err(|_| Status::unavailable("supervisor is shutting down"))?;
        rx.await.map_err(|_| Status::unavailable("supervisor is shutting down"))
    }

    async fn action(
        &self,
        name: String,
        make: fn(String, oneshot::Sender<Result<String, ApiError>>) -> Cmd,
    ) -> Result<Response<pb::ActionReply>, Status> {
        let message = self.ask(|tx| make(name, tx)).await?.map_err(to_status)?;
        Ok(Response::new(pb::ActionReply { message }))
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusReply>, Status> {
        Ok(Response::new(pb::StatusReply { services: self.ask(Cmd::Status).await? }))
    }

    async fn describe(&self, r: Request<pb::ServiceRequest>) -> Result<Response<pb::ServiceDetail>, Status> {
        let name = r.into_inner().name;
        Ok(Response::new(self.ask(|tx| Cmd::Describe(name, tx)).await?.map_err(to_status)?))
    }

    async fn start(&self, r: Request<pb::ServiceRequest>) -> Result<Response<pb::ActionReply>, Status> {
        self.action(r.into_inner().name, Cmd::Start).await
    }

    async fn stop(&self, r: Request<pb::ServiceRequest>) -> Result<Response<pb::ActionReply>, Status> {
        self.action(r.into_inner().name, Cmd::Stop).await
    }

    async fn restart(&self, r: Request<pb::ServiceRequest>) -> Result<Response<pb::ActionReply>, Status> {
        self.action(r.into_inner().name, Cmd::Restart).await
    }

    type LogsStream = Stream_<pb::LogLine>;

    async fn logs(&self, r: Request<pb::LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let req = r.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let tail = req.tail as usize;
        if req.source == "kernel" {
            tokio::task::spawn_blocking(move || super::logs::stream_kernel(tail, req.follow, tx));
        } else {
            let path = super::logs::file_of(Path::new(super::logs::LOG_DIR), &req.source)
                .map_err(|e| Status::not_found(e.to_string()))?;
            tokio::task::spawn_blocking(move || super::logs::stream_file(path, req.source, tail, req.follow, tx));
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type EventsStream = Stream_<pb::Event>;

    async fn events(&self, _: Request<pb::EventsRequest>) -> Result<Response<Self::EventsStream>, Status> {
        let mut sub = self.events.subscribe();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let item = match sub.recv().await {
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
        let req = r.into_inner();
        if req.command.is_empty() {
            return Err(to_status(ApiError::Invalid("exec needs a command".into())));
        }
        let name = req.service.clone();
        let base = self.ask(|tx| Cmd::ExecPlan(name, tx)).await?.map_err(to_status)?;
        let process =
            crate::exec::process_with_args(&base, &req.command).map_err(|e| Status::internal(e.to_string()))?;
        let id = format!("ctl-{}", self.exec_seq.fetch_add(1, Ordering::Relaxed));
        let dir = Path::new("/run/hoist/exec");
        let _ = std::fs::create_dir_all(dir);
        // containerd's shim sends both streams of a file:// stdio to one file, in order.
        let (out, err) = (dir.join(format!("{id}.out")), dir.join(format!("{id}.err")));
        let (out_uri, err_uri) = (format!("file://{}", out.display()), format!("file://{}", out.display()));
        let timeout = Duration::from_secs(if req.timeout_secs == 0 { 30 } else { req.timeout_secs.into() });
        let run = self.client.exec(&req.service, &id, process, &out_uri, &err_uri);
        let status = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(Status::failed_precondition(e.to_string())),
            Err(_) => return Err(Status::deadline_exceeded(format!("exec did not finish within {timeout:?}"))),
        };
        let reply = pb::ExecReply {
            exit_code: status as i32,
            stdout: std::fs::read(&out).unwrap_or_default(),
            stderr: std::fs::read(&err).unwrap_or_default(),
        };
        let _ = std::fs::remove_file(out);
        let _ = std::fs::remove_file(err);
        Ok(Response::new(reply))
    }

    async fn shutdown(&self, r: Request<pb::ShutdownRequest>) -> Result<Response<pb::ActionReply>, Status> {
        use nix::sys::signal::{Signal, kill};
        let reboot = r.into_inner().reboot;
        // PID 1 owns the machine's shutdown; SIGUSR1 asks it to reboot, SIGTERM to power off.
        let sig = if reboot { Signal::SIGUSR1 } else { Signal::SIGTERM };
        kill(nix::unistd::Pid::from_raw(1), sig).map_err(|e| Status::internal(format!("signal PID 1: {e}")))?;
        Ok(Response::new(pb::ActionReply { message: if reboot { "rebooting".into() } else { "powering off".into() } }))
    }

    async fn version(&self, _: Request<pb::VersionRequest>) -> Result<Response<pb::VersionReply>, Status> {
        let timeline = self.ask(Cmd::Timeline).await?;
        Ok(Response::new(pb::VersionReply {
            version: env!("CARGO_PKG_VERSION").to_string(),
            timeline: timeline.into_iter().map(|(name, ms)| pb::Phase { name, uptime_ms: ms as u64 }).collect(),
        }))
    }
}

fn server(svc: ControlService) -> ControlServer<ControlService> {
    ControlServer::new(svc).max_decoding_message_size(super::MAX_MESSAGE).max_encoding_message_size(super::MAX_MESSAGE)
}

/// Serves on the Unix socket, and on TCP with mutual TLS when the build put a PKI in
/// [`super::TLS_DIR`]. Failures to listen are logged; the supervisor goes on without the API.
pub fn spawn(svc: ControlService) {
    let socket = Path::new(super::SOCKET);
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
            tokio::spawn(async move { Server::builder().serve_with_incoming(s, incoming).await });
        }
        Err(e) => log::warn!("control socket {}: {e}", socket.display()),
    }
    let dir = Path::new(super::TLS_DIR);
    let read = |f: &str| std::fs::read(dir.join(f));
    let (Ok(ca), Ok(cert), Ok(key)) = (read("ca.pem"), read("server.pem"), read("server.key")) else {
        log::warn!("no TLS material in {}: control API on the Unix socket only", dir.display());
        return;
    };
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(ca))
        .timeout(Duration::from_secs(10));
    tokio::spawn(async move {
        let listener = match tokio::net::TcpListener::bind(("0.0.0.0", super::PORT)).await {
            Ok(l) => l,
            Err(e) => {
                log::warn!("control API port {}: {e}", super::PORT);
                return;
            }
        };
        let builder = match Server::builder().tls_config(tls) {
            Ok(b) => b,
            Err(e) => {
                log::warn!("control API TLS: {e}");
                return;
            }
        };
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        if let Err(e) = builder.serve_with_incoming(server(svc), incoming).await {
            log::warn!("control API: {e}");
        }
    });
}
