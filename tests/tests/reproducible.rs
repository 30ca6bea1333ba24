//! Two builds of the same config are byte-identical.

use hoist_tests::build_host;

const HOST: &str = r#"
version = 1
[host]
hostname = "repro"
[sysctl]
"net.ipv4.ip_forward" = 1
[service.web]
image = "@IMAGE@"
command = ["httpd", "-f", "-p", "80", "-h", "/www"]
"#;

#[test]
fn two_builds_are_byte_identical() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let out_a = build_host(a.path(), HOST);
    let out_b = build_host(b.path(), HOST);
    for file in ["kernel", "initrd.img", "cmdline"] {
        let x = std::fs::read(out_a.join(file)).expect("read a");
        let y = std::fs::read(out_b.join(file)).expect("read b");
        assert!(!x.is_empty(), "{file} is empty");
        assert!(x == y, "{file} differs between two builds ({} vs {} bytes)", x.len(), y.len());
    }
}
