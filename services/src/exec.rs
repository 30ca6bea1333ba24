//! Processes exec'd into a running service (readiness commands, `hoist ctl exec`): the OCI
//! `Process` of the service's own spec with other arguments, so they run as confined as
//! the service: the same user, capability sets, no_new_privileges, rlimits, env and cwd.
//! runc gives them the container's seccomp filter, namespaces (cgroup included) and
//! cgroup (so its pids limit), which are not in the process.

/// The service's process JSON with `args` replaced; `terminal` off.
pub fn process_with_args(process_json: &[u8], args: &[String]) -> Result<Vec<u8>, serde_json::Error> {
    let mut process: serde_json::Value = serde_json::from_slice(process_json)?;
    process["args"] = serde_json::json!(args);
    process["terminal"] = serde_json::json!(false);
    serde_json::to_vec(&process)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_keeps_the_services_confinement() {
        let text = "version = 1\n[service.web]\nimage = \"dir:/x\"\ncommand = [\"httpd\"]\nuser = \"1000:1000\"\ncapabilities = { drop = [\"ALL\"], add = [\"CAP_NET_BIND_SERVICE\"] }\n";
        let mut config = hoist_config::parse(text, "t.toml").expect("valid");
        let settings = crate::spec::Settings::from(&config.service.remove("web").expect("web"));
        let image = hoist_config::manifest::ServiceImage::default();
        let spec = crate::spec::build("web", &settings, &image).expect("spec");
        let process = serde_json::to_vec(spec.process().as_ref().expect("process")).expect("json");
        let exec = process_with_args(&process, &["cat".into(), "/proc/self/status".into()]).expect("exec");
        let (mut service, exec): (serde_json::Value, serde_json::Value) =
            (serde_json::from_slice(&process).expect("parse"), serde_json::from_slice(&exec).expect("parse"));
        assert_eq!(exec["args"], serde_json::json!(["cat", "/proc/self/status"]));
        service["args"] = exec["args"].clone();
        assert_eq!(exec, service);
        assert_eq!(exec["user"]["uid"], 1000);
        assert_eq!(exec["noNewPrivileges"], true);
        assert_eq!(exec["capabilities"]["effective"], serde_json::json!(["CAP_NET_BIND_SERVICE"]));
        assert_eq!(exec["capabilities"]["ambient"], serde_json::json!([]));
        assert_eq!(exec["rlimits"][0]["type"], "RLIMIT_NOFILE");
    }

    #[test]
    fn only_the_arguments_change() {
        let base = br#"{"args":["httpd"],"env":["A=1"],"cwd":"/srv","user":{"uid":0,"gid":0}}"#;
        let out = process_with_args(base, &["test".into(), "-f".into(), "/x".into()]).expect("json");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("parse");
        assert_eq!(v["args"], serde_json::json!(["test", "-f", "/x"]));
        assert_eq!(v["env"], serde_json::json!(["A=1"]));
        assert_eq!(v["cwd"], "/srv");
        assert_eq!(v["terminal"], false);
    }
}
