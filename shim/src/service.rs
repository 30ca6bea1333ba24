//! The task API's methods for the one container this shim runs: each request decoded,
//! checked, carried out through the OCI runtime, and answered; Wait is answered later,
//! when the process's exit is reaped.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::args::valid_id;
use crate::events::{Publisher, now};
use crate::proto::{self, Event, Status};
use crate::runtime::{Reaped, Runtime};
use crate::task::{Exit, Stdio, Task, TaskError, Waiter};
use crate::ttrpc::{Code, RpcError};

/// Where each namespace's runtime state lives: `/run/containerd/<runtime>/<namespace>`,
/// as containerd's runc shim keeps it.
pub fn runtime_root(binary: &Path, namespace: &str) -> PathBuf {
    let name = binary.file_name().and_then(|n| n.to_str()).unwrap_or("runc");
    Path::new("/run/containerd").join(name).join(namespace)
}

/// The bundle file that remembers the OCI runtime, for `delete` after a crash.
pub const RUNTIME_FILE: &str = "hoist-runtime";

/// The OCI runtime a container's options name, or the first one installed.
pub fn runtime_binary(options: Option<&prost_types::Any>) -> PathBuf {
    if let Some(any) = options
        && any.type_url.trim_start_matches("types.containerd.io/") == hoist_guest::paths::RUNTIME_OPTIONS_TYPE_URL
        && let Ok(o) = proto::RuncOptions::decode(any.value.as_slice())
        && !o.binary_name.is_empty()
    {
        return PathBuf::from(o.binary_name);
    }
    hoist_guest::paths::OCI_RUNTIMES
        .iter()
        .map(|(_, path)| PathBuf::from(path))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("runc"))
}

pub type Outcome = Result<Vec<u8>, RpcError>;

pub struct Shim {
    pub id: String,
    pub namespace: String,
    pub bundle: PathBuf,
    task: Option<Task>,
    runtime: Option<Runtime>,
    deleted: bool,
    /// Frozen by Pause (until Resume): State says so.
    paused: bool,
    events: Publisher,
    /// Replies due: (connection, stream, outcome), sent by the server.
    pub outbox: Vec<(u64, u32, Outcome)>,
    /// Exits reaped during runtime calls, applied after them.
    reaped: Vec<Reaped>,
    /// Set when the shim should exit once the outbox is sent.
    pub exiting: bool,
    /// Service output the shim reads itself, drained by the server's loop.
    pub logs: Vec<crate::logs::LogPipe>,
    pub log: Box<dyn FnMut(&str)>,
}

fn err(code: Code, message: impl Into<String>) -> RpcError {
    RpcError::new(code, message)
}

fn task_err(e: TaskError) -> RpcError {
    let code = match e {
        TaskError::NoProcess(_) => Code::NotFound,
        TaskError::ExecExists(_) => Code::AlreadyExists,
        TaskError::TooManyExecs | TaskError::Running(_) => Code::FailedPrecondition,
    };
    err(code, e.to_string())
}

fn decode<M: Message + Default>(payload: &[u8]) -> Result<M, RpcError> {
    M::decode(payload).map_err(|e| err(Code::InvalidArgument, format!("bad request: {e}")))
}

fn exit_now(status: u32) -> Exit {
    let t = now();
    Exit { status, at: (t.seconds, t.nanos) }
}

impl Shim {
    pub fn new(id: String, namespace: String, bundle: PathBuf, ttrpc_address: String) -> Self {
        Shim {
            events: Publisher::new(ttrpc_address, namespace.clone()),
            id,
            namespace,
            bundle,
            task: None,
            runtime: None,
            deleted: false,
            paused: false,
            outbox: Vec::new(),
            reaped: Vec::new(),
            exiting: false,
            logs: Vec::new(),
            log: Box::new(|_| {}),
        }
    }

    fn publish(&mut self, event: Event) {
        if let Err(e) = self.events.publish(event) {
            (self.log)(&e);
        }
    }

    /// One request. Wait may leave its answer for later (nothing in the outbox yet).
    pub fn handle(&mut self, conn: u64, stream: u32, method: &str, payload: &[u8]) {
        let outcome = match method {
            "Wait" => match self.wait(conn, stream, payload) {
                Ok(None) => {
                    self.apply_reaped();
                    return;
                }
                Ok(Some(reply)) => Ok(reply),
                Err(e) => Err(e),
            },
            _ => self.call(method, payload),
        };
        self.outbox.push((conn, stream, outcome));
        self.apply_reaped();
    }

    fn call(&mut self, method: &str, payload: &[u8]) -> Outcome {
        match method {
            "Create" => self.create(decode(payload)?),
            "Start" => self.start(decode(payload)?),
            "Delete" => self.delete(decode(payload)?),
            "Exec" => self.exec(decode(payload)?),
            "Kill" => self.kill(decode(payload)?),
            "State" => self.state(decode(payload)?),
            "Pids" => self.pids(decode(payload)?),
            "Connect" => {
                let task_pid = self.task.as_ref().map_or(0, |t| t.init.pid);
                let pid = std::process::id();
                Ok(proto::ConnectResponse { shim_pid: pid, task_pid, version: "hoist".into() }.encode_to_vec())
            }
            "Shutdown" => {
                let req: proto::ShutdownRequest = decode(payload)?;
                if req.now || self.task.is_none() {
                    self.exiting = true;
                }
                Ok(Vec::new())
            }
            "Pause" | "Resume" => {
                let req: proto::ProcessRequest = decode(payload)?;
                self.own(&req.id)?;
                let verb = if method == "Pause" { "pause" } else { "resume" };
                self.runtime_call(&[verb, &req.id])?;
                self.paused = method == "Pause";
                Ok(Vec::new())
            }
            "CloseIO" => Ok(Vec::new()),
            "Update" => self.update(payload),
            "Stats" | "Checkpoint" | "ResizePty" => {
                Err(err(Code::Unimplemented, format!("{method} is not supported by hoist's shim")))
            }
            _ => Err(err(Code::Unimplemented, format!("unknown method {method}"))),
        }
    }

    /// The task, if `id` is this shim's container.
    fn own(&mut self, id: &str) -> Result<&mut Task, RpcError> {
        match &mut self.task {
            Some(t) if t.id == id => Ok(t),
            _ => Err(err(Code::NotFound, format!("task {id} not found"))),
        }
    }

    fn runtime_call(&mut self, args: &[&str]) -> Result<Vec<u8>, RpcError> {
        let Some(rt) = &self.runtime else { return Err(err(Code::FailedPrecondition, "no task")) };
        rt.run(args, None, &mut self.reaped).map_err(|e| err(Code::Unknown, e))
    }

    fn create(&mut self, req: proto::CreateTaskRequest) -> Outcome {
        if self.task.is_some() || self.deleted {
            return Err(err(Code::AlreadyExists, format!("task {} already exists", req.id)));
        }
        if req.id != self.id || !valid_id(&req.id) {
            return Err(err(Code::InvalidArgument, format!("task id {:?} is not this shim's ({})", req.id, self.id)));
        }
        if req.terminal {
            return Err(err(Code::Unimplemented, "terminals are not supported by hoist's shim"));
        }
        if !req.checkpoint.is_empty() {
            return Err(err(Code::Unimplemented, "checkpoints are not supported by hoist's shim"));
        }
        let binary = runtime_binary(req.options.as_ref());
        let rt = Runtime { root: runtime_root(&binary, &self.namespace), binary, bundle: self.bundle.clone() };
        let remember = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.bundle.join(RUNTIME_FILE))
            .and_then(|mut f| std::io::Write::write_all(&mut f, rt.binary.as_os_str().as_encoded_bytes()));
        if let Err(e) = remember {
            return Err(err(Code::Unknown, format!("{}: {e}", self.bundle.join(RUNTIME_FILE).display())));
        }
        let rootfs = self.bundle.join("rootfs");
        crate::mounts::mount_all(&req.rootfs, &rootfs).map_err(|e| err(Code::Unknown, e.to_string()))?;
        let created = (|| {
            let (fds, pipe) = crate::stdio::open_all(&req.id, &self.namespace, &req.stdin, &req.stdout, &req.stderr)
                .map_err(|e| err(Code::Unknown, e.to_string()))?;
            self.logs.extend(pipe);
            let pid_file = self.bundle.join("init.pid");
            let pid_arg = pid_file.to_string_lossy().into_owned();
            let bundle_arg = self.bundle.to_string_lossy().into_owned();
            rt.run(&["create", "--bundle", &bundle_arg, "--pid-file", &pid_arg, &req.id], Some(&fds), &mut self.reaped)
                .map_err(|e| err(Code::Unknown, e))?;
            Runtime::read_pid(&pid_file).map_err(|e| err(Code::Unknown, e))
        })();
        let pid = match created {
            Ok(pid) => pid,
            Err(e) => {
                let mut ignored = Vec::new();
                let _ = rt.run(&["delete", "--force", &req.id], None, &mut ignored);
                self.reaped.extend(ignored);
                crate::mounts::unmount_all(&rootfs);
                return Err(e);
            }
        };
        let stdio = Stdio { stdin: req.stdin.clone(), stdout: req.stdout.clone(), stderr: req.stderr.clone() };
        let mut task = Task::new(req.id.clone(), self.bundle.to_string_lossy().into_owned(), stdio);
        task.created(pid);
        self.task = Some(task);
        self.runtime = Some(rt);
        let io = proto::TaskIo { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: false };
        let event = proto::TaskCreate {
            container_id: req.id,
            bundle: self.bundle.to_string_lossy().into_owned(),
            rootfs: req.rootfs,
            io: Some(io),
            checkpoint: String::new(),
            pid,
        };
        self.publish(Event::create(event));
        Ok(proto::PidResponse { pid }.encode_to_vec())
    }

    fn start(&mut self, req: proto::ProcessRequest) -> Outcome {
        let task = self.own(&req.id)?;
        let p = task.process(&req.exec_id).map_err(task_err)?;
        if p.status != Status::Created {
            return Err(err(Code::FailedPrecondition, format!("process {} is not waiting to start", req.exec_id)));
        }
        let id = req.id.clone();
        if req.exec_id.is_empty() {
            let pid = p.pid;
            let Some(rt) = &self.runtime else { return Err(err(Code::FailedPrecondition, "no task")) };
            match crate::fifo_start::start(rt, &id).map_err(|e| err(Code::Unknown, e))? {
                crate::fifo_start::Started::Done => {}
                crate::fifo_start::Started::UseRuntime(_) => {
                    self.runtime_call(&["start", &id])?;
                }
            }
            if let Some(t) = &mut self.task {
                t.started("", pid).map_err(task_err)?;
            }
            self.publish(Event::start(proto::TaskStart { container_id: id, pid }));
            return Ok(proto::PidResponse { pid }.encode_to_vec());
        }
        let pid = self.start_exec(&req.id, &req.exec_id)?;
        let started = proto::TaskExecStarted { container_id: id, exec_id: req.exec_id, pid };
        self.publish(Event::exec_started(started));
        Ok(proto::PidResponse { pid }.encode_to_vec())
    }

    fn start_exec(&mut self, id: &str, exec_id: &str) -> Result<u32, RpcError> {
        let (spec, stdio) = {
            let task = self.own(id)?;
            let p = task.process(exec_id).map_err(task_err)?;
            (p.spec.clone(), p.stdio.clone())
        };
        let Some(rt) = self.runtime.clone() else { return Err(err(Code::FailedPrecondition, "no task")) };
        let spec_file = self.bundle.join(format!(".exec-{exec_id}.json"));
        let pid_file = self.bundle.join(format!(".exec-{exec_id}.pid"));
        let _ = std::fs::remove_file(&pid_file);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&spec_file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &spec));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&spec_file);
            return Err(err(Code::Unknown, format!("{}: {e}", spec_file.display())));
        }
        let result = (|| {
            let (fds, pipe) = crate::stdio::open_all(id, &self.namespace, &stdio.stdin, &stdio.stdout, &stdio.stderr)
                .map_err(|e| err(Code::Unknown, e.to_string()))?;
            self.logs.extend(pipe);
            let (spec_arg, pid_arg) =
                (spec_file.to_string_lossy().into_owned(), pid_file.to_string_lossy().into_owned());
            rt.run(
                &["exec", "--process", &spec_arg, "--detach", "--pid-file", &pid_arg, id],
                Some(&fds),
                &mut self.reaped,
            )
            .map_err(|e| err(Code::Unknown, e))?;
            Runtime::read_pid(&pid_file).map_err(|e| err(Code::Unknown, e))
        })();
        let _ = std::fs::remove_file(&spec_file);
        let _ = std::fs::remove_file(&pid_file);
        let pid = result?;
        if let Some(t) = &mut self.task {
            t.started(exec_id, pid).map_err(task_err)?;
        }
        Ok(pid)
    }

    fn delete(&mut self, req: proto::ProcessRequest) -> Outcome {
        let task = self.own(&req.id)?;
        if !req.exec_id.is_empty() {
            let p = task.remove_exec(&req.exec_id).map_err(task_err)?;
            let exit = p.exit.unwrap_or_else(|| exit_now(0));
            return Ok(proto::DeleteResponse {
                pid: p.pid,
                exit_status: exit.status,
                exited_at: Some(exit.timestamp()),
            }
            .encode_to_vec());
        }
        if task.init.status == Status::Running {
            return Err(err(Code::FailedPrecondition, format!("task {} is running; kill it first", req.id)));
        }
        let (pid, exit) = (task.init.pid, task.init.exit);
        let leftover = task.running_pids();
        for p in leftover {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), nix::sys::signal::Signal::SIGKILL);
        }
        let Some(rt) = &self.runtime else { return Err(err(Code::FailedPrecondition, "no task")) };
        match crate::direct_delete::delete(rt, &req.id, exit.is_some()) {
            Ok(crate::direct_delete::Deleted::Done) => {}
            outcome => {
                if let Err(e) = outcome {
                    (self.log)(&format!("deleting {} without crun: {e}; crun deletes it", req.id));
                }
                // A created task that never started is removed too (--force kills its init).
                self.runtime_call(&["delete", "--force", &req.id])?;
            }
        }
        crate::mounts::unmount_all(&self.bundle.join("rootfs"));
        let exit = exit.unwrap_or_else(|| exit_now(128 + libc::SIGKILL as u32));
        // A task deleted before its init exited (created, never started): whoever waits
        // for it hears the exit the delete reports.
        if let Some(t) = &mut self.task {
            let reply =
                proto::WaitResponse { exit_status: exit.status, exited_at: Some(exit.timestamp()) }.encode_to_vec();
            for w in t.take_waiters() {
                self.outbox.push((w.conn, w.stream, Ok(reply.clone())));
            }
        }
        self.task = None;
        self.deleted = true;
        let event = proto::TaskDelete {
            container_id: req.id.clone(),
            pid,
            exit_status: exit.status,
            exited_at: Some(exit.timestamp()),
            id: req.id,
        };
        self.publish(Event::delete(event));
        Ok(proto::DeleteResponse { pid, exit_status: exit.status, exited_at: Some(exit.timestamp()) }.encode_to_vec())
    }

    fn exec(&mut self, req: proto::ExecProcessRequest) -> Outcome {
        if req.terminal {
            return Err(err(Code::Unimplemented, "terminals are not supported by hoist's shim"));
        }
        if !valid_id(&req.exec_id) {
            return Err(err(Code::InvalidArgument, format!("exec id {:?} is not a valid identifier", req.exec_id)));
        }
        let spec = req.spec.map(|a| a.value).unwrap_or_default();
        if spec.len() > crate::ttrpc::MAX_MESSAGE {
            return Err(err(Code::InvalidArgument, "process spec too large"));
        }
        for uri in [&req.stdin, &req.stdout, &req.stderr] {
            crate::stdio::parse(uri).map_err(|e| err(Code::InvalidArgument, e.to_string()))?;
        }
        let task = self.own(&req.id)?;
        if task.init.status != Status::Running {
            return Err(err(Code::FailedPrecondition, format!("task {} is not running", req.id)));
        }
        let stdio = Stdio { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr };
        task.add_exec(&req.exec_id, stdio, spec).map_err(task_err)?;
        self.publish(Event::exec_added(proto::TaskExecAdded { container_id: req.id, exec_id: req.exec_id }));
        Ok(Vec::new())
    }

    fn kill(&mut self, req: proto::KillRequest) -> Outcome {
        let signal = i32::try_from(req.signal).ok().filter(|s| (1..=64).contains(s));
        let Some(signal) = signal else {
            return Err(err(Code::InvalidArgument, format!("signal {} is not valid", req.signal)));
        };
        let task = self.own(&req.id)?;
        let p = task.process(&req.exec_id).map_err(task_err)?;
        if req.all && req.exec_id.is_empty() && p.exit.is_none() {
            self.runtime_call(&["kill", "--all", &req.id, &signal.to_string()])?;
            return Ok(Vec::new());
        }
        if p.exit.is_some() || p.pid == 0 {
            return Err(err(Code::NotFound, "process already finished"));
        }
        // The pid is our child and not reaped yet (we are the only reaper), so it is
        // still this process.
        // SAFETY: kill(2) with a pid and a signal number checked above; no memory involved.
        let r = unsafe { libc::kill(p.pid as libc::pid_t, signal) };
        if r != 0 {
            return Err(err(Code::Unknown, format!("kill {}: {}", p.pid, std::io::Error::last_os_error())));
        }
        Ok(Vec::new())
    }

    fn state(&mut self, req: proto::ProcessRequest) -> Outcome {
        let paused = self.paused && req.exec_id.is_empty();
        let task = self.own(&req.id)?;
        let p = task.process(&req.exec_id).map_err(task_err)?;
        let exit = p.exit;
        let status = if paused && p.status == Status::Running { Status::Paused } else { p.status };
        Ok(proto::StateResponse {
            id: req.id.clone(),
            bundle: task.bundle.clone(),
            pid: p.pid,
            status: status as i32,
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: false,
            exit_status: exit.map_or(0, |e| e.status),
            exited_at: exit.map(|e| e.timestamp()),
            exec_id: req.exec_id,
        }
        .encode_to_vec())
    }

    fn pids(&mut self, req: proto::ProcessRequest) -> Outcome {
        self.own(&req.id)?;
        let out = self.runtime_call(&["ps", "--format", "json", &req.id])?;
        let text = String::from_utf8_lossy(&out);
        let processes = text
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .map(|pid| proto::ProcessInfo { pid, info: None })
            .collect();
        Ok(proto::PidsResponse { processes }.encode_to_vec())
    }

    fn update(&mut self, payload: &[u8]) -> Outcome {
        #[derive(Clone, PartialEq, Message)]
        struct UpdateTaskRequest {
            #[prost(string, tag = "1")]
            id: String,
            #[prost(message, optional, tag = "2")]
            resources: Option<prost_types::Any>,
        }
        let req: UpdateTaskRequest = decode(payload)?;
        self.own(&req.id)?;
        let Some(resources) = req.resources else { return Ok(Vec::new()) };
        let file = self.bundle.join(".update.json");
        let _ = std::fs::remove_file(&file);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &resources.value))
            .map_err(|e| err(Code::Unknown, format!("{}: {e}", file.display())))?;
        let arg = file.to_string_lossy().into_owned();
        let result = self.runtime_call(&["update", "--resources", &arg, &req.id]);
        let _ = std::fs::remove_file(&file);
        result.map(|_| Vec::new())
    }

    fn wait(&mut self, conn: u64, stream: u32, payload: &[u8]) -> Result<Option<Vec<u8>>, RpcError> {
        let req: proto::ProcessRequest = decode(payload)?;
        let task = self.own(&req.id)?;
        let exit = task.wait(&req.exec_id, Waiter { conn, stream }).map_err(task_err)?;
        Ok(exit.map(|e| proto::WaitResponse { exit_status: e.status, exited_at: Some(e.timestamp()) }.encode_to_vec()))
    }

    /// Exits reaped by the server's reaper.
    pub fn reaped(&mut self, exits: Vec<Reaped>) {
        self.reaped.extend(exits);
        self.apply_reaped();
    }

    fn apply_reaped(&mut self) {
        for (pid, status) in std::mem::take(&mut self.reaped) {
            let Some(task) = &mut self.task else { continue };
            let exit = exit_now(status);
            let Some((exec_id, waiters)) = task.exited(pid, exit) else { continue };
            let reply = proto::WaitResponse { exit_status: status, exited_at: Some(exit.timestamp()) }.encode_to_vec();
            for w in waiters {
                self.outbox.push((w.conn, w.stream, Ok(reply.clone())));
            }
            let id = if exec_id.is_empty() { task.id.clone() } else { exec_id };
            let event = proto::TaskExit {
                container_id: task.id.clone(),
                id,
                pid,
                exit_status: status,
                exited_at: Some(exit.timestamp()),
            };
            self.publish(Event::exit(event));
        }
    }

    /// A connection closed: its waits are dropped.
    pub fn forget(&mut self, conn: u64) {
        if let Some(t) = &mut self.task {
            t.forget(conn);
        }
    }
}
