//! The TOML shape of host.toml, as serde sees it. Single values are checked while they are
//! deserialized (`Parsed<T>` and `StrOrInt<T>` run `T::from_str`), so toml attaches the
//! value's span and serde_path_to_error its key. List elements, numeric ranges and rules
//! that span several keys are checked afterwards in `validate` and the modules it calls,
//! which is why those fields keep their `Spanned` positions.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

use crate::backoff::BACKOFF_FLOOR_MS;
use crate::duration::{AtLeast, HumanDuration};
use crate::names::{
    EnvKey, Hostname, Interface, NoNul, NonEmptyPath, ServiceKey, ServiceName, SysctlKey, VolumeName, WorkingDir,
};
use crate::net::{Ipv4, Ipv4Cidr};
use crate::resources::{Size, User};
use crate::scalar::{Integer, Number, StrOrInt};
use crate::service_net::{Publish, ServiceNetwork};
use crate::{ImageSource, RestartPolicy, Signal};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the host.toml top-level table")]
pub(crate) struct RawConfig {
    pub version: Option<Spanned<Version>>,
    #[serde(default)]
    pub host: Table<RawHost>,
    #[serde(default)]
    pub kernel: Table<RawKernel>,
    #[serde(default)]
    pub sysctl: BTreeMap<Parsed<SysctlKey>, SysctlValue>,
    #[serde(default)]
    pub network: Table<RawNetwork>,
    #[serde(default)]
    pub service: BTreeMap<Parsed<ServiceKey>, Table<RawService>>,
    #[serde(default)]
    pub onboot: Vec<Table<RawOneShot>>,
    #[serde(default)]
    pub onshutdown: Vec<Table<RawOneShot>>,
    #[serde(default)]
    pub logs: Table<RawLogs>,
    #[serde(default)]
    pub volume: BTreeMap<Parsed<VolumeName>, Table<RawVolume>>,
    pub state: Option<Table<RawState>>,
}

/// `[volume.NAME]`. `device` is the one key every volume has, so a default that breaks a
/// rule (a name too long to be the label) is reported there.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVolume {
    pub device: Spanned<Parsed<crate::volume::Device>>,
    pub filesystem: Option<Parsed<crate::volume::Filesystem>>,
    pub label: Option<Spanned<Parsed<crate::volume::Label>>>,
    pub required: Option<bool>,
    pub wait: Option<Spanned<Parsed<HumanDuration>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub volume: Spanned<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogs {
    pub max_size: Option<Spanned<StrOrInt<Size>>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHost {
    pub hostname: Option<Parsed<Hostname>>,
    pub runtime: Option<Parsed<crate::OciRuntime>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKernel {
    pub path: Option<Parsed<NonEmptyPath>>,
    pub cmdline: Option<Parsed<NoNul>>,
    #[serde(default)]
    pub modules: Vec<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    pub interface: Option<Parsed<Interface>>,
    pub mode: Option<Spanned<String>>,
    pub bridge_subnet: Option<Spanned<Parsed<Ipv4Cidr>>>,
    pub address: Option<Spanned<Parsed<Ipv4Cidr>>>,
    pub gateway: Option<Spanned<Parsed<Ipv4>>>,
    pub dns: Option<Vec<Spanned<String>>>,
    pub enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    /// Spanned as the one key every service has: a default that breaks a rule is reported
    /// there. (Neither a spanned table nor a spanned name works: toml refuses the first for
    /// dotted keys, and serde_path_to_error loses the second from error paths.)
    pub image: Spanned<Parsed<ImageSource>>,
    #[serde(default)]
    pub command: Vec<Parsed<NoNul>>,
    #[serde(default)]
    pub env: BTreeMap<Parsed<EnvKey>, Parsed<NoNul>>,
    pub working_dir: Option<Parsed<WorkingDir>>,
    pub restart: Option<Parsed<RestartPolicy>>,
    pub stop_signal: Option<Parsed<Signal>>,
    pub stop_timeout: Option<Spanned<Parsed<HumanDuration>>>,
    pub readonly_rootfs: Option<bool>,
    pub host_pid: Option<bool>,
    pub network: Option<Spanned<Parsed<ServiceNetwork>>>,
    #[serde(default)]
    pub publish: Vec<Spanned<Parsed<Publish>>>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    pub ready: Option<Spanned<Table<RawReady>>>,
    pub start_timeout: Option<Parsed<AtLeast<1>>>,
    pub backoff: Option<Table<RawBackoff>>,
    pub start_limit: Option<Table<RawStartLimit>>,
    pub memory: Option<Spanned<StrOrInt<Size>>>,
    pub pids: Option<Spanned<Integer>>,
    pub cpu: Option<Spanned<Number>>,
    pub disk: Option<Spanned<StrOrInt<Size>>>,
    pub user: Option<StrOrInt<User>>,
    pub capabilities: Option<Table<RawCapabilities>>,
    pub seccomp: Option<Parsed<crate::Seccomp>>,
    #[serde(default)]
    pub binds: Vec<Spanned<String>>,
}

/// One `[[onboot]]` or `[[onshutdown]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOneShot {
    pub name: Spanned<Parsed<ServiceName>>,
    pub image: Parsed<ImageSource>,
    #[serde(default)]
    pub command: Vec<Parsed<NoNul>>,
    #[serde(default)]
    pub env: BTreeMap<Parsed<EnvKey>, Parsed<NoNul>>,
    pub working_dir: Option<Parsed<WorkingDir>>,
    pub user: Option<StrOrInt<User>>,
    #[serde(default)]
    pub binds: Vec<Spanned<String>>,
    pub capabilities: Option<Table<RawCapabilities>>,
    pub timeout: Option<Spanned<Parsed<AtLeast<1>>>>,
    pub required: Option<Spanned<bool>>,
}

/// `ready = { tcp = 8080 }`: the kinds are all optional here so that "none" and "two" can
/// be reported with positions instead of serde's untagged-enum message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReady {
    pub tcp: Option<Spanned<Integer>>,
    pub exec: Option<Spanned<Vec<Parsed<NoNul>>>>,
    pub file: Option<Spanned<String>>,
    pub notify: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackoff {
    pub initial: Option<Spanned<Parsed<AtLeast<{ BACKOFF_FLOOR_MS }>>>>,
    pub factor: Option<Spanned<Number>>,
    pub max: Option<Spanned<Parsed<HumanDuration>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStartLimit {
    pub burst: Option<Spanned<Integer>>,
    pub interval: Option<Parsed<AtLeast<1>>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCapabilities {
    #[serde(default)]
    pub add: Vec<Spanned<String>>,
    #[serde(default)]
    pub drop: Vec<Spanned<String>>,
}

/// A struct that must be written as a table. Derived struct impls also accept an array
/// (fields by position), which would let `[[service.web]]` or `host = ["x"]` through.
#[derive(Default)]
pub(crate) struct Table<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TableVisitor(PhantomData))
    }
}

struct TableVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for TableVisitor<T> {
    type Value = Table<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Table)
    }
}

/// A value written as a TOML string and parsed with `T::from_str`; the parse error's
/// Display becomes the message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Parsed<T>(pub T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParsedVisitor(PhantomData))
    }
}

struct ParsedVisitor<T>(PhantomData<T>);

impl<T> Visitor<'_> for ParsedVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = Parsed<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        v.parse().map(Parsed).map_err(E::custom)
    }
}

/// The `version` key: any integer here, so that "unsupported version 2" can say so.
pub(crate) struct Version(pub i64);

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Version;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Version, E> {
                Ok(Version(v))
            }
        }
        deserializer.deserialize_i64(V)
    }
}

/// A sysctl value in the text form /proc/sys takes: strings as written, integers in
/// decimal, booleans as "1" / "0".
pub(crate) struct SysctlValue(pub String);

impl<'de> Deserialize<'de> for SysctlValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SysctlValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, integer or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SysctlValue, E> {
                v.parse::<NoNul>().map(|v| SysctlValue(v.0)).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SysctlValue, E> {
                Ok(SysctlValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SysctlValue, E> {
                Ok(SysctlValue(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<SysctlValue, E> {
                Ok(SysctlValue(if v { "1" } else { "0" }.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}
