//! Every file in fixtures/reject must be refused exactly where its first line says:
//! `# expect: LINE:COLUMN: KEY: SUBSTRING`. Every file in fixtures/accept must parse.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hoist_config::{
    Backoff, Bind, Capabilities, ConfigError, ImageSource, Ipv4Cidr, OneShot, Ready, RestartPolicy, Service, Signal,
    StartLimit, parse,
};

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
    assert!(files.len() >= 70, "only {} reject fixtures", files.len());
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
    assert!(files.len() >= 4, "only {} accept fixtures", files.len());
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
    // No address: DHCP, name servers from the lease.
    assert_eq!(c.network.mode, hoist_config::NetworkMode::Dhcp);
    assert_eq!((c.network.address, c.network.gateway), (None, None));
    assert!(c.network.dns.is_empty());
    assert!(c.network.enabled);
    assert!(c.service.is_empty() && c.sysctl.is_empty() && c.kernel.modules.is_empty());
}

#[test]
fn network_modes() {
    let c = accept("dhcp.toml");
    assert_eq!(c.network.mode, hoist_config::NetworkMode::Dhcp);
    assert_eq!(c.network.interface, "eth1");
    assert_eq!(c.network.dns, [Ipv4Addr::new(9, 9, 9, 9)], "written name servers override the lease's");
    assert_eq!((c.network.address, c.network.gateway), (None, None));
    // Static without keys: QEMU's user network, as before DHCP existed.
    let c = accept("static_defaults.toml");
    assert_eq!(c.network, hoist_config::Network::qemu_static());
    assert_eq!(c.network.address.map(|a| a.to_string()).as_deref(), Some("10.0.2.15/24"));
    // An address alone means static.
    assert_eq!(accept("full.toml").network.mode, hoist_config::NetworkMode::Static);
}

#[test]
fn service_networks() {
    use hoist_config::{Proto, Publish, ServiceNetwork};
    let c = accept("service_networks.toml");
    assert_eq!(c.network.bridge_subnet.to_string(), "172.30.0.0/24");
    let api = &c.service["api"];
    assert_eq!(api.network, ServiceNetwork::Bridge);
    assert_eq!(
        api.publish,
        [
            Publish { host: 8080, service: 80, proto: Proto::Tcp },
            Publish { host: 53, service: 53, proto: Proto::Udp },
            Publish { host: 53, service: 53, proto: Proto::Tcp },
        ]
    );
    assert_eq!(c.service["batch"].network, ServiceNetwork::None);
    assert_eq!(accept("minimal.toml").network.bridge_subnet.to_string(), "10.88.0.0/16");
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

#[test]
fn supervision_fixture_values() {
    let c = accept("supervision.toml");
    let db = &c.service["db"];
    assert_eq!(db.ready, Ready::Tcp { port: 5432 });
    assert_eq!((db.memory, db.pids, db.cpu), (Some(512 << 20), Some(200), Some(2.0)));
    assert_eq!((db.disk, c.service["api"].disk), (1 << 30, Service::DEFAULT_DISK));
    assert_eq!(db.user, Some((999, 999)));
    assert_eq!(db.start_timeout, Duration::from_secs(120));
    let bind =
        |source: &str, dest: &str, readonly| Bind { source: source.into(), volume: None, dest: dest.into(), readonly };
    assert_eq!(
        db.binds,
        [
            bind("/var/lib/db", "/var/lib/postgresql/data", false),
            bind("/etc/ssl", "/etc/ssl", true),
            bind("/run/db", "/run/db", false)
        ]
    );
    assert!(db.depends_on.is_empty());

    let api = &c.service["api"];
    assert_eq!(api.depends_on, ["network", "db"]);
    assert_eq!(
        api.ready,
        Ready::Exec { command: vec!["curl".into(), "-f".into(), "http://127.0.0.1:8081/health".into()] }
    );
    assert_eq!((api.memory, api.cpu, api.pids), (Some(1 << 30), Some(0.5), None));
    assert_eq!(api.backoff, Backoff { initial: Duration::from_millis(250), factor: 1.5, max: Duration::from_secs(60) });
    assert_eq!(api.start_limit, StartLimit { burst: 3, interval: Duration::from_secs(30) });

    let web = &c.service["web"];
    assert_eq!(web.depends_on, ["api", "db"]);
    assert_eq!(web.ready, Ready::File { path: "/run/ready".into() });
    assert_eq!(web.memory, Some(64 << 20));
    assert_eq!(web.capabilities, Capabilities { add: vec!["CAP_NET_BIND_SERVICE".into()], drop: vec!["ALL".into()] });

    let cache = &c.service["cache"];
    assert_eq!(cache.ready, Ready::Running);
    assert_eq!(cache.capabilities.drop, ["CAP_NET_RAW", "CAP_MKNOD"]);
    assert!(cache.capabilities.add.is_empty());
    assert_eq!(cache.seccomp, hoist_config::Seccomp::Unconfined);
    assert_eq!(web.seccomp, hoist_config::Seccomp::Default);

    let metrics = &c.service["metrics"];
    assert_eq!(metrics.ready, Ready::Notify);
    assert_eq!(metrics.backoff, Backoff { factor: 3.0, ..Backoff::default() });
    assert_eq!(metrics.user, Some((65534, 65534)));

    assert_eq!(c.start_order(), [vec!["cache", "db", "metrics"], vec!["api"], vec!["web"]]);
    assert_eq!(c.dependents("db"), ["api", "web"]);
    assert_eq!(c.dependents("api"), ["web"]);
    assert_eq!(c.dependents(hoist_config::NETWORK_TARGET), ["api"]);
    assert!(c.dependents("web").is_empty() && c.dependents("nothing").is_empty());
}

#[test]
fn one_shot_stages_keep_file_order() {
    let c = accept("supervision.toml");
    let names = |list: &[OneShot]| list.iter().map(|o| o.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&c.onboot), ["fsck", "seed"]);
    assert_eq!(names(&c.onshutdown), ["flush"]);

    let fsck = &c.onboot[0];
    assert_eq!(fsck.image, ImageSource::Dir { dir: "/srv/tools".into() });
    assert_eq!(fsck.command, ["fsck", "-y", "/dev/vdb"]);
    assert!(fsck.required);
    assert_eq!(fsck.timeout, Duration::from_secs(300));
    assert_eq!(fsck.capabilities.add, ["CAP_SYS_ADMIN"]);

    let seed = &c.onboot[1];
    assert!(!seed.required);
    assert_eq!(seed.timeout, OneShot::DEFAULT_TIMEOUT);
    assert_eq!(seed.env["MODE"], "seed");
    assert_eq!((seed.working_dir.as_deref(), seed.user), (Some("/work"), Some((1000, 1000))));
    assert_eq!(
        seed.binds,
        [Bind { source: "/var/lib/data".into(), volume: None, dest: "/data".into(), readonly: false }]
    );

    let flush = &c.onshutdown[0];
    assert_eq!(
        (flush.required, flush.timeout, &flush.command[..]),
        (false, Duration::from_secs(60), &["sync".to_string()][..])
    );
    assert_eq!(flush.capabilities, Capabilities::default());
}

#[test]
fn new_service_keys_have_their_defaults() {
    let c = accept("full.toml");
    let web = &c.service["web"];
    let defaults = Service::new(web.image.clone());
    assert_eq!(web.ready, Ready::Running);
    assert_eq!(web.start_timeout, Duration::from_secs(60));
    assert_eq!(web.backoff, Backoff { initial: Duration::from_millis(100), factor: 2.0, max: Duration::from_secs(30) });
    assert_eq!(web.start_limit, StartLimit { burst: 5, interval: Duration::from_secs(60) });
    assert_eq!((web.memory, web.pids, web.cpu, web.user), (None, None, None, None));
    assert!(web.depends_on.is_empty() && web.binds.is_empty());
    assert_eq!(web.capabilities, Capabilities::default());
    assert_eq!(
        (&web.ready, web.start_timeout, web.backoff),
        (&defaults.ready, defaults.start_timeout, defaults.backoff)
    );
    assert!(c.onboot.is_empty() && c.onshutdown.is_empty());
    assert_eq!(c.start_order(), [vec!["web"]]);
}

#[test]
fn volumes_fixture_values() {
    use hoist_config::{Device, Filesystem, State, Volume};
    let c = accept("volumes.toml");
    let data = &c.volume["data"];
    assert_eq!(data.device, Device::Serial("data1".into()));
    assert_eq!((data.filesystem, data.label.as_deref(), data.required), (Filesystem::Ext4, Some("hoist-data"), true));
    assert_eq!(data.wait, Duration::from_secs(10));
    let scratch = &c.volume["scratch"];
    assert_eq!(scratch.device, Device::ById("virtio-scratch".into()));
    assert_eq!(
        (scratch.label.as_deref(), scratch.required, scratch.wait),
        (Some("scratch"), false, Volume::DEFAULT_WAIT)
    );
    assert_eq!(c.volume["old"].label, None, "found by UUID: any label");
    assert_eq!(c.volume["named"].label.as_deref(), Some("hoist-logs"), "found by label: that label");
    assert_eq!(c.volume["old"].device, Device::Uuid("0f0e0d0c-1111-2222-3333-444455556666".into()));
    assert_eq!(c.state, Some(State { volume: "data".into() }));
    let on = |volume: &str, source: &str, dest: &str, readonly| Bind {
        source: source.into(),
        volume: Some(volume.into()),
        dest: dest.into(),
        readonly,
    };
    assert_eq!(
        c.service["db"].binds,
        [
            on("data", "db", "/var/lib/db", false),
            on("scratch", "", "/scratch", true),
            Bind { source: "/etc/ssl".into(), volume: None, dest: "/etc/ssl".into(), readonly: true },
        ]
    );
}
