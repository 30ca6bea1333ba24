//! The PID 1 half of the host config ([`hoist_guest::boot`]), made from the validated
//! config at build time: PID 1 reads these few lines instead of the TOML.

use hoist_config::{Config, Device};
use hoist_guest::boot::{Boot, Network, services_budget};
use hoist_guest::volume::{Selector, Spec};

/// What PID 1 loads besides [`hoist_guest::kernel::ALWAYS_MODULES`]: the config's, and the
/// bridge's when a service is on it.
pub fn modules(config: &Config) -> Vec<String> {
    let mut modules = config.kernel.modules.clone();
    if config.service.values().any(|s| s.network == hoist_config::ServiceNetwork::Bridge) {
        for m in hoist_guest::kernel::BRIDGE_MODULES {
            if !modules.iter().any(|have| have == m) {
                modules.push(m.to_string());
            }
        }
    }
    modules
}

pub fn facts(config: &Config) -> Boot {
    let n = &config.network;
    let stop_timeouts = config.service.values().map(|s| s.stop_timeout);
    Boot {
        hostname: config.host.hostname.clone(),
        sysctls: config.sysctl.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        modules: modules(config),
        log_max: config.logs.max_size,
        stop_budget: services_budget(stop_timeouts.chain(config.onshutdown.iter().map(|o| o.timeout))),
        network: Network {
            enabled: n.enabled,
            dhcp: n.mode == hoist_config::NetworkMode::Dhcp,
            interface: n.interface.clone(),
            address: n.address.map(|c| (c.addr, c.prefix)),
            gateway: n.gateway,
            dns: n.dns.clone(),
        },
        volumes: config
            .volume
            .iter()
            .map(|(name, v)| Spec {
                name: name.clone(),
                selector: match &v.device {
                    Device::Serial(s) => Selector::Serial(s.clone()),
                    Device::Label(s) => Selector::Label(s.clone()),
                    Device::Uuid(s) => Selector::Uuid(s.clone()),
                    Device::ById(s) => Selector::ById(s.clone()),
                },
                label: v.label.clone(),
                required: v.required,
                wait: v.wait,
            })
            .collect(),
        state: config.state.as_ref().map(|s| s.volume.clone()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_config_knows_the_api_port_services_may_not_publish() {
        assert_eq!(hoist_config::service_net::API_PORT, hoist_guest::api::PORT);
    }

    use super::*;

    #[test]
    fn config_and_guest_agree_on_the_state_directory() {
        assert_eq!(hoist_config::STATE_SUBDIR, hoist_guest::paths::STATE_SUBDIR);
        assert_eq!(hoist_config::VOLUMES_DIR, hoist_guest::paths::VOLUMES_DIR);
    }
    use std::time::Duration;

    #[test]
    fn the_facts_are_the_configs_and_the_budget_counts_every_timeout() {
        let text = r#"
version = 1
[host]
hostname = "edge-1"
[kernel]
modules = ["wireguard"]
[sysctl]
"net.ipv4.ip_forward" = 1
[network]
address = "192.168.1.10/24"
gateway = "192.168.1.1"
dns = ["9.9.9.9"]
[service.a]
image = "dir:/nonexistent"
stop_timeout = "20s"
[service.b]
image = "dir:/nonexistent"
stop_timeout = "5s"
[[onshutdown]]
name = "flush"
image = "dir:/nonexistent"
timeout = "30s"
"#;
        let config = hoist_config::parse(text, "host.toml").expect("valid");
        let boot = facts(&config);
        assert_eq!(boot.hostname, "edge-1");
        assert_eq!(boot.modules, vec!["wireguard".to_string()]);
        assert_eq!(boot.sysctls, vec![("net.ipv4.ip_forward".to_string(), "1".to_string())]);
        assert_eq!(boot.network.address, Some(([192, 168, 1, 10].into(), 24)));
        assert_eq!(boot.network.gateway, Some([192, 168, 1, 1].into()));
        assert_eq!(boot.network.dns, vec![std::net::Ipv4Addr::new(9, 9, 9, 9)]);
        // 10 s margin + 20 + 5 + 30.
        assert_eq!(boot.stop_budget, Duration::from_secs(65));
        assert_eq!(Boot::parse(&boot.format()), Ok(boot));
    }
}
