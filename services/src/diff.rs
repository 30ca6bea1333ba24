//! What a new config changes, in the user's words: per service an action (`unchanged`,
//! `replace`, `start`, `remove`) decided by comparing plans (what would actually run), with
//! the dotted config keys that differ (`image`, `env.FOO`, `memory`); and the host-level
//! keys that only a boot can bring in (kernel, modules, sysctls, network, onboot stages).
//! Pure: config texts and plans in, a [`PlanDiff`] out.

use std::collections::BTreeMap;

use crate::plan::Desired;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub service: String,
    /// unchanged, replace, start, remove
    pub action: &'static str,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanDiff {
    /// Removals first, then replacements, starts and the unchanged, each by name.
    pub services: Vec<Change>,
    pub reboot_required: Vec<String>,
}

impl PlanDiff {
    pub fn changes(&self) -> bool {
        !self.reboot_required.is_empty() || self.services.iter().any(|c| c.action != "unchanged")
    }
}

/// Top-level keys that change live: the services, the onshutdown stages, the log size.
const LIVE: &[&str] = &["service", "onshutdown", "logs", "version"];

/// Compares the running generation (`old`) with a candidate (`new`). `booted` is the config
/// the host booted with: host-level keys are compared against it, since only a boot
/// applies them. Texts are valid configs (validated before), so they parse.
pub fn diff(
    booted: &toml::Table,
    old: (&toml::Table, &Desired, &BTreeMap<String, String>),
    new: (&toml::Table, &Desired, &BTreeMap<String, String>),
) -> PlanDiff {
    let (old_text, old_desired, old_images) = old;
    let (new_text, new_desired, new_images) = new;
    let mut remove = Vec::new();
    let mut replace = Vec::new();
    let mut start = Vec::new();
    let mut same = Vec::new();
    for name in old_desired.services.keys().filter(|n| !new_desired.services.contains_key(*n)) {
        remove.push(Change { service: name.clone(), action: "remove", keys: Vec::new() });
    }
    for (name, plan) in &new_desired.services {
        let Some(old_plan) = old_desired.services.get(name) else {
            start.push(Change { service: name.clone(), action: "start", keys: Vec::new() });
            continue;
        };
        if old_plan == plan {
            same.push(Change { service: name.clone(), action: "unchanged", keys: Vec::new() });
            continue;
        }
        let mut keys = Vec::new();
        let empty = toml::Value::Table(toml::Table::new());
        let (a, b) = (service(old_text, name).unwrap_or(&empty), service(new_text, name).unwrap_or(&empty));
        changed_keys(a, b, "", &mut keys);
        if old_images.get(name) != new_images.get(name) && !keys.iter().any(|k| k == "image") {
            keys.insert(0, "image".to_string());
        }
        if keys.is_empty() && old_text.get("logs") != new_text.get("logs") {
            keys.push("logs.max_size".to_string());
        }
        replace.push(Change { service: name.clone(), action: "replace", keys });
    }
    let mut reboot_required = Vec::new();
    let empty = toml::Value::Table(toml::Table::new());
    let top: std::collections::BTreeSet<&String> = booted.keys().chain(new_text.keys()).collect();
    for key in top.into_iter().filter(|k| !LIVE.contains(&k.as_str())) {
        let prefix = quote(key);
        changed_keys(
            booted.get(key).unwrap_or(&empty),
            new_text.get(key).unwrap_or(&empty),
            &prefix,
            &mut reboot_required,
        );
    }
    let services = remove.into_iter().chain(replace).chain(start).chain(same).collect();
    PlanDiff { services, reboot_required }
}

/// The `[service.NAME]` table of a config, if it has one.
fn service<'a>(config: &'a toml::Table, name: &str) -> Option<&'a toml::Value> {
    config.get("service")?.get(name)
}

/// Dotted keys below `prefix` whose values differ; tables are compared key by key, any
/// other value (arrays included) as a whole.
pub fn changed_keys(old: &toml::Value, new: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    match (old, new) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            let empty = toml::Value::Table(toml::Table::new());
            for key in keys {
                let path = if prefix.is_empty() { quote(key) } else { format!("{prefix}.{}", quote(key)) };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) if x == y => {}
                    (Some(x @ toml::Value::Table(_)), None) => changed_keys(x, &empty, &path, out),
                    (None, Some(y @ toml::Value::Table(_))) => changed_keys(&empty, y, &path, out),
                    (Some(x), Some(y)) => changed_keys(x, y, &path, out),
                    _ => out.push(path),
                }
            }
        }
        (a, b) if a != b => out.push(if prefix.is_empty() { "(whole value)".to_string() } else { prefix.to_string() }),
        _ => {}
    }
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
fn quote(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { key.to_string() } else { format!("{key:?}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    fn table(text: &str) -> toml::Table {
        text.parse().expect("toml")
    }

    fn desired(plans: &[(&str, &str)]) -> Desired {
        let services = plans
            .iter()
            .map(|(n, spec)| {
                (n.to_string(), Plan { name: n.to_string(), spec: spec.as_bytes().to_vec(), ..Default::default() })
            })
            .collect();
        Desired { services, ..Default::default() }
    }

    fn images(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn one_changed_env_is_one_replace_naming_the_key() {
        let old = table(
            "[service.web]\nimage = \"oci:a\"\nenv = { FOO = \"1\", BAR = \"x\" }\n[service.db]\nimage = \"oci:b\"\n",
        );
        let new = table(
            "[service.web]\nimage = \"oci:a\"\nenv = { FOO = \"2\", BAR = \"x\" }\n[service.db]\nimage = \"oci:b\"\n",
        );
        let im = images(&[("web", "sha256:1"), ("db", "sha256:2")]);
        let d = diff(
            &old,
            (&old, &desired(&[("web", "v1"), ("db", "d")]), &im),
            (&new, &desired(&[("web", "v2"), ("db", "d")]), &im),
        );
        assert_eq!(
            d.services,
            [
                Change { service: "web".into(), action: "replace", keys: vec!["env.FOO".into()] },
                Change { service: "db".into(), action: "unchanged", keys: vec![] },
            ]
        );
        assert!(d.reboot_required.is_empty());
        assert!(d.changes());
    }

    #[test]
    fn removals_come_first_then_replacements_then_starts() {
        let old = table("");
        let d = diff(
            &old,
            (&old, &desired(&[("a", "1"), ("z", "1"), ("m", "1")]), &images(&[("m", "sha256:1")])),
            (&old, &desired(&[("b", "1"), ("m", "2"), ("a", "1")]), &images(&[("m", "sha256:2")])),
        );
        let got: Vec<(&str, &str)> = d.services.iter().map(|c| (c.service.as_str(), c.action)).collect();
        assert_eq!(got, [("z", "remove"), ("m", "replace"), ("b", "start"), ("a", "unchanged")]);
        assert_eq!(d.services[1].keys, ["image"], "a new image digest is named even when the text is the same");
    }

    #[test]
    fn a_key_written_out_at_its_default_changes_nothing() {
        let old = table("[service.web]\nimage = \"oci:a\"\n");
        let new = table("[service.web]\nimage = \"oci:a\"\nrestart = \"always\"\n");
        let same = desired(&[("web", "v1")]);
        let im = images(&[("web", "sha256:1")]);
        let d = diff(&old, (&old, &same, &im), (&new, &same, &im));
        assert!(!d.changes(), "{d:?}");
    }

    #[test]
    fn host_level_keys_against_the_booted_config_need_a_reboot() {
        let booted = table(
            "hostname = \"h\"\n[kernel]\nmodules = [\"a\"]\n[sysctl]\n\"net.ipv4.ip_forward\" = 0\n[logs]\nmax_size = \"1M\"\n",
        );
        let new = table(
            "hostname = \"h\"\n[kernel]\nmodules = [\"a\", \"b\"]\n[sysctl]\n\"net.ipv4.ip_forward\" = 1\n[logs]\nmax_size = \"2M\"\n[[onboot]]\nname = \"x\"\n",
        );
        let d = desired(&[]);
        let d = diff(&booted, (&booted, &d, &BTreeMap::new()), (&new, &d, &BTreeMap::new()));
        assert_eq!(d.reboot_required, ["kernel.modules", "onboot", "sysctl.\"net.ipv4.ip_forward\""]);
        assert!(d.changes());
    }

    #[test]
    fn nested_tables_name_the_leaf_and_added_tables_every_key() {
        let mut out = Vec::new();
        let a: toml::Value = toml::Value::Table(table("[ready]\ntcp = 80\n"));
        let b: toml::Value =
            toml::Value::Table(table("[ready]\ntcp = 81\n[backoff]\ninitial = \"1s\"\nmax = \"9s\"\n"));
        changed_keys(&a, &b, "", &mut out);
        assert_eq!(out, ["backoff.initial", "backoff.max", "ready.tcp"]);
    }
}
