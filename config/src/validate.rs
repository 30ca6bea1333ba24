//! From the raw TOML shape to `Config`: fills in defaults and checks what serde could not
//! check value by value (the version, list elements, the gateway against the address).

use toml::Spanned;

use crate::error::{ConfigError, Source};
use crate::names::ModuleName;
use crate::net::Ipv4;
use crate::raw::{RawConfig, RawKernel, RawNetwork, RawService};
use crate::schema::{CURRENT_VERSION, Config, Host, Kernel, Network, Service};

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
    let host = match raw.host.0.hostname {
        Some(h) => Host { hostname: h.0.0 },
        None => Host::default(),
    };
    Ok(Config {
        version,
        host,
        kernel: kernel(raw.kernel.0, src)?,
        sysctl: raw.sysctl.into_iter().map(|(k, v)| (k.0.0, v.0)).collect(),
        network: network(raw.network.0, src)?,
        service: raw.service.into_iter().map(|(name, s)| (name.0.0, service(s.0))).collect(),
    })
}

fn kernel(raw: RawKernel, src: &Source) -> Result<Kernel, ConfigError> {
    let modules = raw
        .modules
        .into_iter()
        .enumerate()
        .map(|(i, m)| element::<ModuleName>(src, "kernel.modules", i, m).map(|m| m.0))
        .collect::<Result<_, _>>()?;
    Ok(Kernel { path: raw.path.map(|p| p.0.0), cmdline: raw.cmdline, modules })
}

fn network(raw: RawNetwork, src: &Source) -> Result<Network, ConfigError> {
    let defaults = Network::default();
    let dns = match raw.dns {
        Some(list) => list
            .into_iter()
            .enumerate()
            .map(|(i, a)| element::<Ipv4>(src, "network.dns", i, a).map(|a| a.0))
            .collect::<Result<_, _>>()?,
        None => defaults.dns,
    };
    let enabled = raw.enabled.unwrap_or(defaults.enabled);
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
    Ok(Network {
        interface: raw.interface.map_or(defaults.interface, |i| i.0.0),
        address,
        gateway: gateway.map(|(_, g)| g).or(defaults.gateway),
        dns,
        enabled,
    })
}

fn service(raw: RawService) -> Service {
    let defaults = Service::new(raw.image.0);
    Service {
        command: raw.command,
        env: raw.env.into_iter().map(|(k, v)| (k.0.0, v)).collect(),
        working_dir: raw.working_dir.map(|w| w.0.0),
        restart: raw.restart.map_or(defaults.restart, |r| r.0),
        stop_signal: raw.stop_signal.map_or(defaults.stop_signal, |s| s.0),
        stop_timeout: raw.stop_timeout.map_or(defaults.stop_timeout, |t| t.0.0),
        readonly_rootfs: raw.readonly_rootfs.unwrap_or(defaults.readonly_rootfs),
        ..defaults
    }
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
