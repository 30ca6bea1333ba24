//! `depends_on` between services: checked to name existing services (or the built-in
//! [`NETWORK_TARGET`], which is no service and no node of the graph) and to have no
//! cycles, then turned into start levels. Start level n only once every service of the
//! levels before it is ready; stop in the reverse order.
//!
//! Everything here is linear in services plus edges (up to a log factor for name lookups):
//! a chain of thousands of services must not make `hoist check` crawl. Services are
//! numbered in name order, so "smallest index" is "alphabetically first".

use std::collections::{BTreeMap, VecDeque};

use toml::Spanned;

use crate::error::{ConfigError, Source};
use crate::{Config, NETWORK_TARGET};

/// Lists at most this many service names in a "not a service" error.
const LIST_KNOWN: usize = 8;

/// Checks every service's `depends_on` (by service name, with the elements' positions).
/// [`NETWORK_TARGET`] always exists (PID 1 reaches it) and depends on nothing, so it is
/// skipped. Missing names and self-dependencies are reported first, then the cycle whose
/// alphabetically first service comes first, starting from that service.
pub(crate) fn check(deps: &BTreeMap<String, Vec<Spanned<String>>>, src: &Source) -> Result<(), ConfigError> {
    for (name, list) in deps {
        for (i, dep) in list.iter().enumerate() {
            let key = format!("service.{name}.depends_on[{i}]");
            if dep.get_ref() == name {
                return Err(src.invalid(Some(dep.span()), key, "a service cannot depend on itself"));
            }
            if !deps.contains_key(dep.get_ref()) && dep.get_ref() != NETWORK_TARGET {
                let others: Vec<&str> = deps.keys().map(String::as_str).filter(|n| n != name).collect();
                let mut message = format!("depends on {:?}, which is not a service", dep.get_ref());
                if !others.is_empty() && others.len() <= LIST_KNOWN {
                    message.push_str(&format!("; expected one of {}", others.join(", ")));
                }
                return Err(src.invalid(Some(dep.span()), key, message));
            }
        }
    }
    let graph = Graph::new(deps.iter().map(|(name, list)| (name.as_str(), list.iter().map(|d| d.get_ref().as_str()))));
    // The first service on any cycle is the smallest name on one, so the report does not
    // depend on map order.
    let Some(start) = graph.on_cycle().iter().position(|&on| on) else {
        return Ok(());
    };
    let cycle = graph.shortest_cycle(start).expect("a service on a cycle has a path back to itself");
    let name = graph.names[start];
    let next = cycle.get(1).map_or(name, |&n| graph.names[n]);
    let (i, dep) = deps[name]
        .iter()
        .enumerate()
        .find(|(_, d)| d.get_ref() == next)
        .expect("the cycle leaves start by one of its deps");
    let path: Vec<&str> = cycle.iter().map(|&n| graph.names[n]).collect();
    let message = format!("dependency cycle: {} -> {name}", path.join(" -> "));
    Err(src.invalid(Some(dep.span()), format!("service.{name}.depends_on[{i}]"), message))
}

/// Services by index (in name order) and, for each, the indices of the services it
/// depends on; names that are not services are left out.
struct Graph<'a> {
    names: Vec<&'a str>,
    edges: Vec<Vec<usize>>,
}

impl<'a> Graph<'a> {
    /// `services` must come in name order, as a `BTreeMap` gives them.
    fn new<D: Iterator<Item = &'a str>>(services: impl Iterator<Item = (&'a str, D)> + Clone) -> Self {
        let names: Vec<&str> = services.clone().map(|(name, _)| name).collect();
        let edges = services.map(|(_, deps)| deps.filter_map(|d| names.binary_search(&d).ok()).collect()).collect();
        Graph { names, edges }
    }

    /// Which services lie on a cycle: those in a strongly connected component of more than
    /// one service, or depending on themselves. Tarjan's algorithm, with an explicit stack
    /// instead of recursion so that a long chain cannot overflow the thread's stack.
    fn on_cycle(&self) -> Vec<bool> {
        let n = self.edges.len();
        let mut t = Tarjan {
            order: vec![Tarjan::UNSEEN; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            calls: Vec::new(),
            next: 0,
        };
        let mut cyclic = vec![false; n];
        for root in 0..n {
            if t.order[root] != Tarjan::UNSEEN {
                continue;
            }
            t.visit(root);
            while let Some(top) = t.calls.last_mut() {
                let v = top.0;
                if let Some(&w) = self.edges[v].get(top.1) {
                    top.1 += 1;
                    if t.order[w] == Tarjan::UNSEEN {
                        t.visit(w);
                    } else if t.on_stack[w] {
                        t.low[v] = t.low[v].min(t.order[w]);
                    }
                    continue;
                }
                t.calls.pop();
                if let Some(&(parent, _)) = t.calls.last() {
                    t.low[parent] = t.low[parent].min(t.low[v]);
                }
                if t.low[v] == t.order[v] {
                    // v roots a component: everything above it on the stack. It has more
                    // than one member exactly when v is not on top.
                    let on = t.stack.last() != Some(&v) || self.edges[v].contains(&v);
                    loop {
                        let w = t.stack.pop().expect("a component's root is on the stack");
                        t.on_stack[w] = false;
                        cyclic[w] = on;
                        if w == v {
                            break;
                        }
                    }
                }
            }
        }
        cyclic
    }

    /// The shortest path from `start` back to itself, as [start, ..., last], if any.
    fn shortest_cycle(&self, start: usize) -> Option<Vec<usize>> {
        let mut parent: Vec<Option<usize>> = vec![None; self.edges.len()];
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for &dep in &self.edges[node] {
                if dep == start {
                    // Every parent chain ends at start, which has no parent.
                    let mut path = vec![node];
                    while let Some(p) = parent[path[path.len() - 1]] {
                        path.push(p);
                    }
                    path.reverse();
                    return Some(path);
                }
                if parent[dep].is_none() {
                    parent[dep] = Some(node);
                    queue.push_back(dep);
                }
            }
        }
        None
    }
}

/// Tarjan's bookkeeping, per service: visit order, lowest order reachable, whether on the
/// component stack; `calls` is the unrolled recursion (service, edges followed so far).
struct Tarjan {
    order: Vec<usize>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    calls: Vec<(usize, usize)>,
    next: usize,
}

impl Tarjan {
    const UNSEEN: usize = usize::MAX;

    fn visit(&mut self, v: usize) {
        (self.order[v], self.low[v], self.on_stack[v]) = (self.next, self.next, true);
        self.next += 1;
        self.stack.push(v);
        self.calls.push((v, 0));
    }
}

impl Config {
    /// Services in start levels: level 0 depends on no service (it may wait for
    /// [`NETWORK_TARGET`], which is no level), level n only on services in earlier levels;
    /// each level sorted. Start a level's services in parallel; stop in
    /// reverse. A config from `parse` has no cycles; in one built by hand, services on or
    /// behind a cycle form one last level, and names that are not services are ignored.
    pub fn start_order(&self) -> Vec<Vec<String>> {
        let graph =
            Graph::new(self.service.iter().map(|(name, s)| (name.as_str(), s.depends_on.iter().map(String::as_str))));
        let n = graph.names.len();
        // Kahn's algorithm: a service is placed once all its dependencies are, one level
        // above the highest of them.
        let mut waiting: Vec<usize> = graph.edges.iter().map(Vec::len).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, deps) in graph.edges.iter().enumerate() {
            for &d in deps {
                dependents[d].push(i);
            }
        }
        let mut level = vec![0; n];
        let mut placed = vec![false; n];
        let mut levels: Vec<Vec<String>> = Vec::new();
        let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
        while let Some(i) = ready.pop() {
            placed[i] = true;
            if levels.len() <= level[i] {
                levels.resize(level[i] + 1, Vec::new());
            }
            levels[level[i]].push(graph.names[i].to_string());
            for &j in &dependents[i] {
                level[j] = level[j].max(level[i] + 1);
                waiting[j] -= 1;
                if waiting[j] == 0 {
                    ready.push(j);
                }
            }
        }
        for l in &mut levels {
            l.sort();
        }
        // Indices follow name order, so this level comes out sorted.
        let blocked: Vec<String> = (0..n).filter(|&i| !placed[i]).map(|i| graph.names[i].to_string()).collect();
        if !blocked.is_empty() {
            levels.push(blocked);
        }
        levels
    }

    /// The services that list `name` in their `depends_on` (directly), sorted; for
    /// [`NETWORK_TARGET`], those that wait for the network.
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

    fn graph<'a>(d: &'a BTreeMap<String, Vec<Spanned<String>>>) -> Graph<'a> {
        Graph::new(d.iter().map(|(name, list)| (name.as_str(), list.iter().map(|d| d.get_ref().as_str()))))
    }

    /// The shortest cycle through `start`, by name.
    fn cycle_through<'a>(start: &str, g: &Graph<'a>) -> Option<Vec<&'a str>> {
        let start = g.names.iter().position(|n| *n == start)?;
        g.shortest_cycle(start).map(|path| path.iter().map(|&i| g.names[i]).collect())
    }

    #[test]
    fn shortest_cycle_from_the_start() {
        let d = deps(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &["a"]), ("x", &[])]);
        let g = graph(&d);
        assert_eq!(cycle_through("a", &g), Some(vec!["a", "c"]));
        assert_eq!(cycle_through("b", &g), Some(vec!["b", "c", "a"]));
        assert_eq!(cycle_through("x", &g), None);
        assert_eq!(g.on_cycle(), [true, true, true, false]);
        let own = deps(&[("s", &["s"])]);
        assert_eq!(cycle_through("s", &graph(&own)), Some(vec!["s"]));
        assert_eq!(graph(&own).on_cycle(), [true]);
    }

    #[test]
    fn only_services_on_a_cycle_are_on_one() {
        // p <-> q, q -> r -> s <-> t, u -> p: p, q, s, t are on cycles; r and u only lead to them.
        let d = deps(&[("p", &["q"]), ("q", &["p", "r"]), ("r", &["s"]), ("s", &["t"]), ("t", &["s"]), ("u", &["p"])]);
        assert_eq!(graph(&d).on_cycle(), [true, true, false, true, true, false]);
    }

    /// A chain of `n` services, each depending on the next one, named so that they sort in
    /// chain order.
    fn chain(n: usize) -> Vec<(String, Vec<String>)> {
        (0..n).map(|i| (format!("s{i:05}"), if i + 1 < n { vec![format!("s{:05}", i + 1)] } else { vec![] })).collect()
    }

    #[test]
    fn long_chains_are_checked_in_linear_time() {
        // Quadratic checks took seconds on 8,000 services; this is 20,000 and a cycle at
        // the far end, which each service leads to.
        const N: usize = 20_000;
        let src = Source { file: "t.toml", text: "" };
        let mut d: BTreeMap<String, Vec<Spanned<String>>> = chain(N)
            .into_iter()
            .map(|(name, list)| (name, list.into_iter().map(|d| Spanned::new(0..0, d)).collect()))
            .collect();
        assert!(check(&d, &src).is_ok());

        let mut config = Config::default();
        for (name, list) in chain(N) {
            let mut service = Service::new(ImageSource::Dir { dir: "/x".into() });
            service.depends_on = list;
            config.service.insert(name, service);
        }
        let levels = config.start_order();
        assert_eq!(levels.len(), N);
        assert_eq!(levels[0], [format!("s{:05}", N - 1)]);
        assert_eq!(levels[N - 1], ["s00000"]);

        let last = format!("s{:05}", N - 1);
        d.get_mut(&last).expect("last of the chain").push(Spanned::new(0..0, "x".to_string()));
        d.insert("x".into(), vec![Spanned::new(0..0, "y".to_string())]);
        d.insert("y".into(), vec![Spanned::new(0..0, "x".to_string())]);
        match check(&d, &src) {
            Err(ConfigError::Invalid { key, message, .. }) => {
                assert_eq!(
                    (key.as_str(), message.as_str()),
                    ("service.x.depends_on[0]", "dependency cycle: x -> y -> x")
                );
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
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
    fn the_network_target_is_no_service_and_no_node() {
        let src = Source { file: "t.toml", text: "" };
        let d = deps(&[("api", &["network", "db"]), ("db", &["network"]), ("log", &[])]);
        assert!(check(&d, &src).is_ok());
        // Not on a cycle, however many services wait for it.
        assert_eq!(graph(&d).edges, [vec![1], vec![], vec![]]);
        let c = config(&[("api", &["network", "db"]), ("db", &["network"]), ("log", &[])]);
        assert_eq!(c.start_order(), [vec!["db", "log"], vec!["api"]]);
        assert_eq!(c.dependents(NETWORK_TARGET), ["api", "db"]);
        assert_eq!(c.dependents("db"), ["api"]);
        // A cycle elsewhere is still found, and the target is not named in it.
        let d = deps(&[("a", &["network", "b"]), ("b", &["a"])]);
        match check(&d, &src) {
            Err(ConfigError::Invalid { key, message, .. }) => {
                assert_eq!(
                    (key.as_str(), message.as_str()),
                    ("service.a.depends_on[1]", "dependency cycle: a -> b -> a")
                );
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn hand_built_cycles_do_not_hang() {
        let c = config(&[("a", &["b"]), ("b", &["a"]), ("c", &["a"]), ("d", &["gone"])]);
        assert_eq!(c.start_order(), [vec!["d"], vec!["a", "b", "c"]]);
    }
}
