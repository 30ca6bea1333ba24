//! The `hoist-init` binary: PID 1, and (run again by PID 1) its helpers: the volume helper
//! (`--volumes`) and the DHCP client (`--dhcp`). All of it lives in the library.

fn main() {
    // The kernel passes PID 1 the command line's unknown words as arguments: only a
    // process that is not PID 1 is ever the helper.
    if std::process::id() != 1 {
        match std::env::args().nth(1).as_deref() {
            Some(hoist_init::volumes::ARG) => hoist_init::volumes::main(),
            Some(hoist_init::dhcp::ARG) => hoist_init::dhcp::main(),
            _ => {}
        }
    }
    hoist_init::main()
}
