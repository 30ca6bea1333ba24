//! The shared libraries a set of executables needs, read from their ELF headers (never by
//! running `ldd`, which executes the program's loader on the build host).
//!
//! It follows what glibc's ld.so does without an ld.so.cache: PT_INTERP of each
//! executable, then DT_NEEDED transitively, each name searched in DT_RPATH (only without
//! DT_RUNPATH, inherited from the loading chain), DT_RUNPATH, then the default
//! directories; candidates of the wrong ELF class, byte order or machine are skipped. A
//! name already found is not searched again, as ld.so reuses a loaded soname.
//!
//! Guest paths use Debian's merged-/usr form (`/lib/x/libc.so.6` becomes
//! `/usr/lib/x/libc.so.6`), since the guest's /lib, /lib64, /bin and /sbin are symlinks
//! into /usr. It ignores LD_LIBRARY_PATH, glibc-hwcaps subdirectories, `$LIB`/`$PLATFORM`
//! and dlopen()ed libraries (which no header names).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use goblin::elf::Elf;

/// Where ld.so looks last, in order (x86_64 Debian, multiarch first).
pub const DEFAULT_DIRS: &[&str] =
    &["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];

/// Top-level directories that are symlinks into /usr in the guest.
const MERGED_USR: &[&str] = &["bin", "sbin", "lib", "lib64"];

/// Symlinks followed in one lookup before giving up, as the kernel's ELOOP limit.
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path}: not a readable ELF file: {cause}")]
    Parse { path: PathBuf, cause: goblin::error::Error },
    #[error("{library} (needed by {needed_by}) not found")]
    NotFound { library: String, needed_by: PathBuf },
    #[error("{path}: interpreter {interpreter} not found")]
    NoInterpreter { path: PathBuf, interpreter: String },
}

/// One file a guest program needs: the path it is looked up by in the guest, and the host
/// file (symlinks resolved) with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub guest_path: PathBuf,
    pub host_file: PathBuf,
}

pub struct Resolver {
    sysroot: PathBuf,
    default_dirs: Vec<PathBuf>,
}

/// The ELF identity a library must share with the executable that loads it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Kind {
    class: u8,
    data: u8,
    machine: u16,
}

/// What the search needs from one parsed object.
struct Object {
    kind: Kind,
    interpreter: Option<String>,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
}

/// A loaded object waiting for its DT_NEEDED to be searched.
struct Pending {
    /// Its path in the guest (for $ORIGIN) and on the host (for messages and reading).
    guest: PathBuf,
    host: PathBuf,
    /// DT_RPATH directories of the objects that loaded it, used while none has DT_RUNPATH.
    inherited_rpath: Vec<PathBuf>,
}

impl Resolver {
    /// `sysroot` is "/" normally; every lookup path (and every absolute symlink met on the
    /// way) is taken under it.
    pub fn new(sysroot: &Path) -> Self {
        Resolver { sysroot: sysroot.to_path_buf(), default_dirs: DEFAULT_DIRS.iter().map(PathBuf::from).collect() }
    }

    /// Replaces the default search directories (guest paths, searched in order).
    pub fn with_default_dirs(mut self, dirs: &[&str]) -> Self {
        self.default_dirs = dirs.iter().map(PathBuf::from).collect();
        self
    }

    /// The interpreter and every library the given executables need, transitively,
    /// deduplicated and sorted by guest path. Static executables add nothing.
    pub fn closure(&self, executables: &[PathBuf]) -> Result<Vec<Needed>, ElfError> {
        let mut found: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        let mut parsed = Parsed::default();
        for exe in executables {
            self.closure_of(exe, &mut parsed, &mut found)?;
        }
        Ok(found.into_iter().map(|(guest_path, host_file)| Needed { guest_path, host_file }).collect())
    }

    fn closure_of(
        &self,
        exe: &Path,
        parsed: &mut Parsed,
        found: &mut BTreeMap<PathBuf, PathBuf>,
    ) -> Result<(), ElfError> {
        let object = parsed.get(exe)?;
        let kind = object.kind;
        if let Some(interp) = &object.interpreter {
            let host = self
                .host_path(Path::new(interp))
                .map_err(|_| ElfError::NoInterpreter { path: exe.to_path_buf(), interpreter: interp.clone() })?;
            found.insert(guest_form(Path::new(interp)), host);
        }
        // Each soname resolves once per executable, as in one process.
        let mut loaded: HashSet<String> = HashSet::new();
        let mut queue = VecDeque::from([Pending {
            guest: self.guest_of_executable(exe),
            host: exe.to_path_buf(),
            inherited_rpath: Vec::new(),
        }]);
        while let Some(item) = queue.pop_front() {
            let object = parsed.get(&item.host)?;
            let origin = item.guest.parent().unwrap_or(Path::new("/")).to_path_buf();
            let rpath: Vec<PathBuf> = if object.runpath.is_empty() {
                expand(&object.rpath, &origin).into_iter().chain(item.inherited_rpath.iter().cloned()).collect()
            } else {
                Vec::new()
            };
            let runpath = expand(&object.runpath, &origin);
            for name in &object.needed {
                if !loaded.insert(name.clone()) {
                    continue;
                }
                let (guest, host) = self
                    .search(name, kind, &rpath, &runpath)
                    .ok_or_else(|| ElfError::NotFound { library: name.clone(), needed_by: item.host.clone() })?;
                found.insert(guest_form(&guest), host.clone());
                queue.push_back(Pending { guest, host, inherited_rpath: rpath.clone() });
            }
        }
        Ok(())
    }

    /// The first usable file called `name`: (guest path it was found at, host file).
    fn search(&self, name: &str, kind: Kind, rpath: &[PathBuf], runpath: &[PathBuf]) -> Option<(PathBuf, PathBuf)> {
        if name.contains('/') {
            let guest = PathBuf::from(name);
            return self.candidate(&guest, kind).map(|host| (guest, host));
        }
        rpath.iter().chain(runpath).chain(&self.default_dirs).find_map(|dir| {
            let guest = dir.join(name);
            self.candidate(&guest, kind).map(|host| (guest, host))
        })
    }

    /// The host file for `guest` when it exists and is an ELF object of the right kind.
    fn candidate(&self, guest: &Path, kind: Kind) -> Option<PathBuf> {
        let host = self.host_path(guest).ok()?;
        (read_kind(&host)? == kind).then_some(host)
    }

    /// `guest` resolved under the sysroot, following symlinks (absolute ones stay inside).
    fn host_path(&self, guest: &Path) -> std::io::Result<PathBuf> {
        resolve_in_root(&self.sysroot, guest)
    }

    /// The guest path of an executable given by host path: relative to the sysroot when
    /// inside it, else as given.
    fn guest_of_executable(&self, exe: &Path) -> PathBuf {
        match exe.strip_prefix(&self.sysroot) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => exe.to_path_buf(),
        }
    }
}

/// Objects already parsed, by host path: libc is needed by every executable.
#[derive(Default)]
struct Parsed(HashMap<PathBuf, Rc<Object>>);

impl Parsed {
    fn get(&mut self, path: &Path) -> Result<Rc<Object>, ElfError> {
        if let Some(o) = self.0.get(path) {
            return Ok(o.clone());
        }
        let o = Rc::new(parse(path)?);
        self.0.insert(path.to_path_buf(), o.clone());
        Ok(o)
    }
}

fn parse(path: &Path) -> Result<Object, ElfError> {
    let bytes = std::fs::read(path).map_err(|cause| ElfError::Read { path: path.to_path_buf(), cause })?;
    let elf = Elf::parse(&bytes).map_err(|cause| ElfError::Parse { path: path.to_path_buf(), cause })?;
    let split = |entries: &[&str]| -> Vec<String> {
        entries.iter().flat_map(|e| e.split(':')).filter(|d| !d.is_empty()).map(str::to_string).collect()
    };
    Ok(Object {
        kind: Kind {
            class: elf.header.e_ident[goblin::elf::header::EI_CLASS],
            data: elf.header.e_ident[goblin::elf::header::EI_DATA],
            machine: elf.header.e_machine,
        },
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        rpath: split(&elf.rpaths),
        runpath: split(&elf.runpaths),
    })
}

/// Class, byte order and machine from an ELF header; None for anything that is not ELF.
fn read_kind(path: &Path) -> Option<Kind> {
    let mut header = [0u8; goblin::elf::header::header64::SIZEOF_EHDR];
    let mut file = std::fs::File::open(path).ok()?;
    let n = file.read(&mut header).ok()?;
    let h = Elf::parse_header(&header[..n]).ok()?;
    Some(Kind {
        class: h.e_ident[goblin::elf::header::EI_CLASS],
        data: h.e_ident[goblin::elf::header::EI_DATA],
        machine: h.e_machine,
    })
}

/// RPATH/RUNPATH entries as absolute guest directories: `$ORIGIN` expanded, relative
/// entries (relative to the process's working directory) dropped.
fn expand(entries: &[String], origin: &Path) -> Vec<PathBuf> {
    let origin = origin.to_string_lossy();
    entries
        .iter()
        .map(|e| e.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin))
        .filter(|e| e.starts_with('/'))
        .map(|e| lexical(Path::new(&e)))
        .collect()
}

/// `.` and `..` removed without touching the file system.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The merged-/usr form of a guest path: /lib/x -> /usr/lib/x, /lib64/x -> /usr/lib64/x.
fn guest_form(path: &Path) -> PathBuf {
    let path = lexical(path);
    let rel = path.strip_prefix("/").unwrap_or(&path);
    match rel.components().next() {
        Some(Component::Normal(top)) if MERGED_USR.iter().any(|m| top == *m) => Path::new("/usr").join(rel),
        _ => path,
    }
}

/// Resolves `guest` (absolute) inside `root` as if `root` were `/`: every symlink is
/// followed, absolute targets restart at `root`, `..` never climbs above it.
pub fn resolve_in_root(root: &Path, guest: &Path) -> std::io::Result<PathBuf> {
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, guest);
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            done.pop();
            continue;
        }
        let here: PathBuf = root.join(done.iter().collect::<PathBuf>()).join(&part);
        let meta = std::fs::symlink_metadata(&here)?;
        if !meta.file_type().is_symlink() {
            done.push(part);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(std::io::Error::other(format!("{}: too many levels of symbolic links", here.display())));
        }
        let target = std::fs::read_link(&here)?;
        if target.is_absolute() {
            done.clear();
        }
        push_components(&mut pending, &target);
    }
    Ok(root.join(done.iter().collect::<PathBuf>()))
}

/// Pushes the parts of `path` so that popping yields them in order (`.` dropped).
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    stack.extend(parts.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::process::Command;

    use super::*;

    fn file_names(paths: impl IntoIterator<Item = PathBuf>) -> BTreeSet<String> {
        paths.into_iter().map(|p| p.file_name().expect("a file").to_string_lossy().to_string()).collect()
    }

    /// What ldd (the glibc loader itself) says `exe` loads, as file names, vdso left out.
    fn ldd(exe: &Path) -> BTreeSet<String> {
        let out = Command::new("ldd").arg(exe).output().expect("run ldd");
        assert!(out.status.success(), "ldd {}: {}", exe.display(), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let path = match l.split_once(" => ") {
                    Some((_, rest)) => rest.split_whitespace().next()?,
                    None => l.split_whitespace().next()?,
                };
                path.starts_with('/').then(|| PathBuf::from(path))
            })
            .map(|p| p.file_name().expect("a file").to_string_lossy().to_string())
            .collect()
    }

    fn closure(root: &Path, exes: &[&str]) -> Result<Vec<Needed>, ElfError> {
        Resolver::new(root).closure(&exes.iter().map(PathBuf::from).collect::<Vec<_>>())
    }

    #[test]
    fn host_binaries_need_what_ldd_says() {
        let root = Path::new("/");
        for exe in ["/usr/bin/containerd", "/usr/sbin/runc", "/bin/ls"] {
            let needed = closure(root, &[exe]).expect("closure");
            assert_eq!(file_names(needed.iter().map(|n| n.guest_path.clone())), ldd(Path::new(exe)), "{exe}");
            assert!(needed.iter().any(|n| n.guest_path == Path::new("/usr/lib64/ld-linux-x86-64.so.2")), "{exe}");
            for n in &needed {
                assert!(n.guest_path.starts_with("/usr/"), "merged-/usr form: {}", n.guest_path.display());
                let meta = std::fs::symlink_metadata(&n.host_file).expect("host file");
                assert!(meta.is_file(), "symlinks resolved: {}", n.host_file.display());
            }
        }
        let all = closure(root, &["/usr/bin/containerd", "/usr/sbin/runc", "/bin/ls"]).expect("closure");
        let guests: Vec<&PathBuf> = all.iter().map(|n| &n.guest_path).collect();
        assert!(guests.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates: {guests:?}");
        assert!(guests.contains(&&PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6")));
    }

    #[test]
    fn static_binary_needs_nothing() {
        let file = Command::new("file").args(["-L", "/bin/busybox"]).output().expect("run file");
        let described = String::from_utf8_lossy(&file.stdout);
        assert!(described.contains("statically linked"), "/bin/busybox must be busybox-static: {described}");
        assert!(closure(Path::new("/"), &["/bin/busybox"]).expect("closure").is_empty());
    }

    /// A root with ls and its interpreter only, linked like Debian's (absolute symlink in
    /// /lib64, /lib -> usr/lib).
    fn fake_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        for d in ["usr/bin", "usr/lib/x86_64-linux-gnu", "usr/lib64"] {
            std::fs::create_dir_all(r.join(d)).expect("mkdir");
        }
        std::fs::copy("/bin/ls", r.join("usr/bin/ls")).expect("copy ls");
        let ld = "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
        std::fs::copy(Path::new("/").join(ld), r.join(ld)).expect("copy ld.so");
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).expect("symlink");
        std::os::unix::fs::symlink("usr/lib64", r.join("lib64")).expect("symlink");
        std::os::unix::fs::symlink(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            r.join(ld.replace("lib/x86_64-linux-gnu", "lib64")),
        )
        .expect("symlink");
        dir
    }

    #[test]
    fn missing_library_is_named_with_its_user() {
        let root = fake_root();
        let ls = root.path().join("usr/bin/ls");
        let err = Resolver::new(root.path()).closure(std::slice::from_ref(&ls)).expect_err("no libraries");
        assert!(
            matches!(&err, ElfError::NotFound { library, needed_by } if library == "libselinux.so.1" && *needed_by == ls),
            "{err}"
        );
        assert_eq!(err.to_string(), format!("libselinux.so.1 (needed by {}) not found", ls.display()));
    }

    #[test]
    fn fake_root_stays_inside_and_skips_wrong_class() {
        let root = fake_root();
        let r = root.path();
        for lib in ldd(Path::new("/bin/ls")) {
            let host = Path::new("/usr/lib/x86_64-linux-gnu").join(&lib);
            if !lib.starts_with("ld-linux") {
                std::fs::copy(&host, r.join("usr/lib/x86_64-linux-gnu").join(&lib)).expect("copy lib");
            }
        }
        // Earlier in the search: a 32-bit i386 libc and a text file named like libselinux.
        std::fs::create_dir_all(r.join("opt/lib32")).expect("mkdir");
        let mut elf32 = vec![0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 3, 0, 1, 0, 0, 0];
        elf32.resize(52, 0);
        std::fs::write(r.join("opt/lib32/libc.so.6"), elf32).expect("write");
        std::fs::write(r.join("opt/lib32/libselinux.so.1"), "not an ELF").expect("write");
        let resolver = Resolver::new(r).with_default_dirs(&["/opt/lib32", "/lib/x86_64-linux-gnu"]);
        let needed = resolver.closure(&[r.join("usr/bin/ls")]).expect("closure");
        assert_eq!(file_names(needed.iter().map(|n| n.guest_path.clone())), ldd(Path::new("/bin/ls")));
        for n in &needed {
            assert!(n.host_file.starts_with(r), "{} escaped the sysroot", n.host_file.display());
            assert!(!n.host_file.starts_with(r.join("opt")), "{} is the wrong class", n.host_file.display());
        }
        let interp =
            needed.iter().find(|n| n.guest_path == Path::new("/usr/lib64/ld-linux-x86-64.so.2")).expect("interp");
        assert_eq!(interp.host_file, r.join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
    }

    /// Builds lib/libhoistprobe.so and bin/probe under `dir` with cc, the probe linked
    /// with `-rpath $ORIGIN/../lib` as RUNPATH (`new_dtags`) or RPATH.
    fn build_probe(dir: &Path, new_dtags: bool) -> PathBuf {
        std::fs::create_dir_all(dir.join("lib")).expect("mkdir");
        std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
        std::fs::write(dir.join("p.c"), "int probe(void) { return 7; }\n").expect("write");
        std::fs::write(dir.join("m.c"), "int probe(void);\nint main(void) { return probe(); }\n").expect("write");
        let cc = |args: &[&str]| {
            let out = Command::new("cc").args(args).current_dir(dir).output().expect("run cc (a C toolchain)");
            assert!(out.status.success(), "cc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        cc(&["-shared", "-fPIC", "-o", "lib/libhoistprobe.so", "p.c"]);
        let dtags = if new_dtags { "-Wl,--enable-new-dtags" } else { "-Wl,--disable-new-dtags" };
        cc(&["-o", "bin/probe", "m.c", "-Llib", "-lhoistprobe", dtags, "-Wl,-rpath,$ORIGIN/../lib"]);
        dir.join("bin/probe")
    }

    #[test]
    fn origin_in_runpath_and_rpath_is_expanded() {
        for new_dtags in [true, false] {
            let dir = tempfile::tempdir().expect("tempdir");
            let probe = build_probe(dir.path(), new_dtags);
            let needed = Resolver::new(Path::new("/")).closure(std::slice::from_ref(&probe)).expect("closure");
            let lib = dir.path().join("lib/libhoistprobe.so");
            assert!(needed.iter().any(|n| n.guest_path == lib && n.host_file == lib), "{needed:?}");
            assert_eq!(file_names(needed.iter().map(|n| n.guest_path.clone())), ldd(&probe));
        }
    }

    #[test]
    fn paths_are_expanded_and_merged_into_usr() {
        let dirs =
            expand(&["$ORIGIN/../lib:x".into(), "${ORIGIN}/plugins".into(), "rel".into()], Path::new("/opt/app/bin"));
        assert_eq!(dirs, [PathBuf::from("/opt/app/lib:x"), PathBuf::from("/opt/app/bin/plugins")]);
        assert_eq!(guest_form(Path::new("/lib64/ld-linux-x86-64.so.2")), Path::new("/usr/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(
            guest_form(Path::new("/lib/x86_64-linux-gnu/libc.so.6")),
            Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(guest_form(Path::new("/opt/lib/../libx.so")), Path::new("/opt/libx.so"));
        assert_eq!(guest_form(Path::new("/library/x")), Path::new("/library/x"));
    }

    #[test]
    fn symlink_loops_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/b", dir.path().join("a")).expect("symlink");
        std::os::unix::fs::symlink("/a", dir.path().join("b")).expect("symlink");
        let err = resolve_in_root(dir.path(), Path::new("/a/x")).expect_err("loop");
        assert!(err.to_string().contains("too many levels"), "{err}");
    }
}
