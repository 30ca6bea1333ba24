//! hoist-guest: the guest contract. Every fact that two of hoist's programs must agree on
//! is defined here once (DESIGN.md decision 8): the builder (`hoist-images`) puts files
//! where PID 1 (`hoist-init`) and the supervisor (`hoist-services`) look for them, PID 1
//! prints console lines that `hoist run`, `boot-bench` and the VM tests read, the control
//! API sends PID 1 the signals it understands.
//!
//! - [`paths`]: where things live in the guest;
//! - [`pki`]: the control API's certificate file names, server name and client roles;
//! - [`api`]: the control API's socket, port and message limit;
//! - [`signals`]: which signal asks PID 1 to power off or reboot;
//! - [`kernel`]: the default command line and the modules every image carries;
//! - [`console`]: the console lines other code reads, as a typed [`console::Line`] that
//!   prints and parses with one grammar;
//! - [`boot`]: what PID 1 needs of the host config, written by the builder in a line format;
//! - [`timeline`]: the boot timeline file PID 1 hands the supervisor;
//! - [`network`]: the built-in `network` target, reached when PID 1 (or its DHCP client)
//!   says so in a file;
//! - [`netlink`]: rtnetlink requests, built and acked (PID 1's address and route, the DHCP
//!   client's lease, the supervisor's bridge and veth pairs);
//! - [`volume`]: volumes, from the boot file to PID 1's mount and the state file the
//!   supervisor waits for; [`disk`]: what a disk holds, so that only a blank one is formatted;
//! - [`modules`]: the kernel's module index, read at build time (what goes into the
//!   initramfs) and by PID 1 at boot (what to load);
//! - [`logfile`]: size-capped log files, written by PID 1 (containerd's log), the
//!   supervisor and every service's shim;
//! - [`servicelog`]: the stdio URI of service tasks and how their lines are written
//!   (console budget, line splitting, stamps), by the supervisor's word and the shim's hand;
//! - [`nofollow`]: directories opened one component at a time, never through a symlink
//!   (PID 1's state directories, the supervisor's volume binds);
//! - [`atomic`]: replacing a file whole, never through a planted name (PID 1's problems,
//!   the supervisor's persisted state, and on the host the build's outputs);
//! - [`text`]: names from images, configs and disks escaped for a terminal.
//!
//! It is a library of constants and small code on std (plus libc's signal numbers and
//! thiserror): no async, no gRPC, no syscalls beyond files, getrandom (temporary names) and a
//! pipe, so PID 1 can link it and stay small. The optional `x509` feature (x509-parser,
//! for [`pki`]'s reading of client certificates) is for the API server and `hoist pki`;
//! a workspace build unifies features, so only `-p hoist-init` builds PID 1 without it.
//! It does not decide anything; the crates on either side of a contract do. What is not
//! here on purpose: the host side's own defaults (`hoist-qemu`'s command line for a bare
//! kernel), and free-text console lines meant for people, which may change wording.

pub mod api;
pub mod atomic;
pub mod boot;
pub mod console;
pub mod disk;
pub mod kernel;
pub mod logfile;
pub mod modules;
pub mod netlink;
pub mod network;
pub mod nofollow;
pub mod paths;
pub mod pki;
pub mod servicelog;
pub mod signals;
pub mod text;
pub mod timeline;
pub mod volume;
