//! `load` reads the file and resolves relative paths against the file's own directory.

use std::fs;
use std::path::Path;

use hoist_config::{ConfigError, ImageSource, load};

const HOST: &str = r#"version = 1

[kernel]
path = "kernels/vmlinuz"

[service.web]
image = "oci:../images/busybox:latest"

[service.archive]
image = "docker-archive:job.tar:example/job:1.0"

[service.abs]
image = "dir:/srv/rootfs"

[[onboot]]
name = "seed"
image = "oci:tools"

[[onshutdown]]
name = "flush"
image = "dir:../flush"
"#;

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("etc");
    fs::create_dir(&dir).expect("mkdir");
    let file = dir.join("host.toml");
    fs::write(&file, HOST).expect("write config");

    let config = load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.service["web"].image,
        ImageSource::Oci { dir: dir.join("../images/busybox"), tag: Some("latest".into()) }
    );
    assert_eq!(
        config.service["archive"].image,
        ImageSource::DockerArchive { file: dir.join("job.tar"), reference: Some("example/job:1.0".into()) }
    );
    assert_eq!(config.service["abs"].image, ImageSource::Dir { dir: "/srv/rootfs".into() });
    assert_eq!(config.kernel.path.as_deref(), Some(dir.join("kernels/vmlinuz").as_path()));
    assert_eq!(config.onboot[0].image, ImageSource::Oci { dir: dir.join("tools"), tag: None });
    assert_eq!(config.onshutdown[0].image, ImageSource::Dir { dir: dir.join("../flush") });
}

#[test]
fn parse_leaves_paths_as_written() {
    let config = hoist_config::parse(HOST, "host.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.service["web"].image.describe(), "oci:../images/busybox:latest");
    assert_eq!(config.kernel.path.as_deref(), Some(Path::new("kernels/vmlinuz")));
}

#[test]
fn errors_name_the_path_given() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("bad.toml");
    fs::write(&file, "version = 1\n\n[service.web]\nimage = \"dir:/x\"\nstop_timeout = \"5x\"\n").expect("write");
    let err = load(&file).expect_err("bad duration");
    let expected = format!(
        "{}:5:16: service.web.stop_timeout: invalid duration \"5x\": expected a number followed by ms, s, m or h",
        file.display()
    );
    assert_eq!(err.to_string(), expected);
}

#[test]
fn a_missing_file_is_an_io_error() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("absent.toml");
    match load(&file) {
        Err(ConfigError::Io { file: name, cause: source }) => {
            assert_eq!(name, file.display().to_string());
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an Io error, got {other:?}"),
    }
}

#[test]
fn a_file_that_is_not_utf8_points_at_the_first_bad_byte() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("latin1.toml");
    fs::write(&file, b"version = 1\n\n[service.web]\nimage = \"dir:/x\"\nenv = { NAME = \"Jos\xe9\" }\n")
        .expect("write");
    let err = load(&file).expect_err("not UTF-8");
    let expected =
        format!("{}:5:20: service.web.env: invalid UTF-8 (byte 0xE9): the file must be UTF-8", file.display());
    assert_eq!(err.to_string(), expected);
}
