//! Build-only checks (no VM): two builds of the same config are byte-identical, and the
//! outputs are private.

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

/// The outputs hold the server's TLS key and every `env` value: 0600 on the host, and in
/// the guest `/etc/hoist` is root's alone (issue 9, defect 2).
#[test]
fn outputs_and_the_guest_config_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().expect("tempdir");
    let host = HOST.replace("[service.web]", "[service.web]\nenv = { TOKEN = \"s3cret\" }");
    let out = hoist_tests::build_host_with(work.path(), &host, hoist_images::compress::Compression::None);
    for file in ["kernel", "initrd.img", "cmdline"] {
        let mode = std::fs::metadata(out.join(file)).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
    let records = hoist_tests::newc::read(&std::fs::read(out.join("initrd.img")).expect("read")).expect("newc");
    let mode_of = |name: &str| {
        let r = records.iter().find(|r| r.name == name.as_bytes()).unwrap_or_else(|| panic!("{name} not in initrd"));
        (r.mode & 0o7777, r.uid)
    };
    assert_eq!(mode_of("etc/hoist"), (0o700, 0));
    assert_eq!(mode_of("etc/hoist/host.toml"), (0o600, 0));
    assert_eq!(mode_of("etc/hoist/build.toml"), (0o600, 0));
    assert_eq!(mode_of("etc/hoist/tls/server.key"), (0o600, 0));
}

/// An output directory another user could plant files in is refused, naming it, before
/// anything is written.
#[test]
fn an_output_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().expect("tempdir");
    let config = work.path().join("host.toml");
    std::fs::write(&config, "version = 1\n").expect("write host.toml");
    let out = work.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let opts = hoist_images::build::BuildOptions {
        config,
        out: out.clone(),
        bin_dir: hoist_tests::bin_dir(),
        compression: hoist_images::compress::Compression::Lz4,
        pki: None,
        allow_foreign_arch: false,
        pinned: Default::default(),
    };
    let err = hoist_images::build::build(&opts, &hoist_images::build::Quiet).expect_err("refused");
    assert!(err.to_string().starts_with(&format!("output directory {}: writable by", out.display())), "{err}");
    assert_eq!(std::fs::read_dir(&out).expect("list").count(), 0, "something was written");
}
