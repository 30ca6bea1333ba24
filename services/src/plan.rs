//! What it takes to (re)start one container, computed once from the config and the build
//! manifest: the OCI spec, the rootfs tree, the writable layer's size, and the supervision
//! settings. Pure data, so the
//! reconciler core compares plans to decide what a new config changes.

use std::time::Duration;

use hoist_config::Ready;
use hoist_config::manifest::ServiceImage;

use crate::spec::Settings;

/// Everything needed to (re)start one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub name: String,
    pub spec: Vec<u8>,
    /// The spec's process alone (for readiness commands exec'd into the container).
    pub process: Vec<u8>,
    /// Why this container cannot start at all (no image in the build, bad spec).
    pub problem: Option<String>,
    pub rootfs: String,
    /// Bytes the writable layer's tmpfs may hold (`disk`).
    pub disk: u64,
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    pub ready: Ready,
    pub start_timeout: Duration,
    pub depends_on: Vec<String>,
    /// Restart settings (services only; one-shot stages are never restarted).
    pub policy: Option<crate::policy::Policy>,
    /// Log file rotation size (`[logs] max_size`).
    pub log_max: u64,
    /// Directories on volumes that the binds need, made before each start.
    pub volume_dirs: Vec<crate::volume_dirs::VolumeDir>,
    /// A bridge service: the bridge subnet and its publish rules, set up before each start.
    pub bridge: Option<(hoist_config::Ipv4Cidr, Vec<hoist_config::Publish>)>,
}

/// JSON with every object's keys sorted, and capability sets too. oci-spec keeps maps
/// (sysctls, annotations) in `HashMap`s and capabilities in `HashSet`s, whose order
/// differs from one value to the next; plans are compared and hashed by these bytes, so
/// the same settings must always give the same bytes.
fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    // serde_json's own map is a BTreeMap (no preserve_order feature here): sorted.
    let mut v = serde_json::to_value(value)?;
    let caps = match v.get_mut("process") {
        Some(process) => process.get_mut("capabilities"),
        None => v.get_mut("capabilities"),
    };
    if let Some(serde_json::Value::Object(sets)) = caps {
        for set in sets.values_mut() {
            if let serde_json::Value::Array(items) = set {
                items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    serde_json::to_vec(&v)
}

impl Plan {
    /// What identifies the container this plan makes: its spec and rootfs, hashed. Two
    /// plans with one id run the same thing (supervision settings aside).
    pub fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update((self.spec.len() as u64).to_le_bytes());
        h.update(&self.spec);
        h.update(self.rootfs.as_bytes());
        h.update(self.disk.to_le_bytes());
        let digest = h.finalize();
        digest[..12].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Seccomp filters the build compiled, by profile ([`BuildManifest::seccomp_bpf`]).
///
/// [`BuildManifest::seccomp_bpf`]: hoist_config::manifest::BuildManifest::seccomp_bpf
pub type Filters = std::collections::BTreeMap<String, String>;

/// A plan from container settings; service-only fields are filled in by [`service`].
pub fn container(
    name: &str,
    settings: &Settings,
    image: Option<&ServiceImage>,
    source: &str,
    filters: &Filters,
) -> Plan {
    let mut plan = Plan {
        name: name.to_string(),
        stop_signal: libc::SIGTERM,
        stop_timeout: Duration::from_secs(10),
        log_max: hoist_config::Logs::DEFAULT_MAX_SIZE,
        disk: settings.disk.unwrap_or(hoist_config::Service::DEFAULT_DISK),
        ..Default::default()
    };
    let Some(image) = image else {
        plan.problem = Some(format!("image {source} is not in this build"));
        return plan;
    };
    plan.rootfs = image.rootfs.clone();
    match crate::spec::build(name, settings, image) {
        Ok(mut spec) => {
            crate::spec::attach_compiled_filter(&mut spec, filters);
            let user = spec.process().as_ref().map(|p| (p.user().uid(), p.user().gid())).unwrap_or_default();
            plan.volume_dirs = settings
                .binds
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    Some(crate::volume_dirs::VolumeDir {
                        volume: b.volume.clone()?,
                        sub: b.source.clone(),
                        uid: user.0,
                        gid: user.1,
                        staging: crate::spec::host_source(name, i, b),
                    })
                })
                .collect();
            plan.process = spec.process().as_ref().and_then(|p| canonical_json(p).ok()).unwrap_or_default();
            match canonical_json(&spec) {
                Ok(json) => plan.spec = json,
                Err(e) => plan.problem = Some(format!("spec: {e}")),
            }
        }
        Err(e) => plan.problem = Some(e.to_string()),
    }
    plan
}

pub fn service(name: &str, s: &hoist_config::Service, image: Option<&ServiceImage>, filters: &Filters) -> Plan {
    Plan {
        stop_signal: s.stop_signal.0,
        stop_timeout: s.stop_timeout,
        ready: s.ready.clone(),
        start_timeout: s.start_timeout,
        depends_on: depends_on(s),
        policy: Some(crate::policy::Policy { restart: s.restart, backoff: s.backoff, limit: s.start_limit }),
        ..container(name, &Settings::from(s), image, &s.image.describe(), filters)
    }
}

/// The service's `depends_on`, then the target of each volume it binds (once each): it
/// starts only once they are mounted.
fn depends_on(s: &hoist_config::Service) -> Vec<String> {
    let mut deps = s.depends_on.clone();
    for volume in s.binds.iter().filter_map(|b| b.volume.as_deref()) {
        let target = hoist_guest::volume::target(volume);
        if !deps.contains(&target) {
            deps.push(target);
        }
    }
    deps
}

/// A one-shot stage (`[[onboot]]`, `[[onshutdown]]`) and how long it may run.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub plan: Plan,
    pub timeout: Duration,
    pub required: bool,
}

/// The desired state of the host: every service's plan and the one-shot stages. A new
/// config is a new `Desired`; the core works out what differs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub services: std::collections::BTreeMap<String, Plan>,
    pub onboot: Vec<Stage>,
    pub onshutdown: Vec<Stage>,
}

impl Desired {
    pub fn from_config(config: &hoist_config::Config, manifest: &hoist_config::manifest::BuildManifest) -> Self {
        let log_max = config.logs.max_size;
        let stage = |o: &hoist_config::OneShot| {
            let plan = container(
                &o.name,
                &Settings::from(o),
                manifest.service.get(&o.name),
                &o.image.describe(),
                &manifest.seccomp_bpf,
            );
            Stage { plan: Plan { log_max, ..plan }, timeout: o.timeout, required: o.required }
        };
        Desired {
            services: config
                .service
                .iter()
                .map(|(name, s)| {
                    let plan = service(name, s, manifest.service.get(name), &manifest.seccomp_bpf);
                    let bridge = (s.network == hoist_config::ServiceNetwork::Bridge)
                        .then(|| (config.network.bridge_subnet, s.publish.clone()));
                    (name.clone(), Plan { log_max, bridge, ..plan })
                })
                .collect(),
            onboot: config.onboot.iter().map(stage).collect(),
            onshutdown: config.onshutdown.iter().map(stage).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_of_maps_is_the_same_bytes_whatever_their_order() {
        let mut a = std::collections::HashMap::new();
        let mut b = std::collections::HashMap::new();
        for i in 0..32 {
            a.insert(format!("k{i}"), i);
        }
        for i in (0..32).rev() {
            b.insert(format!("k{i}"), i);
        }
        assert_eq!(super::canonical_json(&a).expect("a"), super::canonical_json(&b).expect("b"));
    }

    #[test]
    fn disk_is_part_of_the_plan_and_its_id() {
        let manifest = |rootfs: &str| {
            let mut m = hoist_config::manifest::BuildManifest::default();
            let image = hoist_config::manifest::ServiceImage {
                rootfs: rootfs.into(),
                cmd: vec!["sh".into()],
                ..Default::default()
            };
            m.service.insert("web".into(), image);
            m
        };
        let plan = |text: &str| {
            let config = hoist_config::parse(text, "host.toml").expect("config");
            super::Desired::from_config(&config, &manifest("/r")).services["web"].clone()
        };
        let default = plan("version = 1\n[service.web]\nimage = \"oci:/x\"\n");
        let small = plan("version = 1\n[service.web]\nimage = \"oci:/x\"\ndisk = \"16M\"\n");
        assert_eq!(default.disk, hoist_config::Service::DEFAULT_DISK);
        assert_eq!(small.disk, 16 << 20);
        assert_ne!(default, small);
        assert_ne!(default.id(), small.id());
    }

    #[test]
    fn the_same_service_twice_is_the_same_plan_byte_for_byte() {
        let text = "version = 1\n[service.web]\nimage = \"oci:/x\"\ncapabilities = { add = [\"CAP_NET_ADMIN\", \"CAP_SYS_TIME\"] }\n";
        let config = hoist_config::parse(text, "host.toml").expect("config");
        let mut manifest = hoist_config::manifest::BuildManifest::default();
        let image =
            hoist_config::manifest::ServiceImage { rootfs: "/r".into(), cmd: vec!["sh".into()], ..Default::default() };
        manifest.service.insert("web".into(), image);
        let plans: Vec<super::Plan> =
            (0..8).map(|_| super::Desired::from_config(&config, &manifest).services["web"].clone()).collect();
        assert!(plans[0].problem.is_none(), "{:?}", plans[0].problem);
        assert!(plans.iter().all(|p| *p == plans[0]), "capability sets must serialize in one order");
    }

    #[test]
    fn a_compiled_filter_for_the_profile_goes_to_crun_and_no_other() {
        let config = hoist_config::parse(
            "version = 1\n[service.web]\nimage = \"oci:/x\"\n[service.admin]\nimage = \"oci:/x\"\ncapabilities = { add = [\"CAP_SYS_ADMIN\"] }\n[service.raw]\nimage = \"oci:/x\"\nseccomp = \"unconfined\"\n",
            "host.toml",
        )
        .expect("config");
        let mut manifest = hoist_config::manifest::BuildManifest::default();
        for name in ["web", "admin", "raw"] {
            let image = hoist_config::manifest::ServiceImage {
                rootfs: "/r".into(),
                cmd: vec!["sh".into()],
                ..Default::default()
            };
            manifest.service.insert(name.into(), image);
        }
        let web = crate::spec::Settings::from(&config.service["web"]);
        let profile = crate::spec::seccomp_profile("web", &web).expect("profile").expect("confined");
        manifest.seccomp_bpf.insert(crate::seccomp::key(&profile).expect("key"), "QUJD".into());
        let desired = super::Desired::from_config(&config, &manifest);
        let annotation = |name: &str| {
            let spec: serde_json::Value = serde_json::from_slice(&desired.services[name].spec).expect("spec");
            spec["annotations"][crate::seccomp::BPF_ANNOTATION].as_str().map(str::to_string)
        };
        assert_eq!(annotation("web").as_deref(), Some("QUJD"));
        assert_eq!(annotation("admin"), None, "another profile: crun compiles it");
        assert_eq!(annotation("raw"), None, "no filter at all");
    }
}
