use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use super::*;

const DEP: &str = "\
kernel/a.ko: kernel/b.ko kernel/c.ko
kernel/b.ko: kernel/c.ko
kernel/c.ko:
kernel/d.ko: kernel/e.ko kernel/f.ko kernel/g.ko
kernel/e.ko: kernel/g.ko
kernel/f.ko: kernel/g.ko
kernel/g.ko:
kernel/drivers/net/virtio-net.ko.xz: kernel/c.ko
kernel/broken.ko: kernel/nowhere.ko
";

const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* a
alias virtio:d00000001v* virtio_net
alias usb:v[0-9]*p* b
alias usb:v?BCD* c
alias crypto-gee g
";

const BUILTIN: &str = "kernel/fs/ext4/ext4.ko\nkernel/h.ko\n";

fn index() -> ModuleIndex {
    ModuleIndex::parse(DEP, ALIAS, BUILTIN)
}

fn names(paths: &[String]) -> Vec<String> {
    paths.iter().map(|p| ModuleIndex::normalize(p)).collect()
}

#[test]
fn normalize_strips_dirs_suffixes_and_dashes() {
    assert_eq!(ModuleIndex::normalize("kernel/fs/overlayfs/overlay.ko"), "overlay");
    assert_eq!(ModuleIndex::normalize("kernel/drivers/net/virtio-net.ko.zst"), "virtio_net");
    assert_eq!(ModuleIndex::normalize("x.ko.xz"), "x");
    assert_eq!(ModuleIndex::normalize("x.ko.gz"), "x");
    assert_eq!(ModuleIndex::normalize("snd-hda-intel"), "snd_hda_intel");
}

#[test]
fn chain_loads_the_last_listed_dependency_first() {
    let order = index().resolve(&["a"]).expect("resolve");
    assert_eq!(order, ["kernel/c.ko", "kernel/b.ko", "kernel/a.ko"]);
}

#[test]
fn diamond_loads_a_shared_dependency_once_and_first() {
    let order = names(&index().resolve(&["d", "e"]).expect("resolve"));
    assert_eq!(order, ["g", "f", "e", "d"]);
    let order = names(&index().resolve(&["e", "d", "f"]).expect("resolve"));
    assert_eq!(order, ["g", "e", "f", "d"]);
}

#[test]
fn names_are_normalised_and_repeats_collapse() {
    let order = index().resolve(&["virtio-net", "virtio_net", "c"]).expect("resolve");
    assert_eq!(order, ["kernel/c.ko", "kernel/drivers/net/virtio-net.ko.xz"]);
}

#[test]
fn builtins_are_skipped_and_unknown_modules_named() {
    let i = index();
    assert!(i.is_builtin("ext4") && i.is_builtin("h") && !i.is_builtin("a"));
    assert_eq!(i.resolve(&["ext4", "c"]).expect("resolve"), ["kernel/c.ko"]);
    let err = i.resolve(&["c", "no-such"]).expect_err("unknown");
    assert!(matches!(&err, ModuleError::Unknown(n) if n == "no-such"), "{err}");
    assert_eq!(err.to_string(), "unknown kernel module no-such");
    let err = i.resolve(&["broken"]).expect_err("missing dependency");
    assert_eq!(err.to_string(), "module broken: dependency kernel/nowhere.ko is not in modules.dep");
}

#[test]
fn soft_pre_dependencies_load_first_and_are_optional() {
    let i = index().with_softdeps("softdep a pre: crypto-gee missing post: f\nsoftdep c e\nsoftdep g pre: a\n");
    // a's pre softdep g (by alias) comes before a's own dependencies; g -> a is a cycle.
    assert_eq!(names(&i.resolve(&["a"]).expect("resolve")), ["g", "c", "b", "a"]);
    assert_eq!(i.filtered_softdep(&["a".into(), "c".into()]), "softdep a pre: crypto-gee missing\n");
}

#[test]
fn aliases_match_globs() {
    let i = index();
    assert_eq!(i.modules_for_alias("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"), ["a"]);
    assert_eq!(i.modules_for_alias("virtio:d00000001v00001AF4"), ["virtio_net"]);
    assert_eq!(i.modules_for_alias("usb:v1BCDp0001"), ["b", "c"]);
    assert_eq!(i.modules_for_alias("usb:vABCDp0001"), ["c"]);
    assert!(i.modules_for_alias("virtio:d00000002v00001AF4").is_empty());
}

#[test]
fn filtered_files_keep_format_and_order() {
    let i = index();
    let keep = vec!["a".to_string(), "virtio-net".to_string(), "c".to_string(), "b".to_string()];
    assert_eq!(
        i.filtered_dep(&keep),
        "kernel/a.ko: kernel/b.ko kernel/c.ko\nkernel/b.ko: kernel/c.ko\nkernel/c.ko:\n\
         kernel/drivers/net/virtio-net.ko.xz: kernel/c.ko\n"
    );
    assert_eq!(
        i.filtered_alias(&keep),
        "alias pci:v00001AF4d*sv*sd*bc*sc*i* a\nalias virtio:d00000001v* virtio_net\n\
         alias usb:v[0-9]*p* b\nalias usb:v?BCD* c\n"
    );
    let copy = ModuleIndex::parse(&i.filtered_dep(&keep), &i.filtered_alias(&keep), "");
    assert_eq!(copy.resolve(&["a"]).expect("resolve"), i.resolve(&["a"]).expect("resolve"));
}

#[test]
fn load_reads_a_directory_and_names_a_missing_dep_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = ModuleIndex::load(dir.path()).expect_err("no modules.dep");
    assert!(err.to_string().contains("modules.dep"), "{err}");
    std::fs::write(dir.path().join("modules.dep"), DEP).expect("write");
    let i = ModuleIndex::load(dir.path()).expect("alias/builtin/softdep are optional");
    assert_eq!(i.resolve(&["a"]).expect("resolve").len(), 3);
    assert!(i.modules_for_alias("virtio:d00000001v00001AF4").is_empty());
}

// ---- against the kernel installed on this machine ----

/// The one directory under /lib/modules (the installed kernel, not necessarily the running one).
fn installed() -> (String, PathBuf) {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/lib/modules")
        .expect("/lib/modules (run tests/install-deps.sh)")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("modules.dep").is_file())
        .collect();
    dirs.sort();
    let dir = dirs.pop().expect("a kernel under /lib/modules (run tests/install-deps.sh)");
    let version = dir.file_name().expect("dir name").to_string_lossy().to_string();
    (version, dir)
}

/// modprobe's answer: relative paths to insmod, and names it reports as built in.
fn show_depends(name: &str, version: &str, dir: &Path) -> (Vec<String>, Vec<String>) {
    let out = Command::new("modprobe")
        .args(["--show-depends", name, "-S", version])
        .output()
        .expect("run modprobe (apt-get install kmod)");
    assert!(out.status.success(), "modprobe {name}: {}", String::from_utf8_lossy(&out.stderr));
    let prefix = format!("{}/", dir.display());
    let (mut insmod, mut builtin) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["insmod", path, ..] => insmod.push(path.trim_start_matches(&prefix).to_string()),
            ["builtin", name] => builtin.push(name.to_string()),
            _ => panic!("unexpected modprobe line {line:?}"),
        }
    }
    (insmod, builtin)
}

#[test]
fn host_dependencies_match_modprobe() {
    let (version, dir) = installed();
    let index = ModuleIndex::load(&dir).expect("load the installed index");
    // xt_LOG and libcrc32c have one soft pre-dependency each (one by alias).
    for name in ["overlay", "virtio_net", "virtio_blk", "virtio_pci", "evdev", "button", "xt_LOG", "libcrc32c"] {
        let (insmod, builtin) = show_depends(name, &version, &dir);
        assert_eq!(index.is_builtin(name), !builtin.is_empty(), "{name}");
        let ours = index.resolve(&[name]).expect("resolve");
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
        assert_eq!(set(&ours), set(&insmod), "{name}");
        assert_eq!(ours.last(), insmod.last(), "{name} itself loads last");
    }
    let all = index.resolve(&["overlay", "virtio_net", "virtio_blk", "evdev", "button"]).expect("resolve");
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), all.len(), "each once");
}

#[test]
fn host_order_puts_every_dependency_first() {
    let (_, dir) = installed();
    let index = ModuleIndex::load(&dir).expect("load");
    let every: Vec<&str> = index.deps.iter().map(|l| l.path.as_str()).collect();
    let order = index.resolve(&every).expect("resolve every module");
    assert_eq!(order.len(), index.deps.len());
    let position: HashMap<&str, usize> = order.iter().enumerate().map(|(i, p)| (p.as_str(), i)).collect();
    for line in &index.deps {
        for dep in &line.deps {
            assert!(position[dep.as_str()] < position[line.path.as_str()], "{dep} before {}", line.path);
        }
    }
}

#[test]
fn host_aliases_find_virtio_drivers() {
    let (_, dir) = installed();
    let index = ModuleIndex::load(&dir).expect("load");
    let pci = index.modules_for_alias("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00");
    assert!(pci.contains(&"virtio_pci".to_string()), "{pci:?}");
    assert_eq!(index.modules_for_alias("virtio:d00000001v00001AF4"), ["virtio_net"]);
    assert_eq!(index.modules_for_alias("virtio:d00000002v00001AF4"), ["virtio_blk"]);
    assert!(index.modules_for_alias("acpi:LNXPWRBN:").contains(&"button".to_string()));
}

#[test]
fn alias_dashes_match_underscores_outside_sets() {
    let i = ModuleIndex::parse("kernel/x.ko:\n", "alias platform:foo-bar x\nalias of:N[a-c]-d x\n", "");
    assert_eq!(i.modules_for_alias("platform:foo_bar"), ["x"]);
    assert_eq!(i.modules_for_alias("platform:foo-bar"), ["x"]);
    assert_eq!(i.modules_for_alias("of:Nb_d"), ["x"]);
    assert!(i.modules_for_alias("of:N-_d").is_empty());
}
