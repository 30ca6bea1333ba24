//! From the raw TOML shape to `Config`: fills in defaults and checks what serde could not
//! check value by value (the version, list elements, ranges, the gateway against the
//! address, the dependency graph, names shared by services and one-shots, the shutdown
//! budget).

use std::collections::BTreeMap;

use toml::Spanned;

use crate::bind::BindSpec;
use crate::budget::{self, Budget};
use crate::error::{ConfigError, Source};
use crate::names::{EnvKey, ModuleName, NoNul, VolumeName};
use crate::net::Ipv4;
use crate::raw::{Parsed, RawCapabilities, RawConfig, RawKernel, RawNetwork, RawService, RawVolume, Table};
use crate::schema::{CURRENT_VERSION, Config, Host, Kernel, Logs, Network, NetworkMode, Service};
use crate::service_net::{self, Proto, ServiceNetwork};
use crate::volume::{Device, LABEL_MAX, Label, STATE_SUBDIR, State, Volume};
use crate::{Bind, Capabilities, backoff, caps, graph, oneshot, ready, resources};

pub(crate) fn build(raw: RawConfig, src: &Source) -> Result<Config, ConfigError> {
    let version = match raw.version {
        None => {
            return Err(src.invalid(
                None,
                "version".into(),
                format!("missing; expected `version = {CURRENT_VERSION}`"),
            ));
        }
        Some(v) if v.get_ref().0 != i64::from(CURRENT_VERSION) => {
            let message = format!("unsupported version {}: expected {CURRENT_VERSION}", v.get_ref().0);
            return Err(src.invalid(Some(v.span()), "version".into(), message));
        }
        Some(_) => CURRENT_VERSION,
    };
    let defaults = Host::default();
    let host = Host {
        hostname: raw.host.0.hostname.map_or(defaults.hostname, |h| h.0.0),
        runtime: raw.host.0.runtime.map_or(defaults.runtime, |r| r.0),
    };
    let kernel = kernel(raw.kernel.0, src)?;
    let network = network(raw.network.0, src)?;
    let volumes = volumes(raw.volume, src)?;
    let state = match raw.state {
        Some(Table(state)) => {
            let (span, name) = (state.volume.span(), state.volume.into_inner());
            if !volumes.contains_key(&name) {
                return Err(src.invalid(Some(span), "state.volume".into(), no_volume(&name)));
            }
            Some(State { volume: name })
        }
        None => None,
    };
    let mut deps = BTreeMap::new();
    let mut services = BTreeMap::new();
    let mut budget = Budget::default();
    let mut published = BTreeMap::new();
    for (name, Table(raw_service)) in raw.service {
        let name = name.0.0;
        let key = format!("service.{name}");
        deps.insert(name.clone(), raw_service.depends_on.clone());
        let written = raw_service.stop_timeout.as_ref().map(Spanned::span);
        for (i, p) in raw_service.publish.iter().enumerate() {
            let rule = p.get_ref().0;
            let at = |message: String| src.invalid(Some(p.span()), format!("{key}.publish[{i}]"), message);
            if rule.proto == Proto::Tcp && rule.host == service_net::API_PORT {
                return Err(at(format!("host port {} is hoist's control API", rule.host)));
            }
            if let Some(other) = published.insert((rule.host, rule.proto), name.clone()) {
                return Err(at(format!(
                    "host port {}/{} is published by service {other} already",
                    rule.host, rule.proto
                )));
            }
        }
        let refs = VolumeRefs { volumes: &volumes, state: state.as_ref().map(|s| s.volume.as_str()) };
        let service = service(raw_service, src, &key, refs)?;
        budget.charge(src, &format!("{key}.stop_timeout"), service.stop_timeout, written)?;
        services.insert(name, service);
    }
    graph::check(&deps, src)?;
    let mut taken = services.keys().map(|name| (name.clone(), format!("service.{name}"))).collect();
    let onboot = oneshot::build(raw.onboot, "onboot", src, &mut taken, &mut budget)?;
    let onshutdown = oneshot::build(raw.onshutdown, "onshutdown", src, &mut taken, &mut budget)?;
    let logs = match raw.logs.0.max_size {
        Some(m) => {
            let bytes = m.get_ref().0.0;
            if bytes < Logs::MIN_MAX_SIZE {
                let message = format!("{bytes} bytes is below the minimum of 64K");
                return Err(src.invalid(Some(m.span()), "logs.max_size".into(), message));
            }
            Logs { max_size: bytes }
        }
        None => Logs::default(),
    };
    Ok(Config {
        version,
        logs,
        host,
        kernel,
        sysctl: raw.sysctl.into_iter().map(|(k, v)| (k.0.0, v.0)).collect(),
        network,
        service: services,
        onboot,
        onshutdown,
        volume: volumes,
        state,
    })
}

fn no_volume(name: &str) -> String {
    format!("no [volume.{name}] in this file")
}

fn volumes(
    raw: BTreeMap<Parsed<VolumeName>, Table<RawVolume>>,
    src: &Source,
) -> Result<BTreeMap<String, Volume>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, Table(v)) in raw {
        let name = name.0.0;
        let key = format!("volume.{name}");
        let device_span = v.device.span();
        let label = match (v.label, v.device.get_ref()) {
            // The device is found by its label: that is the label, and no other.
            (Some(l), Parsed(Device::Label(found))) if l.get_ref().0.0 != *found => {
                let message = format!("the device is found by label {found:?}: leave label out or make it the same");
                return Err(src.invalid(Some(l.span()), format!("{key}.label"), message));
            }
            (_, Parsed(Device::Label(found))) => Some(found.clone()),
            (Some(l), _) => Some(l.into_inner().0.0),
            // Found by UUID: an existing filesystem, whatever its label.
            (None, Parsed(Device::Uuid(_))) => None,
            (None, _) => Some(name.parse::<Label>().map(|l| l.0).map_err(|_| {
                let message = format!(
                    "the label defaults to the volume's name, which is longer than {LABEL_MAX} characters: set label"
                );
                src.invalid(Some(device_span.clone()), format!("{key}.label"), message)
            })?),
        };
        let wait = match v.wait {
            Some(w) if w.get_ref().0.0 > Volume::MAX_WAIT => {
                return Err(src.invalid(Some(w.span()), format!("{key}.wait"), "at most 10m"));
            }
            Some(w) => w.into_inner().0.0,
            None => Volume::DEFAULT_WAIT,
        };
        let device = v.device.into_inner().0;
        let volume = Volume {
            device,
            filesystem: v.filesystem.map(|f| f.0).unwrap_or_default(),
            label,
            required: v.required.unwrap_or(true),
            wait,
        };
        // Two volumes on one disk would format and mount it twice.
        if let Some((other, _)) = out.iter().find(|(_, o): &(&String, &Volume)| o.device == volume.device) {
            let message = format!("{} is also volume.{other}'s device", volume.device);
            return Err(src.invalid(Some(device_span), format!("{key}.device"), message));
        }
        out.insert(name, volume);
    }
    Ok(out)
}

fn kernel(raw: RawKernel, src: &Source) -> Result<Kernel, ConfigError> {
    let modules = raw
        .modules
        .into_iter()
        .enumerate()
        .map(|(i, m)| element::<ModuleName>(src, "kernel.modules", i, m).map(|m| m.0))
        .collect::<Result<_, _>>()?;
    Ok(Kernel { path: raw.path.map(|p| p.0.0), cmdline: raw.cmdline.map(|c| c.0.0), modules })
}

fn network(raw: RawNetwork, src: &Source) -> Result<Network, ConfigError> {
    let mode = match &raw.mode {
        None if raw.address.is_none() && raw.gateway.is_none() => NetworkMode::Dhcp,
        None => NetworkMode::Static,
        Some(m) => match m.get_ref().as_str() {
            "dhcp" => NetworkMode::Dhcp,
            "static" => NetworkMode::Static,
            other => {
                let message = format!("mode {other:?} is neither \"dhcp\" nor \"static\"");
                return Err(src.invalid(Some(m.span()), "network.mode".into(), message));
            }
        },
    };
    let dns = match raw.dns {
        Some(list) => list
            .into_iter()
            .enumerate()
            .map(|(i, a)| element::<Ipv4>(src, "network.dns", i, a).map(|a| a.0))
            .collect::<Result<_, _>>()?,
        None if mode == NetworkMode::Dhcp => Vec::new(),
        None => Network::qemu_static().dns,
    };
    let enabled = raw.enabled.unwrap_or(true);
    let interface = raw.interface.map_or(Network::default().interface, |i| i.0.0);
    let bridge_span = raw.bridge_subnet.as_ref().map(Spanned::span);
    let bridge_subnet = match raw.bridge_subnet {
        Some(b) => service_net::bridge_subnet(b.get_ref().0)
            .map_err(|m| src.invalid(bridge_span.clone(), "network.bridge_subnet".into(), m))?,
        None => service_net::DEFAULT_BRIDGE_SUBNET,
    };
    if mode == NetworkMode::Dhcp {
        // The lease decides these: a written one would be silently ignored.
        let leased = [
            ("address", raw.address.as_ref().map(Spanned::span)),
            ("gateway", raw.gateway.as_ref().map(Spanned::span)),
        ];
        if let Some((key, span)) = leased.into_iter().find(|(_, span)| span.is_some()) {
            let message = format!("{key} is leased by DHCP: set mode = \"static\" to write it");
            return Err(src.invalid(span, format!("network.{key}"), message));
        }
        return Ok(Network { interface, mode, address: None, gateway: None, dns, enabled, bridge_subnet });
    }
    let defaults = Network::qemu_static();
    let address_span = raw.address.as_ref().map(Spanned::span);
    let address = raw.address.map(|a| a.into_inner().0).or(defaults.address);
    let gateway = raw.gateway.map(|g| (g.span(), g.into_inner().0.0));
    // The kernel refuses a default route through a gateway it cannot reach directly.
    if let (true, Some(address)) = (enabled, address) {
        match (&gateway, defaults.gateway) {
            (Some((span, gateway)), _) if !address.contains(*gateway) => {
                let message = format!("gateway {gateway} is not on the subnet of address {address}");
                return Err(src.invalid(Some(span.clone()), "network.gateway".into(), message));
            }
            (None, Some(default)) if !address.contains(default) => {
                let message =
                    format!("address {address} is not on the subnet of the default gateway {default}: set gateway too");
                return Err(src.invalid(address_span, "network.address".into(), message));
            }
            _ => {}
        }
    }
    // The bridge's addresses would shadow the host's own subnet (or be shadowed by it).
    if let (true, Some(address)) = (enabled, address)
        && service_net::overlaps(address, bridge_subnet)
    {
        let message =
            format!("bridge_subnet {bridge_subnet} overlaps the host's address {address}: pick another range");
        return Err(src.invalid(bridge_span.or(address_span), "network.bridge_subnet".into(), message));
    }
    let gateway = gateway.map(|(_, g)| g).or(defaults.gateway);
    Ok(Network { interface, mode, address, gateway, dns, enabled, bridge_subnet })
}

fn service(raw: RawService, src: &Source, key: &str, volumes: VolumeRefs) -> Result<Service, ConfigError> {
    let network = raw.network.as_ref().map_or(ServiceNetwork::Host, |n| n.get_ref().0);
    if let Some(first) = raw.publish.first()
        && network != ServiceNetwork::Bridge
    {
        let message = format!(
            "publish needs network = \"bridge\": a {network} service {}",
            if network == ServiceNetwork::Host { "is on the host's ports already" } else { "has no way in" }
        );
        return Err(src.invalid(Some(first.span()), format!("{key}.publish[0]"), message));
    }
    let defaults = Service::new(raw.image.into_inner().0);
    Ok(Service {
        command: strings(raw.command),
        env: env(raw.env),
        working_dir: raw.working_dir.map(|w| w.0.0),
        restart: raw.restart.map_or(defaults.restart, |r| r.0),
        stop_signal: raw.stop_signal.map_or(defaults.stop_signal, |s| s.0),
        stop_timeout: match raw.stop_timeout {
            Some(t) => budget::capped(Spanned::new(t.span(), t.into_inner().0.0), src, &format!("{key}.stop_timeout"))?,
            None => defaults.stop_timeout,
        },
        readonly_rootfs: raw.readonly_rootfs.unwrap_or(defaults.readonly_rootfs),
        host_pid: raw.host_pid.unwrap_or(defaults.host_pid),
        network,
        publish: raw.publish.into_iter().map(|p| p.into_inner().0).collect(),
        depends_on: raw.depends_on.into_iter().map(Spanned::into_inner).collect(),
        ready: raw.ready.map(|r| ready::build(r, src, &format!("{key}.ready"))).transpose()?.unwrap_or_default(),
        start_timeout: raw.start_timeout.map_or(defaults.start_timeout, |t| t.0.0),
        backoff: match raw.backoff {
            Some(b) => backoff::backoff(b.0, src, &format!("{key}.backoff"))?,
            None => defaults.backoff,
        },
        start_limit: match raw.start_limit {
            Some(l) => backoff::start_limit(l.0, src, &format!("{key}.start_limit"))?,
            None => defaults.start_limit,
        },
        memory: raw.memory.map(|m| resources::memory(m, src, &format!("{key}.memory"))).transpose()?,
        pids: raw.pids.map(|p| resources::pids(p, src, &format!("{key}.pids"))).transpose()?,
        cpu: raw.cpu.map(|c| resources::cpu(c, src, &format!("{key}.cpu"))).transpose()?,
        disk: match raw.disk {
            Some(d) => resources::disk(d, src, &format!("{key}.disk"))?,
            None => defaults.disk,
        },
        user: raw.user.map(|u| (u.0.0, u.0.1)),
        capabilities: capabilities(raw.capabilities, src, &format!("{key}.capabilities"))?,
        seccomp: raw.seccomp.map_or(defaults.seccomp, |s| s.0),
        binds: binds(raw.binds, src, &format!("{key}.binds"), Some(volumes))?,
        ..defaults
    })
}

pub(crate) fn env(raw: BTreeMap<Parsed<EnvKey>, Parsed<NoNul>>) -> BTreeMap<String, String> {
    raw.into_iter().map(|(k, v)| (k.0.0, v.0.0)).collect()
}

pub(crate) fn strings(raw: Vec<Parsed<NoNul>>) -> Vec<String> {
    raw.into_iter().map(|s| s.0.0).collect()
}

/// What binds may name: the volumes, and the one hoist keeps its state on.
#[derive(Clone, Copy)]
pub(crate) struct VolumeRefs<'a> {
    volumes: &'a BTreeMap<String, Volume>,
    state: Option<&'a str>,
}

/// The binds at `key`; a bind on a volume must name one of `volumes` and stay out of
/// hoist's own state (None: the container may not bind volumes: one-shots run before any
/// volume is waited for).
pub(crate) fn binds(
    raw: Vec<Spanned<String>>,
    src: &Source,
    key: &str,
    volumes: Option<VolumeRefs>,
) -> Result<Vec<Bind>, ConfigError> {
    let mut out = Vec::new();
    for (i, b) in raw.into_iter().enumerate() {
        let span = b.span();
        let bind = element::<BindSpec>(src, key, i, b)?.0;
        if let Some(name) = &bind.volume {
            let message = match volumes {
                None => {
                    Some(format!("bind {name:?}: one-shots cannot bind volumes (they run before volumes are mounted)"))
                }
                Some(v) if !v.volumes.contains_key(name) => {
                    Some(format!("bind on volume {name:?}: {}", no_volume(name)))
                }
                // containerd's content and hoist's generations: a service that could write
                // them could change what every other service runs.
                Some(v)
                    if v.state == Some(name)
                        && (bind.source.is_empty() || bind.source.split('/').next() == Some(STATE_SUBDIR)) =>
                {
                    Some(format!(
                        "bind on volume {name:?}: it holds hoist's state ([state]) in {STATE_SUBDIR}/; bind another directory on it, like {name}/data"
                    ))
                }
                Some(_) => None,
            };
            if let Some(message) = message {
                return Err(src.invalid(Some(span), format!("{key}[{i}]"), message));
            }
        }
        out.push(bind);
    }
    Ok(out)
}

pub(crate) fn capabilities(
    raw: Option<Table<RawCapabilities>>,
    src: &Source,
    key: &str,
) -> Result<Capabilities, ConfigError> {
    raw.map_or(Ok(Capabilities::default()), |c| caps::build(c.0, src, key))
}

/// Parses element `index` of the list at `list` (a dotted key), pointing errors at it.
fn element<T>(src: &Source, list: &str, index: usize, value: Spanned<String>) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let span = value.span();
    value.get_ref().parse().map_err(|e| src.invalid(Some(span), format!("{list}[{index}]"), e))
}
