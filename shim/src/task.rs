//! The container's processes as the shim knows them: the init process and the exec'd
//! ones, their states and exits, and who waits for which exit. Pure bookkeeping: the
//! server feeds it what happened (a create, a start, a reaped pid) and sends what it
//! returns (replies to waiters, events).

use std::collections::BTreeMap;

use prost_types::Timestamp;

use crate::proto::Status;

/// How many exec'd processes one task may hold at once: each costs memory here, and
/// containerd removes them when done.
pub const MAX_EXECS: usize = 256;

/// Stdio URIs of a process, as given, for State.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    /// Wall-clock seconds and nanoseconds: what containerd shows, never used for timing.
    pub at: (i64, i32),
}

impl Exit {
    pub fn timestamp(&self) -> Timestamp {
        Timestamp { seconds: self.at.0, nanos: self.at.1 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub status: Status,
    pub exit: Option<Exit>,
    pub stdio: Stdio,
    /// An exec's process spec (JSON), kept until it is started.
    pub spec: Vec<u8>,
}

impl Process {
    fn new(stdio: Stdio) -> Self {
        Process { pid: 0, status: Status::Created, exit: None, stdio, spec: Vec::new() }
    }
}

/// A connection's request that waits for an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    pub conn: u64,
    pub stream: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TaskError {
    #[error("process {0} does not exist")]
    NoProcess(String),
    #[error("exec {0} already exists")]
    ExecExists(String),
    #[error("too many exec'd processes (limit {MAX_EXECS})")]
    TooManyExecs,
    #[error("process {0} is running; stop it first")]
    Running(String),
}

#[derive(Debug)]
pub struct Task {
    pub id: String,
    pub bundle: String,
    pub init: Process,
    execs: BTreeMap<String, Process>,
    waiters: Vec<(String, Waiter)>,
}

fn label(exec_id: &str) -> String {
    if exec_id.is_empty() { "init".to_string() } else { format!("exec {exec_id}") }
}

impl Task {
    pub fn new(id: String, bundle: String, stdio: Stdio) -> Self {
        Task { id, bundle, init: Process::new(stdio), execs: BTreeMap::new(), waiters: Vec::new() }
    }

    /// The process `exec_id` names ("" = init).
    pub fn process(&self, exec_id: &str) -> Result<&Process, TaskError> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs.get(exec_id).ok_or_else(|| TaskError::NoProcess(label(exec_id)))
    }

    pub fn process_mut(&mut self, exec_id: &str) -> Result<&mut Process, TaskError> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs.get_mut(exec_id).ok_or_else(|| TaskError::NoProcess(label(exec_id)))
    }

    pub fn add_exec(&mut self, exec_id: &str, stdio: Stdio, spec: Vec<u8>) -> Result<(), TaskError> {
        if self.execs.contains_key(exec_id) {
            return Err(TaskError::ExecExists(exec_id.to_string()));
        }
        if self.execs.len() >= MAX_EXECS {
            return Err(TaskError::TooManyExecs);
        }
        let mut p = Process::new(stdio);
        p.spec = spec;
        self.execs.insert(exec_id.to_string(), p);
        Ok(())
    }

    /// The process has been started as `pid`. An exit reaped while the runtime was still
    /// starting it (a process that dies at once) is applied right away.
    pub fn started(&mut self, exec_id: &str, pid: u32) -> Result<(), TaskError> {
        let p = self.process_mut(exec_id)?;
        p.pid = pid;
        p.spec = Vec::new();
        if p.exit.is_none() {
            p.status = Status::Running;
        }
        Ok(())
    }

    /// The init process exists (created, not yet started) as `pid`.
    pub fn created(&mut self, pid: u32) {
        self.init.pid = pid;
    }

    /// Removes a process that is not running; returns it. Init is "removed" by the caller
    /// dropping the whole task.
    pub fn remove_exec(&mut self, exec_id: &str) -> Result<Process, TaskError> {
        let p = self.process(exec_id)?;
        if p.status == Status::Running {
            return Err(TaskError::Running(label(exec_id)));
        }
        self.waiters.retain(|(e, _)| e != exec_id);
        self.execs.remove(exec_id).ok_or_else(|| TaskError::NoProcess(label(exec_id)))
    }

    /// A reaped pid. Returns which process it was and who waited for it; unknown pids
    /// (the runtime's own helpers, orphans re-parented to the shim) give None.
    pub fn exited(&mut self, pid: u32, exit: Exit) -> Option<(String, Vec<Waiter>)> {
        if pid == 0 {
            return None;
        }
        let exec_id = if self.init.pid == pid && self.init.exit.is_none() {
            String::new()
        } else {
            self.execs.iter().find(|(_, p)| p.pid == pid && p.exit.is_none()).map(|(id, _)| id.clone())?
        };
        let p = self.process_mut(&exec_id).ok()?;
        p.exit = Some(exit);
        p.status = Status::Stopped;
        let (mine, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.waiters).into_iter().partition(|(e, _)| *e == exec_id);
        self.waiters = rest;
        Some((exec_id, mine.into_iter().map(|(_, w)| w).collect()))
    }

    /// A Wait request: the exit at once if there is one, or None and the waiter is kept.
    pub fn wait(&mut self, exec_id: &str, waiter: Waiter) -> Result<Option<Exit>, TaskError> {
        let p = self.process(exec_id)?;
        if let Some(exit) = p.exit {
            return Ok(Some(exit));
        }
        self.waiters.push((exec_id.to_string(), waiter));
        Ok(None)
    }

    /// Every wait still pending, for a task that goes away.
    pub fn take_waiters(&mut self) -> Vec<Waiter> {
        std::mem::take(&mut self.waiters).into_iter().map(|(_, w)| w).collect()
    }

    /// A connection went away: its waits with it.
    pub fn forget(&mut self, conn: u64) {
        self.waiters.retain(|(_, w)| w.conn != conn);
    }

    /// Pids of processes that still run (exec'd ones included), for a final kill.
    pub fn running_pids(&self) -> Vec<u32> {
        std::iter::once(&self.init)
            .chain(self.execs.values())
            .filter(|p| p.status == Status::Running && p.pid != 0)
            .map(|p| p.pid)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(status: u32) -> Exit {
        Exit { status, at: (1, 0) }
    }

    fn task() -> Task {
        let mut t = Task::new("web".into(), "/b".into(), Stdio::default());
        t.created(10);
        t.started("", 10).expect("start");
        t
    }

    #[test]
    fn a_wait_is_answered_by_the_exit_of_its_process_only() {
        let mut t = task();
        t.add_exec("probe", Stdio::default(), b"{}".to_vec()).expect("exec");
        t.started("probe", 11).expect("start exec");
        let w = |stream| Waiter { conn: 1, stream };
        assert_eq!(t.wait("", w(1)), Ok(None));
        assert_eq!(t.wait("probe", w(3)), Ok(None));
        assert_eq!(t.exited(11, exit(0)), Some(("probe".into(), vec![w(3)])));
        assert_eq!(t.exited(99, exit(0)), None, "unknown pid");
        assert_eq!(t.exited(10, exit(137)), Some((String::new(), vec![w(1)])));
        assert_eq!(t.init.status, Status::Stopped);
        assert_eq!(t.wait("", w(5)), Ok(Some(exit(137))), "a later wait gets the exit at once");
    }

    #[test]
    fn a_process_that_dies_while_starting_stays_stopped() {
        let mut t = Task::new("web".into(), "/b".into(), Stdio::default());
        t.created(10);
        t.exited(10, exit(1));
        t.started("", 10).expect("start");
        assert_eq!((t.init.status, t.init.exit.map(|e| e.status)), (Status::Stopped, Some(1)));
    }

    #[test]
    fn running_execs_are_not_removed_and_ids_are_unique() {
        let mut t = task();
        t.add_exec("a", Stdio::default(), Vec::new()).expect("exec");
        assert_eq!(t.add_exec("a", Stdio::default(), Vec::new()), Err(TaskError::ExecExists("a".into())));
        t.started("a", 12).expect("start");
        assert_eq!(t.remove_exec("a").map(|_| ()), Err(TaskError::Running("exec a".into())));
        t.exited(12, exit(0));
        assert_eq!(t.remove_exec("a").map(|p| p.exit), Ok(Some(exit(0))));
        assert_eq!(t.process("a").map(|_| ()), Err(TaskError::NoProcess("exec a".into())));
    }

    #[test]
    fn execs_are_bounded_and_a_closed_connection_drops_its_waits() {
        let mut t = task();
        for i in 0..MAX_EXECS {
            t.add_exec(&i.to_string(), Stdio::default(), Vec::new()).expect("exec");
        }
        assert_eq!(t.add_exec("x", Stdio::default(), Vec::new()), Err(TaskError::TooManyExecs));
        t.wait("", Waiter { conn: 7, stream: 1 }).expect("wait");
        t.forget(7);
        assert_eq!(t.exited(10, exit(0)), Some((String::new(), vec![])));
    }
}
