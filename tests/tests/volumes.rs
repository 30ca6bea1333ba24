//! `[volume.NAME]` on real disks (QEMU raw images, virtio-blk, the guest's own e2fsprogs):
//! a blank disk is formatted once and found again by serial whatever the slot order; a
//! disk holding anything else is refused byte for byte; a missing one holds back only
//! the services that bind it; a power cut loses no fsynced record; an unfinished format is
//! done again; a full volume is ENOSPC for its writer only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hoist_guest::console::Line;
use hoist_guest::disk::{self, Found};
use hoist_tests::host::Host;
use hoist_tests::{BOOT_TIMEOUT, boot_with_disks, build_host, wait_line};

/// A sparse blank image of `mib` MiB.
fn blank(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let path = dir.join(name);
    let f = std::fs::File::create(&path).expect("create image");
    f.set_len(mib << 20).expect("size image");
    path
}

/// What hoist's own probe says the image holds.
fn found(image: &Path) -> Found {
    let bytes = std::fs::read(image).expect("read image");
    let w = (disk::WINDOW as usize).min(bytes.len());
    disk::probe(&disk::Window { size: bytes.len() as u64, head: &bytes[..w], tail: &bytes[bytes.len() - w..] })
}

fn uuid(image: &Path) -> String {
    match found(image) {
        Found::Ext { uuid, .. } => uuid,
        other => panic!("{}: not ext: {other:?}", image.display()),
    }
}

/// ext4's needs_recovery flag is clear: the filesystem was unmounted, not just cut off.
fn cleanly_unmounted(image: &Path) -> bool {
    let bytes = std::fs::read(image).expect("read image");
    let incompat = u32::from_le_bytes([bytes[0x460], bytes[0x461], bytes[0x462], bytes[0x463]]);
    le16(&bytes, 0x438) == 0xEF53 && incompat & 0x4 == 0
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn digest(image: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(image).expect("read image")).to_vec()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn boot(work: &Path, toml: &str, disks: &[(&Path, &str)]) -> hoist_qemu::Vm {
    let out = work.join("out");
    if !out.exists() {
        build_host(work, toml);
    }
    let vm = boot_with_disks(&out, &[], disks);
    wait_line(&vm, "ready", BOOT_TIMEOUT, |l| matches!(l, Line::Ready { .. })).expect("ready");
    vm
}

fn stop(mut vm: hoist_qemu::Vm) {
    let exit = vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert!(exit.clean, "{exit:?}\n{}", vm.console());
}

const KEEP: &str = r#"
version = 1
[volume.data]
device = "serial:data1"
[volume.other]
device = "serial:other1"
label = "hoist-other"

[service.writer]
image = "@IMAGE@"
user = "1000:1000"
binds = ["data/app:/data", "other:/other:ro"]
command = ["sh", "-c", "cat /proc/sys/kernel/random/boot_id >> /data/log && sync && echo \"lines $(wc -l < /data/log) owner $(stat -c %u:%g /data)\"; exec sleep 1000000"]
"#;

#[test]
fn a_blank_disk_is_formatted_once_and_found_by_serial_in_any_order() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = blank(work.path(), "data.img", 64);
    let other = blank(work.path(), "other.img", 32);

    let vm = boot(work.path(), KEEP, &[(&data, "data1"), (&other, "other1")]);
    vm.wait_for_line("[writer] lines 1 owner 1000:1000", Duration::from_secs(60)).expect("first write");
    let console = vm.console();
    assert!(console.contains("volume data: formatted /dev/vda"), "{console}");
    assert!(console.contains("volume other: formatted /dev/vdb"), "{console}");
    stop(vm);
    assert!(cleanly_unmounted(&data), "the shutdown unmounted the volume");
    let first = uuid(&data);
    assert!(matches!(found(&other), Found::Ext { ref label, .. } if label == "hoist-other"));

    // The other slot order: vda is now the other disk; serials still decide.
    let vm = boot(work.path(), KEEP, &[(&other, "other1"), (&data, "data1")]);
    vm.wait_for_line("[writer] lines 2 owner 1000:1000", Duration::from_secs(60)).expect("second write");
    let console = vm.console();
    assert!(console.contains("volume data: e2fsck /dev/vdb: clean"), "{console}");
    assert!(!console.contains("formatted"), "nothing formatted again:\n{console}");
    stop(vm);
    assert_eq!(uuid(&data), first, "the disk was not formatted again");
}

const REFUSE: &str = r#"
version = 1
[volume.fat]
device = "serial:fat1"
[volume.ext]
device = "serial:ext1"
label = "hoist-ext"
[volume.gone]
device = "serial:nowhere"
wait = "2s"

[service.on-fat]
image = "@IMAGE@"
binds = ["fat:/v"]
command = ["sh", "-c", "touch /v/x; exec sleep 1000000"]
[service.on-ext]
image = "@IMAGE@"
binds = ["ext/sub:/v"]
command = ["sh", "-c", "touch /v/x; exec sleep 1000000"]
[service.on-gone]
image = "@IMAGE@"
binds = ["gone:/v"]
command = ["sh", "-c", "exec sleep 1000000"]
[service.free]
image = "@IMAGE@"
command = ["sh", "-c", "echo free runs; exec sleep 1000000"]
"#;

#[test]
fn foreign_and_missing_disks_are_refused_untouched_and_hold_back_only_their_services() {
    let work = tempfile::tempdir().expect("tempdir");
    let fat = blank(work.path(), "fat.img", 32);
    run(Command::new("mkfs.vfat").arg(&fat));
    let ext = blank(work.path(), "ext.img", 32);
    run(Command::new("mkfs.ext2").args(["-q", "-F", "-L", "somebody"]).arg(&ext));
    let before = (digest(&fat), digest(&ext));

    let out = build_host(work.path(), REFUSE);
    let port = hoist_qemu::free_tcp_port().expect("port");
    let vm = boot_with_disks(&out, &[(port, hoist_api::PORT)], &[(&fat, "fat1"), (&ext, "ext1")]);
    let ready = wait_line(&vm, "ready", BOOT_TIMEOUT, |l| matches!(l, Line::Ready { .. })).expect("ready");
    assert!(matches!(ready, Line::Ready { services: 1, .. }), "only free is ready: {ready:?}");
    vm.wait_for_line("[free] free runs", Duration::from_secs(30)).expect("free runs");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let host = Host { work: work.path().to_path_buf(), addr: format!("127.0.0.1:{port}"), rt, vm };
    let reply = host.rt.block_on(async {
        let mut c = hoist_api::client::tcp(&host.addr, hoist_tests::pki_dir()).await.expect("connect");
        c.status(hoist_api::pb::StatusRequest {}).await.expect("status").into_inner()
    });
    let problems = reply.problems.join("\n");
    assert!(problems.contains("volume fat not mounted: /dev/vda (serial:fat1) holds vfat"), "{problems}");
    assert!(
        problems.contains("volume ext not mounted: /dev/vdb (serial:ext1) holds ext2 labelled \"somebody\""),
        "{problems}"
    );
    assert!(
        problems.contains("volume gone not mounted: no disk with serial:nowhere appeared within 2.0s"),
        "{problems}"
    );
    for s in &reply.services {
        let want = if s.name == "free" { "running" } else { "waiting" };
        assert_eq!(s.state, want, "{s:?}");
    }
    let waiting = reply.services.iter().find(|s| s.name == "on-gone").expect("on-gone");
    assert_eq!(waiting.waiting_for, ["volume:gone"]);
    assert!(waiting.reason.contains("volume:gone (not mounted: no disk with serial:nowhere"), "{waiting:?}");
    let ctl = host.hoist(&["ctl", "status"]);
    assert!(
        ctl.status.success() && String::from_utf8_lossy(&ctl.stdout).contains("volume gone not mounted"),
        "{ctl:?}"
    );
    let Host { vm, .. } = host;
    stop(vm);
    assert!(before == (digest(&fat), digest(&ext)), "a refused disk was written to");
}

const CUT: &str = r#"
version = 1
[volume.data]
device = "serial:data1"

[service.records]
image = "@IMAGE@"
binds = ["data/r:/r"]
command = ["sh", "-c", "n=0; while read a b; do [ \"$a $b\" = \"rec $((n+1))\" ] || break; n=$((n+1)); done < /r/log; echo \"prefix $n\"; i=$n; while true; do i=$((i+1)); echo \"rec $i\" >> /r/log; sync; echo \"synced $i\"; sleep 0.05; done"]
"#;

#[test]
fn a_power_cut_loses_no_synced_record() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = blank(work.path(), "data.img", 64);
    let mut vm = boot(work.path(), CUT, &[(&data, "data1")]);
    vm.wait_for_line("[records] synced 40", Duration::from_secs(120)).expect("records synced");
    vm.kill();
    let synced = vm
        .console_lines()
        .iter()
        .filter_map(|l| l.split("[records] synced ").nth(1).and_then(|n| n.trim().parse::<u64>().ok()))
        .max()
        .expect("synced lines");
    drop(vm);
    assert!(!cleanly_unmounted(&data), "a power cut leaves the journal to recover");

    let vm = boot(work.path(), CUT, &[(&data, "data1")]);
    let line =
        vm.wait_for("prefix line", Duration::from_secs(60), |l| l.contains("[records] prefix ")).expect("prefix");
    let prefix: u64 = line.split("prefix ").nth(1).and_then(|n| n.trim().parse().ok()).expect("a number");
    let console = vm.console();
    assert!(console.contains("volume data: e2fsck /dev/vda:"), "fsck ran:\n{console}");
    assert!(!console.contains("formatted"), "{console}");
    assert!(prefix >= synced, "records 1..={synced} were synced before the cut, only 1..={prefix} are there");
    stop(vm);
}

const FILL: &str = r#"
version = 1
[volume.data]
device = "serial:data1"
label = "data"
[state]
volume = "data"

[service.filler]
image = "@IMAGE@"
binds = ["data/fill:/fill"]
restart = "never"
command = ["sh", "-c", "dd if=/dev/zero of=/fill/big bs=1M 2>/dev/null; echo \"full $?\"; exec sleep 1000000"]
[service.steady]
image = "@IMAGE@"
command = ["sh", "-c", "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo $i > /n && echo \"wrote $i\"; sleep 1; done"]
[service.planter]
image = "@IMAGE@"
binds = ["data/plant:/p"]
command = ["sh", "-c", "ln -sfn / /p/evil; exec sleep 1000000"]
ready = { exec = ["test", "-L", "/p/evil"] }
[service.victim]
image = "@IMAGE@"
binds = ["data/plant/evil/etc:/x"]
depends_on = ["planter"]
restart = "never"
command = ["sh", "-c", "echo victim sees $(ls /x | wc -l) host files; exec sleep 1000000"]
"#;

#[test]
fn an_unfinished_format_is_done_again_and_a_full_volume_stops_only_its_writer() {
    let work = tempfile::tempdir().expect("tempdir");
    // What a power cut in the middle of the first format leaves: some of mke2fs's work,
    // and hoist's marker still in the last block.
    let data = blank(work.path(), "data.img", 48);
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-L", "data"]).arg(&data).arg("8M"));
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&data).expect("open image");
        f.write_all_at(&[0u8; 1024], 1024).expect("no superblock yet");
        f.write_all_at(&disk::marker_block("data"), (48 << 20) - disk::MARKER_LEN as u64).expect("marker");
    }
    assert_eq!(found(&data), Found::Formatting { volume: "data".into() });

    let out = build_host(work.path(), FILL);
    let port = hoist_qemu::free_tcp_port().expect("port");
    let vm = boot_with_disks(&out, &[(port, hoist_api::PORT)], &[(&data, "data1")]);
    vm.wait_for_line("[filler] full 1", Duration::from_secs(180)).expect("the filler hits ENOSPC");
    let console = vm.console();
    assert!(console.contains("holds an unfinished format; formatting again"), "{console}");
    // The filler ran as root: ext4's reserve is for CAP_SYS_RESOURCE, which services lack
    // and containerd, the supervisor and the shims have. The state ([state]) is on the
    // full volume too: the other service goes on, and a restart (containerd's metadata)
    // and the logs (the shim's files) still work.
    let seen = vm.console_lines().iter().filter(|l| l.contains("[steady] wrote")).count();
    let next = format!("[steady] wrote {}", seen + 2);
    vm.wait_for_line(&next, Duration::from_secs(60)).expect("steady keeps writing");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let host = Host { work: work.path().to_path_buf(), addr: format!("127.0.0.1:{port}"), rt, vm };
    let ctl = host.hoist(&["ctl", "status"]);
    assert!(ctl.status.success(), "{}", hoist_tests::host::text(&ctl));
    // ext4's reserve (5%) is still free after a root service filled the volume: hoist
    // mounts volumes with a reserve owner nobody runs as, so only holders of
    // CAP_SYS_RESOURCE (containerd, the supervisor, the shims) use it; the services'
    // default capabilities lack it. (Without that option, root took the reserve.)
    let df = host.hoist(&["ctl", "exec", "filler", "--", "df", "-k", "/fill"]);
    let df_text = String::from_utf8_lossy(&df.stdout).into_owned();
    let nums: Vec<u64> =
        df_text.lines().nth(1).unwrap_or("").split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let [blocks, used, ..] = nums[..] else { panic!("df: {}", hoist_tests::host::text(&df)) };
    assert!((blocks - used) * 100 >= blocks * 5, "the reserve was taken by a root service:\n{df_text}");
    let restart = host.hoist(&["ctl", "restart", "steady"]);
    assert!(restart.status.success(), "{}", hoist_tests::host::text(&restart));
    hoist_tests::wait_count(&host.vm, "[steady] wrote 1", 2, Duration::from_secs(60)).expect("steady restarted");
    let logs = host.hoist(&["ctl", "logs", "steady"]);
    let text = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert!(logs.status.success() && text.contains("wrote 1"), "{}", hoist_tests::host::text(&logs));
    // A symlink planted on the volume by one service is never followed for another.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let victim = loop {
        let v = host.status().into_iter().find(|s| s.name == "victim").expect("victim");
        if v.state == "failed" || std::time::Instant::now() >= deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(victim.state, "failed", "{victim:?}");
    assert!(victim.reason.contains("\"plant/evil/etc\": evil:"), "{victim:?}");
    assert!(!host.vm.console().contains("victim sees"), "the victim never ran");
    let Host { vm, .. } = host;
    stop(vm);
    assert!(
        matches!(found(&data), Found::Ext { kind: "ext4", ref label, .. } if label == "data"),
        "{:?}",
        found(&data)
    );
}
