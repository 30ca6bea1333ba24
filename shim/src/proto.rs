//! The messages of containerd's shim task API (`containerd.task.v2.Task`, containerd 1.6)
//! and of the task events a shim publishes, written out as prost structs with the field
//! numbers of containerd's protos.

use prost::Message;
use prost_types::{Any, Timestamp};

pub const TASK_SERVICE: &str = "containerd.task.v2.Task";
pub const EVENTS_SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";

/// containerd.v1.types.Status
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created = 1,
    Running = 2,
    Stopped = 3,
    Paused = 4,
}

#[derive(Clone, PartialEq, Message)]
pub struct Mount {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub source: String,
    #[prost(string, tag = "3")]
    pub target: String,
    #[prost(string, repeated, tag = "4")]
    pub options: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CreateTaskRequest {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub bundle: String,
    #[prost(message, repeated, tag = "3")]
    pub rootfs: Vec<Mount>,
    #[prost(bool, tag = "4")]
    pub terminal: bool,
    #[prost(string, tag = "5")]
    pub stdin: String,
    #[prost(string, tag = "6")]
    pub stdout: String,
    #[prost(string, tag = "7")]
    pub stderr: String,
    #[prost(string, tag = "8")]
    pub checkpoint: String,
    #[prost(string, tag = "9")]
    pub parent_checkpoint: String,
    #[prost(message, optional, tag = "10")]
    pub options: Option<Any>,
}

/// Also CreateTaskResponse and StartResponse: one pid.
#[derive(Clone, PartialEq, Message)]
pub struct PidResponse {
    #[prost(uint32, tag = "1")]
    pub pid: u32,
}

/// The (id, exec_id) pair most requests carry: Delete, State, Start, Wait.
#[derive(Clone, PartialEq, Message)]
pub struct ProcessRequest {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub exec_id: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct DeleteResponse {
    #[prost(uint32, tag = "1")]
    pub pid: u32,
    #[prost(uint32, tag = "2")]
    pub exit_status: u32,
    #[prost(message, optional, tag = "3")]
    pub exited_at: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExecProcessRequest {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub exec_id: String,
    #[prost(bool, tag = "3")]
    pub terminal: bool,
    #[prost(string, tag = "4")]
    pub stdin: String,
    #[prost(string, tag = "5")]
    pub stdout: String,
    #[prost(string, tag = "6")]
    pub stderr: String,
    #[prost(message, optional, tag = "7")]
    pub spec: Option<Any>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StateResponse {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub bundle: String,
    #[prost(uint32, tag = "3")]
    pub pid: u32,
    #[prost(int32, tag = "4")]
    pub status: i32,
    #[prost(string, tag = "5")]
    pub stdin: String,
    #[prost(string, tag = "6")]
    pub stdout: String,
    #[prost(string, tag = "7")]
    pub stderr: String,
    #[prost(bool, tag = "8")]
    pub terminal: bool,
    #[prost(uint32, tag = "9")]
    pub exit_status: u32,
    #[prost(message, optional, tag = "10")]
    pub exited_at: Option<Timestamp>,
    #[prost(string, tag = "11")]
    pub exec_id: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct KillRequest {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub exec_id: String,
    #[prost(uint32, tag = "3")]
    pub signal: u32,
    #[prost(bool, tag = "4")]
    pub all: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct ProcessInfo {
    #[prost(uint32, tag = "1")]
    pub pid: u32,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Any>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PidsResponse {
    #[prost(message, repeated, tag = "1")]
    pub processes: Vec<ProcessInfo>,
}

#[derive(Clone, PartialEq, Message)]
pub struct WaitResponse {
    #[prost(uint32, tag = "1")]
    pub exit_status: u32,
    #[prost(message, optional, tag = "2")]
    pub exited_at: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ConnectResponse {
    #[prost(uint32, tag = "1")]
    pub shim_pid: u32,
    #[prost(uint32, tag = "2")]
    pub task_pid: u32,
    #[prost(string, tag = "3")]
    pub version: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ShutdownRequest {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(bool, tag = "2")]
    pub now: bool,
}

/// containerd.runc.v1.Options: only the OCI runtime's binary matters here.
#[derive(Clone, PartialEq, Message)]
pub struct RuncOptions {
    #[prost(string, tag = "6")]
    pub binary_name: String,
}

// Events (containerd/api/events/task.proto).

#[derive(Clone, PartialEq, Message)]
pub struct TaskIo {
    #[prost(string, tag = "1")]
    pub stdin: String,
    #[prost(string, tag = "2")]
    pub stdout: String,
    #[prost(string, tag = "3")]
    pub stderr: String,
    #[prost(bool, tag = "4")]
    pub terminal: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct TaskCreate {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(string, tag = "2")]
    pub bundle: String,
    #[prost(message, repeated, tag = "3")]
    pub rootfs: Vec<Mount>,
    #[prost(message, optional, tag = "4")]
    pub io: Option<TaskIo>,
    #[prost(string, tag = "5")]
    pub checkpoint: String,
    #[prost(uint32, tag = "6")]
    pub pid: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct TaskStart {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(uint32, tag = "2")]
    pub pid: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct TaskDelete {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(uint32, tag = "2")]
    pub pid: u32,
    #[prost(uint32, tag = "3")]
    pub exit_status: u32,
    #[prost(message, optional, tag = "4")]
    pub exited_at: Option<Timestamp>,
    #[prost(string, tag = "5")]
    pub id: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct TaskExit {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(string, tag = "2")]
    pub id: String,
    #[prost(uint32, tag = "3")]
    pub pid: u32,
    #[prost(uint32, tag = "4")]
    pub exit_status: u32,
    #[prost(message, optional, tag = "5")]
    pub exited_at: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TaskExecAdded {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(string, tag = "2")]
    pub exec_id: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct TaskExecStarted {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(string, tag = "2")]
    pub exec_id: String,
    #[prost(uint32, tag = "3")]
    pub pid: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Envelope {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(string, tag = "3")]
    pub topic: String,
    #[prost(message, optional, tag = "4")]
    pub event: Option<Any>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ForwardRequest {
    #[prost(message, optional, tag = "1")]
    pub envelope: Option<Envelope>,
}

/// An event ready to send: its topic and its message as an Any.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub topic: &'static str,
    pub event: Any,
}

impl Event {
    fn new(topic: &'static str, name: &str, message: &impl Message) -> Event {
        Event { topic, event: Any { type_url: format!("containerd.events.{name}"), value: message.encode_to_vec() } }
    }
    pub fn create(m: TaskCreate) -> Event {
        Event::new("/tasks/create", "TaskCreate", &m)
    }
    pub fn start(m: TaskStart) -> Event {
        Event::new("/tasks/start", "TaskStart", &m)
    }
    pub fn exit(m: TaskExit) -> Event {
        Event::new("/tasks/exit", "TaskExit", &m)
    }
    pub fn delete(m: TaskDelete) -> Event {
        Event::new("/tasks/delete", "TaskDelete", &m)
    }
    pub fn exec_added(m: TaskExecAdded) -> Event {
        Event::new("/tasks/exec-added", "TaskExecAdded", &m)
    }
    pub fn exec_started(m: TaskExecStarted) -> Event {
        Event::new("/tasks/exec-started", "TaskExecStarted", &m)
    }
}
