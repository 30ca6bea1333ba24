//! Every file in fixtures/reject must be refused exactly where its first line says:
//! `# expect: LINE:COLUMN: KEY: SUBSTRING`. Every file in fixtures/accept must parse.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hoist_config::{ConfigError, ImageSource, Ipv4Cidr, RestartPolicy, Signal, parse};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

struct Expected {
    line: usize,
    column: usize,
    key: String,
    substring: String,
}

fn expectation(name: &str, text: &str) -> Expected {
    let first = text.lines().next().unwrap_or_default();
    parse_expectation(first)
        .unwrap_or_else(|| panic!("{name}: first line must be `# expect: LINE:COLUMN: KEY: SUBSTRING`, got {first:?}"))
}

fn parse_expectation(first: &str) -> Option<Expected> {
    let spec = first.strip_prefix("# expect: ")?;
    let (position, rest) = spec.split_once(": ")?;
    let (key, substring) = rest.split_once(": ")?;
    let (line, column) = position.split_once(':')?;
    Some(Expected {
        line: line.parse().ok()?,
        column: column.parse().ok()?,
        key: key.to_string(),
        substring: substring.to_string(),
    })
}

#[test]
fn each_reject_fixture_fails_where_it_says() {
    let files = fixtures("reject");
    assert!(files.len() >= 15, "only {} reject fixtures", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().expect("file name").to_string_lossy().to_string();
        let text = fs::read_to_string(path).expect("readable fixture");
        let want = expectation(&name, &text);
        match parse(&text, &name) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e @ ConfigError::Io { .. }) => failures.push(format!("{name}: unexpected {e}")),
            Err(ref e @ ConfigError::Invalid { ref file, line, column, ref key, ref message }) => {
                let ok = *file == name
                    && line == want.line
                    && column == want.column
                    && *key == want.key
                    && message.contains(&want.substring)
                    && e.to_string() == format!("{name}:{line}:{column}: {key}: {message}");
                if !ok {
                    failures.push(format!("{name}: got `# expect: {line}:{column}: {key}: {message}`"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}

fn accept(name: &str) -> hoist_config::Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/accept").join(name);
    let text = fs::read_to_string(&path).expect("readable fixture");
    parse(&text, name).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_accept_fixture_parses() {
    let files = fixtures("accept");
    assert!(files.len() >= 2, "only {} accept fixtures", files.len());
    for path in files {
        let name = path.file_name().expect("file name").to_string_lossy().to_string();
        assert_eq!(accept(&name).version, 1, "{name}");
    }
}

#[test]
fn full_fixture_values() {
    let c = accept("full.toml");
    assert_eq!(c.host.hostname, "demo");
    assert_eq!(c.kernel.modules, ["overlay", "veth"]);
    assert_eq!(c.kernel.cmdline.as_deref(), Some("console=ttyS0 quiet panic=-1"));
    assert_eq!(c.kernel.path, None);
    assert_eq!(c.sysctl["net.ipv4.ip_forward"], "1");
    assert_eq!(c.sysctl["kernel.panic"], "10");
    assert_eq!(c.network.address, Some(Ipv4Cidr { addr: Ipv4Addr::new(10, 0, 2, 15), prefix: 24 }));
    assert_eq!(c.network.dns, [Ipv4Addr::new(10, 0, 2, 3)]);
    let web = &c.service["web"];
    assert_eq!(web.image, ImageSource::Oci { dir: "../images/busybox".into(), tag: Some("latest".into()) });
    assert_eq!(web.command, ["httpd", "-f", "-p", "80", "-h", "/www"]);
    assert_eq!(web.env["GREETING"], "hello");
    assert_eq!(web.working_dir.as_deref(), Some("/"));
    assert_eq!(web.restart, RestartPolicy::OnFailure);
    assert_eq!(web.stop_signal, Signal(2));
    assert_eq!(web.stop_timeout, Duration::from_secs(5));
    assert!(web.readonly_rootfs);
    assert_eq!(c.service.len(), 1);
}

#[test]
fn minimal_fixture_gets_the_documented_defaults() {
    let c = accept("minimal.toml");
    assert_eq!(c, hoist_config::Config::default());
    assert_eq!(c.host.hostname, "hoist");
    assert_eq!(c.network.interface, "eth0");
    assert_eq!(c.network.address.map(|a| a.to_string()).as_deref(), Some("10.0.2.15/24"));
    assert_eq!(c.network.gateway, Some(Ipv4Addr::new(10, 0, 2, 2)));
    assert_eq!(c.network.dns, [Ipv4Addr::new(10, 0, 2, 3)]);
    assert!(c.network.enabled);
    assert!(c.service.is_empty() && c.sysctl.is_empty() && c.kernel.modules.is_empty());
}

#[test]
fn service_defaults_and_other_image_kinds() {
    let c = accept("network_off.toml");
    assert!(!c.network.enabled);
    assert_eq!(c.sysctl["net.ipv6.conf.all.disable_ipv6"], "1");
    assert_eq!(c.sysctl["vm.overcommit_memory"], "0");
    let batch = &c.service["batch"];
    assert_eq!(
        batch.image,
        ImageSource::DockerArchive { file: "../images/job.tar".into(), reference: Some("example/job:1.0".into()) }
    );
    assert_eq!((batch.restart, batch.stop_signal), (RestartPolicy::Never, Signal::KILL));
    assert_eq!(batch.stop_timeout, Duration::from_secs(90));
    let files = &c.service["files"];
    assert_eq!(files.image, ImageSource::Dir { dir: "/srv/rootfs".into() });
    assert_eq!(files.stop_timeout, Duration::ZERO);
    assert_eq!((files.restart, files.stop_signal), (RestartPolicy::Always, Signal::TERM));
    assert!(files.command.is_empty() && files.env.is_empty() && files.working_dir.is_none() && !files.readonly_rootfs);
}
