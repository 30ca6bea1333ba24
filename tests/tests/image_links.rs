//! Hard links in an image stay hard links in the guest: the initramfs carries them as one
//! inode (newc: one inode number, nlink, the data once), and the kernel's unpacker
//! (`init/initramfs.c`) links them back together.

use std::fs;
use std::os::unix::fs::symlink;
use std::time::Duration;

use hoist_tests::{BOOT_TIMEOUT, boot, build_host};

#[test]
fn hard_links_in_an_image_are_one_inode_in_the_guest() {
    hoist_tests::require_vm_tools();
    let work = tempfile::tempdir().expect("tempdir");
    let rootfs = work.path().join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).expect("bin");
    fs::create_dir_all(rootfs.join("data")).expect("data");
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox (busybox-static) is needed");
    for applet in ["sh", "stat", "cat"] {
        symlink("busybox", rootfs.join("bin").join(applet)).expect("applet link");
    }
    fs::write(rootfs.join("data/a"), "linked payload\n".repeat(1000)).expect("a");
    fs::hard_link(rootfs.join("data/a"), rootfs.join("data/b")).expect("b");
    fs::hard_link(rootfs.join("data/a"), rootfs.join("bin/c")).expect("c");

    let toml = format!(
        r#"
version = 1
[service.links]
image = "dir:{}"
command = ["/bin/sh", "-c", "set -- $(stat -c '%i %h' /data/a /data/b /bin/c); [ $1 = $3 ] && [ $1 = $5 ] && echo \"links: nlink=$2 one-inode\"; echo \"size: $(stat -c %s /bin/c)\"; exec sleep 1000"]
"#,
        rootfs.display()
    );
    let out = build_host(work.path(), &toml);
    let mut vm = boot(&out, &[]);
    vm.wait_for_line("[links] links: nlink=3 one-inode", BOOT_TIMEOUT).expect("the three paths are one inode");
    vm.wait_for_line(&format!("[links] size: {}", "linked payload\n".len() * 1000), Duration::from_secs(30))
        .expect("the linked file has its data");
    let exit = vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");
}
