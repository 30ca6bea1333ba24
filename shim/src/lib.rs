//! hoist's containerd shim: `containerd-shim-hoist-v1`, the runtime `io.containerd.hoist.v1`.
//!
//! containerd starts one shim per container. The shim owns the container's processes:
//! it mounts the root, runs the OCI runtime (crun or runc) to create, start, exec, signal
//! and delete, reaps the processes as their subreaper, answers containerd's task API over
//! ttrpc, and forwards task events. Containers outlive containerd and the supervisor
//! because the shim does; a dead shim takes only its own container with it.
//!
//! Why our own: containerd's Go shim costs about a second of CPU to start under
//! emulation and 10+ MB per container; this one is one thread, no runtime, a few hundred
//! kB, and it writes the service's output to the console and its log file itself, so no
//! logger process runs per task. What it does not do: terminals, checkpoints, stats (the
//! supervisor reads cgroups itself), or copying stdio for other clients (descriptors go
//! straight to the process).
//!
//! - [`ttrpc`]: the wire format; [`proto`]: the task API's messages.
//! - [`task`]: pure bookkeeping of processes, exits and waiters.
//! - [`service`]: the methods; [`runtime`]: the OCI runtime as a command; [`stdio`],
//!   [`mounts`]: what a process needs before it runs; [`logs`]: service output, read
//!   by the shim itself; [`events`]: to containerd; [`fifo_start`], [`direct_delete`]: a crun
//!   container started and deleted without running crun again.
//! - [`server`]: the poll loop; [`bootstrap`]: `start`, serving, `delete`.

pub mod args;
pub mod bootstrap;
pub mod direct_delete;
pub mod events;
pub mod fifo_start;
pub mod logs;
pub mod mounts;
pub mod proto;
pub mod runtime;
pub mod server;
pub mod service;
pub mod stdio;
pub mod task;
pub mod ttrpc;
