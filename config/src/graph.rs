//! `depends_on` between services: checked to name existing services and to have no
//! cycles, then turned into start levels. Start level n only once every service of the
//! levels before it is ready; stop in the reverse order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use toml::Spanned;

use crate::Config;
use crate::error::{ConfigError, Source};

/// Lists at most this many service names in a "not a service" error.
const LIST_KNOWN: usize = 8;

/// Checks every service's `depends_on` (by service name, with the elements' positions).
/// Missing names and self-dependencies are reported first, then the cycle whose
/// alphabetically first service comes first, starting from that service.
pub(crate) fn check(deps: &BTreeMap<String, Vec<Spanned<String>>>, src: &Source) -> Result<(), ConfigError> {
    for (name, list) in deps {
        for (i, dep) in list.iter().enumerate() {
            let key = format!("service.{name}.depends_on[{i}]");
            if dep.get_ref() == name {
                return Err(src.invalid(Some(dep.span()), key, "a service cannot depend on itself"));
            }
            if !deps.contains_key(dep.get_ref()) {
                let others: Vec<&str> = deps.keys().map(String::as_str).filter(|n| n != name).collect();
                let mut message = format!("depends on {:?}, which is not a service", dep.get_ref());
                if !others.is_empty() && others.len() <= LIST_KNOWN {
                    message.push_str(&format!("; expected one of {}", others.join(", ")));
                }
                return Err(src.invalid(Some(dep.span()), key, message));
            }
        }
    }
    // A service not on any cycle has no cycle through it, so the first service that has
    // one is the smallest name on any cycle: the report does not depend on map order.
    for (start, list) in deps {
        if let Some(cycle) = cycle_through(start, deps) {
            let next = cycle.get(1).copied().unwrap_or(start);
            let (i, dep) = list
                .iter()
                .enumerate()
                .find(|(_, d)| d.get_ref() == next)
                .expect("the cycle leaves start by one of its deps");
            let message = format!("dependency cycle: {} -> {start}", cycle.join(" -> "));
            return Err(src.invalid(Some(dep.span()), format!("service.{start}.depends_on[{i}]"), message));
        }
    }
    Ok(())
}

/// The shortest path from `start` back to itself, as [start, ..., last], if any.
fn cycle_through<'a>(start: &'a str, deps: &'a BTreeMap<String, Vec<Spanned<String>>>) -> Option<Vec<&'a str>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for dep in deps.get(node).into_iter().flatten() {
            let dep = dep.get_ref().as_str();
            if dep == start {
                // Every parent chain ends at start, which has no parent.
                let mut path = vec![node];
                while let Some(&p) = parent.get(path[path.len() - 1]) {
                    path.push(p);
                }
                path.reverse();
                return Some(path);
            }
            if deps.contains_key(dep) && !parent.contains_key(dep) {
                parent.insert(dep, node);
                queue.push_back(dep);
            }
        }
    }
    None
}

impl Config {
    /// Services in start levels: level 0 depends on nothing, level n only on services in
    /// earlier levels; each level sorted. Start a level's services in parallel; stop in
    /// reverse. A config from `parse` has no cycles; in one built by hand, services on or
    /// behind a cycle form one last level, and names that are not services are ignored.
    pub fn start_order(&self) -> Vec<Vec<String>> {
        let mut placed: BTreeSet<&str> = BTreeSet::new();
        let mut remaining: Vec<&str> = self.service.keys().map(String::as_str).collect();
        let mut levels = Vec::new();
        while !remaining.is_empty() {
            let (level, blocked): (Vec<&str>, Vec<&str>) = remaining.iter().partition(|name| {
                self.service[**name]
                    .depends_on
                    .iter()
                    .all(|dep| placed.contains(dep.as_str()) || !self.service.contains_key(dep))
            });
            if level.is_empty() {
                levels.push(blocked.iter().map(|n| n.to_string()).collect());
                break;
            }
            placed.extend(&level);
            levels.push(level.iter().map(|n| n.to_string()).collect());
            remaining = blocked;
        }
        levels
    }

    /// The services that list `name` in their `depends_on` (directly), sorted.
    pub fn dependents(&self, name: &str) -> Vec<String> {
        self.service.iter().filter(|(_, s)| s.depends_on.iter().any(|d| d == name)).map(|(n, _)| n.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageSource, Service};

    fn deps(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<Spanned<String>>> {
        edges
            .iter()
            .map(|(name, list)| (name.to_string(), list.iter().map(|d| Spanned::new(0..0, d.to_string())).collect()))
            .collect()
    }

    fn config(edges: &[(&str, &[&str])]) -> Config {
        let mut config = Config::default();
        for (name, list) in edges {
            let mut service = Service::new(ImageSource::Dir { dir: "/x".into() });
            service.depends_on = list.iter().map(|d| d.to_string()).collect();
            config.service.insert(name.to_string(), service);
        }
        config
    }

    #[test]
    fn shortest_cycle_from_the_start() {
        let d = deps(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &["a"]), ("x", &[])]);
        assert_eq!(cycle_through("a", &d), Some(vec!["a", "c"]));
        assert_eq!(cycle_through("b", &d), Some(vec!["b", "c", "a"]));
        assert_eq!(cycle_through("x", &d), None);
        assert_eq!(cycle_through("s", &deps(&[("s", &["s"])])), Some(vec!["s"]));
    }

    #[test]
    fn the_reported_cycle_starts_at_its_smallest_name() {
        let src = Source { file: "t.toml", text: "" };
        // "d" sorts first but is only behind the cycle, not on it.
        let d = deps(&[("d", &["q"]), ("q", &["r"]), ("r", &["p"]), ("p", &["q"])]);
        match check(&d, &src) {
            Err(ConfigError::Invalid { key, message, .. }) => {
                assert_eq!(key, "service.p.depends_on[0]");
                assert_eq!(message, "dependency cycle: p -> q -> r -> p");
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
        assert!(check(&deps(&[("a", &["b"]), ("b", &[]), ("c", &["a", "b"])]), &src).is_ok());
    }

    #[test]
    fn levels_and_dependents() {
        let c = config(&[("web", &["api", "db"]), ("api", &["db"]), ("db", &[]), ("log", &[])]);
        assert_eq!(c.start_order(), [vec!["db", "log"], vec!["api"], vec!["web"]]);
        assert_eq!(c.dependents("db"), ["api", "web"]);
        assert!(Config::default().start_order().is_empty());
    }

    #[test]
    fn hand_built_cycles_do_not_hang() {
        let c = config(&[("a", &["b"]), ("b", &["a"]), ("c", &["a"]), ("d", &["gone"])]);
        assert_eq!(c.start_order(), [vec!["d"], vec!["a", "b", "c"]]);
    }
}
