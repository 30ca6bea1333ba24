//! The `hoist-init` binary: PID 1. All of it lives in the library.

fn main() {
    hoist_init::main()
}
