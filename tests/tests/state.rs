//! `[state] volume`: containerd's content, hoist's generations and the logs live on a
//! disk. An applied generation and its image (sent once, before the reboot) come back
//! after a reboot of the same build; a tentative (`--try`) one does not; `logs --boot -1`
//! reads the boot before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hoist_guest::console::Line;
use hoist_images::oci::{ImageConfig, create_oci_layout};
use hoist_tests::host::{Host, text};
use hoist_tests::{BOOT_TIMEOUT, boot_with_disks, build_host, busybox_tree, wait_line};

/// busybox, with /www/v saying which version this is.
fn image(work: &Path, v: &str) -> PathBuf {
    let mut tree = busybox_tree().clone();
    tree.insert_file("www/v", 0o644, v.as_bytes().to_vec());
    let dir = work.join(format!("image-{v}"));
    create_oci_layout(&dir, "latest", &tree, &ImageConfig::default()).expect("image");
    dir
}

fn config(image: &Path) -> String {
    format!(
        r#"
version = 1
[volume.data]
device = "serial:state1"
[state]
volume = "data"

[service.web]
image = "oci:{}:latest"
command = ["sh", "-c", "trap 'exit 0' TERM; echo page $(cat /www/v); while true; do sleep 1; done"]
stop_timeout = "5s"
"#,
        image.display()
    )
}

fn boot(work: &Path, disk: &Path) -> Host {
    let port = hoist_qemu::free_tcp_port().expect("port");
    let vm = boot_with_disks(&work.join("out"), &[(port, hoist_api::PORT)], &[(disk, "state1")]);
    wait_line(&vm, "ready", BOOT_TIMEOUT, |l| matches!(l, Line::Ready { .. })).expect("ready");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    Host { work: work.to_path_buf(), addr: format!("127.0.0.1:{port}"), rt, vm }
}

fn ctl(host: &Host, args: &[&str]) -> String {
    let mut all = vec!["ctl"];
    all.extend_from_slice(args);
    let out = host.hoist(&all);
    assert!(out.status.success(), "hoist {all:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_applied_generation_and_its_image_survive_a_reboot_and_the_last_boots_logs_stay() {
    let work = tempfile::tempdir().expect("tempdir").keep();
    let disk = work.join("state.img");
    std::fs::File::create(&disk).and_then(|f| f.set_len(256 << 20)).expect("disk image");
    build_host(&work, &config(&image(&work, "v1")));

    let host = boot(&work, &disk);
    host.vm.wait_for_line("[web] page v1", Duration::from_secs(30)).expect("v1 runs");
    let applied = host.apply(&host.config("v2.toml", &config(&image(&work, "v2"))), &["--settle", "1s"]);
    assert!(applied.status.success(), "{}", text(&applied));
    host.wait_result(1, "active", Duration::from_secs(60));
    host.vm.wait_for_line("[web] page v2", Duration::from_secs(30)).expect("v2 runs");
    let tried = host.apply(&host.config("v3.toml", &config(&image(&work, "v3"))), &["--try", "10m", "--settle", "1s"]);
    assert!(tried.status.success(), "{}", text(&tried));
    host.wait_result(2, "tentative", Duration::from_secs(60));
    host.vm.wait_for_line("[web] page v3", Duration::from_secs(30)).expect("v3 runs");
    let Host { mut vm, .. } = host;
    let exit = vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");
    drop(vm);

    // The same build boots again: generation 1 (confirmed), its image from the disk.
    let host = boot(&work, &disk);
    host.vm.wait_for_line("[web] page v", Duration::from_secs(30)).expect("web runs");
    let console = host.vm.console();
    assert!(console.contains("[web] page v2"), "generation 1 runs after the reboot:\n{console}");
    assert!(!console.contains("[web] page v1") && !console.contains("[web] page v3"), "{console}");
    assert!(console.contains("running generation 1"), "{console}");
    let history = host.history();
    let result = |id: u64| history.generations.iter().find(|g| g.id == id).map(|g| g.result.clone());
    assert_eq!(result(1).as_deref(), Some("active"), "{history:?}");
    // Rolled back by the shutdown (or, after a power cut, found interrupted at boot).
    assert!(matches!(result(2).as_deref(), Some("rolled-back" | "interrupted")), "{history:?}");
    assert_eq!(history.current, 1, "{history:?}");

    let before = ctl(&host, &["logs", "web", "--boot", "-1"]);
    for page in ["page v1", "page v2", "page v3"] {
        assert!(before.contains(page), "{page} in the last boot's log:\n{before}");
    }
    let now = ctl(&host, &["logs", "web"]);
    assert!(now.contains("page v2") && !now.contains("page v1"), "this boot's log:\n{now}");
    let old = host.hoist(&["ctl", "logs", "web", "--boot", "-2"]);
    assert!(!old.status.success() && text(&old).contains("keeps 2 boots"), "{}", text(&old));
    let Host { mut vm, .. } = host;
    let exit = vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");
    let _ = std::fs::remove_dir_all(&work);
}
