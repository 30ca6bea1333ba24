//! Processes exec'd into a running service (readiness commands): the OCI `Process` of the
//! service's own spec (user, env, cwd, capabilities) with other arguments.

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
