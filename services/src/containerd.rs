//! A thin client over containerd's gRPC API for what the supervisor needs: containers,
//! tasks (create, start, wait, kill, delete, list). Everything runs in containerd
//! namespace [`NAMESPACE`]. Errors keep the gRPC status and say which call on which service.

use std::time::{Duration, Instant};

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest, DeleteProcessRequest,
    DeleteTaskRequest, ExecProcessRequest, KillRequest, ListTasksRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status};
use containerd_client::types::Mount;
use containerd_client::types::v1::Process;

pub const NAMESPACE: &str = "hoist";
pub const RUNTIME: &str = hoist_guest::paths::SHIM_RUNTIME;
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("containerd at {socket} not ready after {waited:?}: {last}")]
    Connect { socket: String, waited: Duration, last: String },
    #[error("{call} {id}: {}", status.message())]
    Rpc { call: &'static str, id: String, status: Box<Status> },
    #[error("{call} {id}: did not finish within {after:?}: killed")]
    Timeout { call: &'static str, id: String, after: Duration },
}

impl ClientError {
    /// containerd went away (restart, crash): not the service's fault; retry after
    /// reconnecting. `Unknown` is a disconnect only when the transport says so (a reset
    /// HTTP/2 stream); from containerd itself it is a real error.
    pub fn is_disconnect(&self) -> bool {
        match self {
            ClientError::Connect { .. } => true,
            ClientError::Timeout { .. } => false,
            ClientError::Rpc { status, .. } => match status.code() {
                Code::Unavailable | Code::Cancelled => true,
                Code::Unknown => is_transport_failure(status.message()),
                _ => false,
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Rpc { status, .. } if status.code() == Code::NotFound)
    }
}

pub(crate) fn req<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("containerd-namespace", containerd_client::tonic::metadata::MetadataValue::from_static(NAMESPACE));
    r
}

#[derive(Clone)]
pub struct Containerd {
    pub(crate) channel: Channel,
    /// The shim's runtime options for every container created: which OCI runtime it runs.
    runtime_options: Option<prost_types::Any>,
}

/// The one field hoist sets of the runc v2 shim's options (`containerd.runc.v1.Options`
/// in containerd's runtime/v2/runc/options/oci.proto): the OCI runtime binary to run.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RuncOptions {
    #[prost(string, tag = "6")]
    pub binary_name: String,
}

/// The shim's runtime options naming the OCI runtime `binary`.
pub fn runtime_options(binary: &str) -> prost_types::Any {
    let value = prost::Message::encode_to_vec(&RuncOptions { binary_name: binary.to_string() });
    prost_types::Any { type_url: hoist_guest::paths::RUNTIME_OPTIONS_TYPE_URL.to_string(), value }
}

impl Containerd {
    /// Connects and waits until containerd answers a Version call, polling until `timeout`.
    pub async fn connect(socket: &str, timeout: Duration) -> Result<Self, ClientError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            let last = match containerd_client::connect(socket).await {
                Ok(channel) => {
                    let mut version =
                        containerd_client::services::v1::version_client::VersionClient::new(channel.clone());
                    match version.version(()).await {
                        Ok(_) => return Ok(Containerd { channel, runtime_options: None }),
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= timeout {
                return Err(ClientError::Connect { socket: socket.to_string(), waited: start.elapsed(), last });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Containers created from now on run `binary` (the shim's default, runc on its PATH,
    /// without this).
    pub fn with_oci_runtime(mut self, binary: &str) -> Self {
        self.runtime_options = Some(runtime_options(binary));
        self
    }

    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    pub async fn list_tasks(&self) -> Result<Vec<Process>, ClientError> {
        let resp = self.tasks().list(req(ListTasksRequest { filter: String::new() })).await;
        resp.map(|r| r.into_inner().tasks).map_err(|s| rpc("list tasks", "", s))
    }

    pub async fn create_container(&self, id: &str, spec_json: Vec<u8>) -> Result<(), ClientError> {
        let container = Container {
            id: id.to_string(),
            runtime: Some(Runtime { name: RUNTIME.to_string(), options: self.runtime_options.clone() }),
            spec: Some(prost_types::Any { type_url: SPEC_TYPE_URL.to_string(), value: spec_json }),
            ..Default::default()
        };
        let resp = self.containers().create(req(CreateContainerRequest { container: Some(container) })).await;
        resp.map(|_| ()).map_err(|s| rpc("create container", id, s))
    }

    pub async fn delete_container(&self, id: &str) -> Result<(), ClientError> {
        let resp = self.containers().delete(req(DeleteContainerRequest { id: id.to_string() })).await;
        resp.map(|_| ()).map_err(|s| rpc("delete container", id, s))
    }

    /// Creates the task with its rootfs mounts and stdout/stderr going to `log_uri`.
    pub async fn create_task(&self, id: &str, rootfs: Vec<Mount>, log_uri: &str) -> Result<u32, ClientError> {
        let request = CreateTaskRequest {
            container_id: id.to_string(),
            rootfs,
            stdout: log_uri.to_string(),
            stderr: log_uri.to_string(),
            ..Default::default()
        };
        let resp = self.tasks().create(req(request)).await;
        resp.map(|r| r.into_inner().pid).map_err(|s| rpc("create task", id, s))
    }

    pub async fn start(&self, id: &str) -> Result<u32, ClientError> {
        let resp = self.tasks().start(req(StartRequest { container_id: id.to_string(), exec_id: String::new() })).await;
        resp.map(|r| r.into_inner().pid).map_err(|s| rpc("start", id, s))
    }

    /// Blocks until the task exits; returns its exit status (128+n for signal n).
    pub async fn wait(&self, id: &str) -> Result<u32, ClientError> {
        let resp = self.tasks().wait(req(WaitRequest { container_id: id.to_string(), exec_id: String::new() })).await;
        resp.map(|r| r.into_inner().exit_status).map_err(|s| rpc("wait", id, s))
    }

    /// Signals the task's init (or, with `all`, every process in it).
    pub async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), ClientError> {
        let request = KillRequest { container_id: id.to_string(), exec_id: String::new(), signal: signal as u32, all };
        let resp = self.tasks().kill(req(request)).await;
        resp.map(|_| ()).map_err(|s| rpc("kill", id, s))
    }

    /// Runs an extra process in the task, waits for it at most `timeout` and removes it;
    /// returns its exit status. One that outlives `timeout` is killed, and the error says
    /// so. `stdout`/`stderr` are stdio URIs ("" = none, "file:///path").
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process_json: Vec<u8>,
        stdout: &str,
        stderr: &str,
        timeout: Duration,
    ) -> Result<u32, ClientError> {
        let request = ExecProcessRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            spec: Some(prost_types::Any { type_url: PROCESS_TYPE_URL.to_string(), value: process_json }),
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            ..Default::default()
        };
        self.tasks().exec(req(request)).await.map_err(|s| rpc("exec", id, s))?;
        let ids = || (id.to_string(), exec_id.to_string());
        let run = async {
            let (container_id, exec_id) = ids();
            self.tasks()
                .start(req(StartRequest { container_id, exec_id }))
                .await
                .map_err(|s| rpc("exec start", id, s))?;
            let (container_id, exec_id) = ids();
            let waited = self.tasks().wait(req(WaitRequest { container_id, exec_id })).await;
            waited.map(|r| r.into_inner().exit_status).map_err(|s| rpc("exec wait", id, s))
        };
        let result = match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => {
                let (container_id, exec_id) = ids();
                let kill = KillRequest { container_id, exec_id, signal: libc::SIGKILL as u32, all: false };
                let _ = self.tasks().kill(req(kill)).await;
                let (container_id, exec_id) = ids();
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    self.tasks().wait(req(WaitRequest { container_id, exec_id })),
                )
                .await;
                Err(ClientError::Timeout { call: "exec", id: id.to_string(), after: timeout })
            }
        };
        let (container_id, exec_id) = ids();
        let _ = self.tasks().delete_process(req(DeleteProcessRequest { container_id, exec_id })).await;
        result
    }

    pub async fn delete_task(&self, id: &str) -> Result<u32, ClientError> {
        let resp = self.tasks().delete(req(DeleteTaskRequest { container_id: id.to_string() })).await;
        resp.map(|r| r.into_inner().exit_status).map_err(|s| rpc("delete task", id, s))
    }
}

/// Messages tonic and hyper give when the connection itself broke mid-call.
fn is_transport_failure(message: &str) -> bool {
    const SIGNS: [&str; 6] =
        ["transport error", "connection", "broken pipe", "h2 protocol error", "error reading a body", "stream closed"];
    let message = message.to_ascii_lowercase();
    SIGNS.iter().any(|s| message.contains(s))
}

pub(crate) fn rpc(call: &'static str, id: &str, status: Status) -> ClientError {
    ClientError::Rpc { call, id: id.to_string(), status: Box::new(status) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: Code, message: &str) -> ClientError {
        rpc("wait", "web", Status::new(code, message))
    }

    #[test]
    fn runtime_options_name_the_binary_in_field_6() {
        let any = runtime_options("/usr/bin/crun");
        assert_eq!(any.type_url, "containerd.runc.v1.Options");
        // Tag 6, wire type 2 (length-delimited), 13 bytes.
        assert_eq!(&any.value[..2], &[0x32, 13]);
        assert_eq!(&any.value[2..], b"/usr/bin/crun");
        let back: RuncOptions = prost::Message::decode(any.value.as_slice()).expect("decode");
        assert_eq!(back.binary_name, "/usr/bin/crun");
    }

    #[test]
    fn only_a_broken_connection_counts_as_losing_containerd() {
        assert!(err(Code::Unavailable, "connection refused").is_disconnect());
        assert!(err(Code::Cancelled, "").is_disconnect());
        assert!(err(Code::Unknown, "h2 protocol error: error reading a body from connection").is_disconnect());
        assert!(!err(Code::Unknown, "failed to create shim task: OCI runtime create failed").is_disconnect());
        assert!(!err(Code::NotFound, "task web not found").is_disconnect());
        assert!(!err(Code::Internal, "connection").is_disconnect());
    }
}
