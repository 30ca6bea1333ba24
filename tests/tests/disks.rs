//! `hoist run --disk`: a missing image is made (sparse, 0600, the size asked for) and every
//! image is attached as a virtio-blk disk the guest sees with its serial and size.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hoist_tests::{bin_dir, build_host, require_vm_tools};

const HOST: &str = r#"
version = 1
[service.probe]
image = "@IMAGE@"
command = ["sh", "-c", "i=0; while [ ! -e /sys/block/vdb/serial ] && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done; s=''; for d in /sys/block/vd*; do s=\"$s $(cat $d/serial):$(cat $d/size)\"; done; echo \"disks$s\"; exec sleep 1000000"]
"#;

#[test]
fn hoist_run_attaches_disks_by_serial() {
    require_vm_tools();
    let work = tempfile::tempdir().expect("tempdir");
    let out = build_host(work.path(), HOST);
    let data = work.path().join("data.img");
    let logs = work.path().join("logs.img");
    std::fs::write(&logs, vec![7u8; 1 << 20]).expect("existing image");
    let mut child = Command::new(bin_dir().join("hoist"))
        .arg("run")
        .arg(&out)
        .arg("--disk")
        .arg(format!("{},serial=data1,size=64M", data.display()))
        .arg("--disk")
        .arg(format!("{},serial=logs", logs.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hoist run");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    for stream in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_secs(5))) {
            Ok(line) if line.contains("[probe] disks") => break Some(line),
            Ok(line) => seen.push(line),
            Err(_) if Instant::now() >= deadline => break None,
            Err(_) => {}
        }
    };
    // Power off through hoist run's own Ctrl-C path, then make sure nothing is left.
    let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
    let stop = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait").is_none() && Instant::now() < stop {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = found.unwrap_or_else(|| panic!("no disks line within 300 s; output:\n{}", seen.join("\n")));
    // Sizes in 512-byte sectors: 64 MiB made by hoist run, 1 MiB given.
    assert!(line.ends_with("disks data1:131072 logs:2048"), "{line}");
    let meta = std::fs::metadata(&data).expect("data.img made");
    assert_eq!(meta.len(), 64 << 20);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(meta.blocks() * 512 < 64 << 20, "data.img is sparse");
    assert_eq!(std::fs::read(&logs).expect("logs.img"), vec![7u8; 1 << 20], "an existing image is used as it is");
    assert!(seen.iter().any(|l| l.contains("created") && l.contains("data.img")), "{}", seen.join("\n"));
}
