//! `hoist run` writes run.json and run/console.log into the build directory, as root:
//! a directory another user can write is refused before anything is written there.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn a_build_directory_others_can_write_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (file, text) in [("kernel", "k"), ("initrd.img", "i"), ("cmdline", "console=ttyS0\n")] {
        std::fs::write(dir.path().join(file), text).expect("write");
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .arg("run")
        .arg(dir.path())
        .arg("--dry-run")
        .output()
        .expect("run hoist");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let expected =
        format!("hoist: error: build directory: {}: writable by its group or others (mode 777)", dir.path().display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!dir.path().join("run").exists(), "the work directory was made");
}
