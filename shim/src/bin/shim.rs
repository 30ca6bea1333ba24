//! `containerd-shim-hoist-v1`: containerd runs it as `... start`, `... delete`, and
//! `start` runs it again to serve.

use std::io::Write;
use std::process::ExitCode;

use hoist_shim::args::{self, Action};

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("containerd-shim-hoist-v1: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match args.action {
        Action::Version => {
            println!("containerd-shim-hoist-v1 {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Action::Start => hoist_shim::bootstrap::start(&args)
            .and_then(|address| std::io::stdout().write_all(address.as_bytes()).map_err(|e| format!("stdout: {e}"))),
        Action::Delete => hoist_shim::bootstrap::delete(&args)
            .and_then(|response| std::io::stdout().write_all(&response).map_err(|e| format!("stdout: {e}"))),
        Action::Serve => hoist_shim::bootstrap::serve(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containerd-shim-hoist-v1: {e}");
            ExitCode::FAILURE
        }
    }
}
