//! The kernel's module index files (modules.dep, modules.alias, modules.builtin,
//! modules.softdep) parsed without libkmod: which `.ko` files a module needs and in what
//! order, and which modules a device's `modalias` asks for.
//!
//! Used at build time (which modules go into the initramfs, and small index files for
//! them) and by PID 1 at boot, so it is std only, does no syscalls beyond reading the
//! index files, and its alias matching is linear-time ([`glob_match`]). It reads no `.bin`
//! indexes, no modprobe.d configuration, and only the `pre:` part of soft dependencies.

mod glob;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

pub use glob::glob_match;

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("{path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("unknown kernel module {0}")]
    Unknown(String),
    #[error("module {module}: dependency {dependency} is not in modules.dep")]
    MissingDependency { module: String, dependency: String },
}

/// One modules.dep line: the module's path and its dependencies as listed (the last one is
/// loaded first).
#[derive(Debug, Clone)]
struct DepLine {
    path: String,
    deps: Vec<String>,
}

/// One modules.alias line.
#[derive(Debug, Clone)]
struct Alias {
    /// As written, for filtered copies.
    pattern: String,
    /// As matched: see [`normalize_alias`].
    normalized: String,
    module: String,
}

#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    /// In file order, so filtered copies keep the original order.
    deps: Vec<DepLine>,
    by_name: HashMap<String, usize>,
    aliases: Vec<Alias>,
    builtin: BTreeSet<String>,
    /// Normalised module name -> names (or aliases) to load before it.
    softdep_pre: HashMap<String, Vec<String>>,
}

impl ModuleIndex {
    /// Reads modules.dep and, when present, modules.alias, modules.builtin and
    /// modules.softdep from `dir` (= .../lib/modules/VERSION).
    pub fn load(dir: &Path) -> Result<Self, ModuleError> {
        let dep = read(&dir.join("modules.dep"), false)?;
        let alias = read(&dir.join("modules.alias"), true)?;
        let builtin = read(&dir.join("modules.builtin"), true)?;
        let softdep = read(&dir.join("modules.softdep"), true)?;
        Ok(Self::parse(&dep, &alias, &builtin).with_softdeps(&softdep))
    }

    /// Parses the text of modules.dep, modules.alias and modules.builtin. Malformed lines
    /// are skipped, as modprobe does.
    pub fn parse(dep: &str, alias: &str, builtin: &str) -> Self {
        let mut index = ModuleIndex::default();
        for line in dep.lines() {
            let Some((path, deps)) = line.split_once(':') else { continue };
            let path = path.trim();
            if path.is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let name = Self::normalize(path);
            if index.by_name.contains_key(&name) {
                continue; // modprobe uses the first line for a name
            }
            index.by_name.insert(name, index.deps.len());
            let deps = deps.split_whitespace().map(str::to_string).collect();
            index.deps.push(DepLine { path: path.to_string(), deps });
        }
        for line in alias.lines() {
            let mut words = line.split_whitespace();
            if let (Some("alias"), Some(pattern), Some(module)) = (words.next(), words.next(), words.next()) {
                index.aliases.push(Alias {
                    pattern: pattern.to_string(),
                    normalized: normalize_alias(pattern),
                    module: Self::normalize(module),
                });
            }
        }
        index.builtin = builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(Self::normalize)
            .collect();
        index
    }

    /// Adds the `pre:` soft dependencies of modules.softdep text
    /// (`softdep MODULE pre: A B post: C`); words before `pre:` and after `post:` are ignored.
    pub fn with_softdeps(mut self, softdep: &str) -> Self {
        for line in softdep.lines() {
            let mut words = line.split_whitespace();
            let (Some("softdep"), Some(module)) = (words.next(), words.next()) else { continue };
            let mut in_pre = false;
            for word in words {
                match word {
                    "pre:" => in_pre = true,
                    "post:" => in_pre = false,
                    w if in_pre => self.softdep_pre.entry(Self::normalize(module)).or_default().push(w.to_string()),
                    _ => {}
                }
            }
        }
        self
    }

    /// A module name as the kernel knows it: file stem without `.ko[.xz|.zst|.gz]`, `-` as `_`.
    pub fn normalize(name: &str) -> String {
        let base = name.rsplit('/').next().unwrap_or(name);
        let base = [".xz", ".zst", ".gz"].iter().find_map(|ext| base.strip_suffix(ext)).unwrap_or(base);
        let base = base.strip_suffix(".ko").unwrap_or(base);
        base.replace('-', "_")
    }

    /// True for modules compiled into the kernel, which need no loading.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&Self::normalize(name))
    }

    /// True when `name` is a loadable module of this index.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(&Self::normalize(name))
    }

    /// The paths (as in modules.dep) of `names` and everything they need, each once,
    /// dependencies before dependents. Built-in modules are skipped; an unknown one is an
    /// error. Soft `pre:` dependencies come first when this index has them, and are
    /// skipped quietly when missing (they are optional by definition).
    pub fn resolve(&self, names: &[&str]) -> Result<Vec<String>, ModuleError> {
        let mut walk = Walk { index: self, seen: HashSet::new(), order: Vec::new() };
        for &given in names {
            let name = Self::normalize(given);
            match self.by_name.get(&name) {
                Some(&i) => walk.visit(i)?,
                None if self.builtin.contains(&name) => {}
                None => return Err(ModuleError::Unknown(given.to_string())),
            }
        }
        Ok(walk.order.into_iter().map(|i| self.deps[i].path.clone()).collect())
    }

    /// Names of the modules whose modules.alias pattern matches a device's `modalias`
    /// (e.g. "virtio:d00000001v00001AF4"), each once, in modules.alias order.
    pub fn modules_for_alias(&self, modalias: &str) -> Vec<String> {
        let modalias = normalize_alias(modalias);
        let mut out: Vec<String> = Vec::new();
        for a in &self.aliases {
            if !out.contains(&a.module) && glob_match(a.normalized.as_bytes(), modalias.as_bytes()) {
                out.push(a.module.clone());
            }
        }
        out
    }

    /// modules.dep text restricted to the modules named in `keep`, in the original order.
    pub fn filtered_dep(&self, keep: &[String]) -> String {
        let keep = normalized_set(keep);
        let mut out = String::new();
        for line in self.deps.iter().filter(|l| keep.contains(&Self::normalize(&l.path))) {
            out.push_str(&line.path);
            out.push(':');
            for dep in &line.deps {
                out.push(' ');
                out.push_str(dep);
            }
            out.push('\n');
        }
        out
    }

    /// modules.alias text restricted to the modules named in `keep`, in the original order.
    pub fn filtered_alias(&self, keep: &[String]) -> String {
        let keep = normalized_set(keep);
        self.aliases
            .iter()
            .filter(|a| keep.contains(&a.module))
            .map(|a| format!("alias {} {}\n", a.pattern, a.module))
            .collect()
    }

    /// modules.softdep text (`pre:` only) for the modules named in `keep`.
    pub fn filtered_softdep(&self, keep: &[String]) -> String {
        let keep = normalized_set(keep);
        let mut modules: Vec<&String> = self.softdep_pre.keys().filter(|m| keep.contains(*m)).collect();
        modules.sort();
        modules.iter().map(|m| format!("softdep {m} pre: {}\n", self.softdep_pre[*m].join(" "))).collect()
    }

    /// Modules a soft dependency word stands for: a module name, or else an alias
    /// ("crypto-md5") looked up in modules.alias.
    fn soft_targets(&self, word: &str) -> Vec<usize> {
        if let Some(&i) = self.by_name.get(&Self::normalize(word)) {
            return vec![i];
        }
        self.modules_for_alias(word).iter().filter_map(|m| self.by_name.get(m).copied()).collect()
    }
}

/// `-` as `_` outside bracket sets, on both sides of a match, as libkmod does: an alias
/// "crypto-crc32c" and a request for "crypto_crc32c" are the same.
fn normalize_alias(alias: &str) -> String {
    let mut in_set = false;
    alias
        .chars()
        .map(|c| match c {
            '[' => {
                in_set = true;
                c
            }
            ']' => {
                in_set = false;
                c
            }
            '-' if !in_set => '_',
            c => c,
        })
        .collect()
}

fn normalized_set(names: &[String]) -> BTreeSet<String> {
    names.iter().map(|n| ModuleIndex::normalize(n)).collect()
}

fn read(path: &Path, optional: bool) -> Result<String, ModuleError> {
    match std::fs::read_to_string(path) {
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other.map_err(|cause| ModuleError::Read { path: path.to_path_buf(), cause }),
    }
}

/// Depth-first post-order over modules.dep: a module is emitted after everything it needs.
struct Walk<'a> {
    index: &'a ModuleIndex,
    /// Modules visited or being visited.
    seen: HashSet<usize>,
    order: Vec<usize>,
}

impl Walk<'_> {
    fn visit(&mut self, i: usize) -> Result<(), ModuleError> {
        // Seen but not yet emitted means a cycle, which a sane modules.dep never has (soft
        // dependencies can make one): ignoring the back edge still ends and loads everything.
        if !self.seen.insert(i) {
            return Ok(());
        }
        let line = &self.index.deps[i];
        let name = ModuleIndex::normalize(&line.path);
        for word in self.index.softdep_pre.get(&name).into_iter().flatten() {
            for target in self.index.soft_targets(word) {
                self.visit(target)?;
            }
        }
        // The last listed dependency loads first.
        for dep in line.deps.iter().rev() {
            let dep_name = ModuleIndex::normalize(dep);
            let &d = self
                .index
                .by_name
                .get(&dep_name)
                .ok_or_else(|| ModuleError::MissingDependency { module: name.clone(), dependency: dep.clone() })?;
            self.visit(d)?;
        }
        self.order.push(i);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
