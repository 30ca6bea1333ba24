//! Times what `network = "bridge"` adds to each start of a service: [`bridge::attach`]
//! (the old namespace and veth removed, a new pair made and configured, the address kept,
//! hosts file and rules), run natively N times as N restarts of one service with one
//! published port. `tests/bench/bridge-vs-cni.sh` runs it in a network and mount namespace
//! of its own, beside Debian's CNI plugins doing the same work.
//!
//! Usage (root, in a private network namespace with a tmpfs on /run): bridge_bench [N]

use std::time::Instant;

use hoist_config::service_net::{DEFAULT_BRIDGE_SUBNET, Publish};
use hoist_services::bridge;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let publish: Vec<Publish> = vec!["8080:80".parse().expect("publish")];
    let mut ms = Vec::with_capacity(n);
    let mut addresses = std::collections::BTreeSet::new();
    for i in 0..n {
        let t = Instant::now();
        match bridge::attach("bench", DEFAULT_BRIDGE_SUBNET, &publish) {
            Ok(ip) => addresses.insert(ip),
            Err(e) => {
                eprintln!("bridge_bench: attach {i}: {e}");
                std::process::exit(1);
            }
        };
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let t = Instant::now();
    if let Err(e) = bridge::release("bench", DEFAULT_BRIDGE_SUBNET) {
        eprintln!("bridge_bench: release: {e}");
        std::process::exit(1);
    }
    let release = t.elapsed().as_secs_f64() * 1000.0;
    let first = ms.remove(0);
    ms.sort_by(f64::total_cmp);
    let median = ms.get(ms.len() / 2).copied().unwrap_or(first);
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    println!(
        "hoist bridge: first attach {first:.1} ms; restart median {median:.1} ms, mean {mean:.1} ms over {} restarts; \
         release {release:.1} ms; addresses handed out: {}",
        ms.len(),
        addresses.len()
    );
}
