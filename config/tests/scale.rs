//! `hoist check` on a large host stays linear: 20,000 services in one dependency chain.

use std::fmt::Write;

#[test]
fn a_long_dependency_chain_parses() {
    const N: usize = 20_000;
    let mut text = String::from("version = 1\n");
    for i in 0..N {
        // Default timeouts: only written ones count towards the shutdown maximum.
        write!(text, "\n[service.s{i:05}]\nimage = \"dir:/x\"\n").expect("write to a String");
        if i + 1 < N {
            writeln!(text, "depends_on = [\"s{:05}\"]", i + 1).expect("write to a String");
        }
    }
    let config = hoist_config::parse(&text, "chain.toml").unwrap_or_else(|e| panic!("{e}"));
    let levels = config.start_order();
    assert_eq!(levels.len(), N);
    assert_eq!(levels[N - 1], ["s00000"]);
}
