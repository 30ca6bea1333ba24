//! A real registry on loopback for the `docker://` tests: Debian's `docker-registry` (the
//! distribution registry) with TLS from a test CA and htpasswd basic auth, images pushed
//! with skopeo, and a home directory for hoist with the credentials and the CA where
//! docker and skopeo users keep them. The registry's access log counts the downloads.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "s3cret-pw";

pub struct Registry {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Registry {
    /// Starts the registry on a free port in a fresh directory under `work`.
    pub fn start(work: &Path) -> Registry {
        let registry = Path::new("/usr/bin/docker-registry");
        let skopeo = Path::new("/usr/bin/skopeo");
        assert!(
            registry.exists() && skopeo.exists(),
            "docker-registry and skopeo are needed (tests/install-deps.sh installs them): registry tests cannot run"
        );
        let dir = work.join("registry");
        std::fs::create_dir_all(dir.join("data")).expect("mkdir");
        let port = hoist_qemu::free_tcp_port().expect("port");
        write_tls(&dir);
        let hash = Command::new("perl")
            .args(["-e", &format!("print crypt('{PASSWORD}', '$2b$05$hoisttestsaltsaltsalt.')")])
            .output()
            .expect("perl (for a bcrypt htpasswd)");
        let hash = String::from_utf8_lossy(&hash.stdout).to_string();
        assert!(hash.starts_with("$2b$"), "perl's crypt() made no bcrypt hash: {hash:?}");
        std::fs::write(dir.join("htpasswd"), format!("{USER}:{hash}\n")).expect("htpasswd");
        let d = dir.display();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: hoist-test\n  tls:\n    certificate: {d}/server.crt\n    key: {d}/server.key\n\
             auth:\n  htpasswd:\n    realm: hoist-test\n    path: {d}/htpasswd\n"
        );
        std::fs::write(dir.join("config.yml"), config).expect("config");
        let mut r = Registry { dir, port, child: None };
        r.up();
        r
    }

    /// (Re)starts the registry process and waits for its port.
    pub fn up(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not listen within 20 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Blob downloads so far, from the access log's request lines.
    pub fn blob_gets(&self) -> usize {
        self.log().lines().filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:")).count()
    }

    /// Pushes the OCI layout `layout:tag` to `repo:tag` here; the digest the tag now names.
    pub fn push(&self, layout: &Path, tag: &str, repo_tag: &str) -> String {
        let dest = format!("docker://{}/{repo_tag}", self.host());
        let out = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--all",
                "--preserve-digests",
                "--dest-creds",
                &format!("{USER}:{PASSWORD}"),
            ])
            .arg("--dest-cert-dir")
            .arg(self.dir.join("ca"))
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(&dest)
            .output()
            .expect("skopeo");
        assert!(out.status.success(), "skopeo copy to {dest}: {}", String::from_utf8_lossy(&out.stderr));
        let inspect = Command::new("skopeo")
            .args(["inspect", "--format", "{{.Digest}}", "--creds", &format!("{USER}:{PASSWORD}")])
            .arg("--cert-dir")
            .arg(self.dir.join("ca"))
            .arg(&dest)
            .output()
            .expect("skopeo inspect");
        assert!(inspect.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&inspect.stderr));
        String::from_utf8_lossy(&inspect.stdout).trim().to_string()
    }

    /// The registry's own stored files for blobs (its filesystem storage), by digest.
    pub fn stored_blobs(&self) -> Vec<(String, PathBuf)> {
        let root = self.dir.join("data/docker/registry/v2/blobs/sha256");
        let mut found = Vec::new();
        for prefix in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            for blob in std::fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
                let name = blob.file_name().to_string_lossy().into_owned();
                found.push((format!("sha256:{name}"), blob.path().join("data")));
            }
        }
        found
    }

    /// A home for hoist: `.docker/config.json` with `password` for the test user, and the
    /// test CA in `.config/containers/certs.d/HOST:PORT/`.
    pub fn home(&self, at: &Path, password: &str) -> PathBuf {
        let certs = at.join(".config/containers/certs.d").join(self.host());
        std::fs::create_dir_all(&certs).expect("mkdir");
        std::fs::copy(self.dir.join("ca/ca.crt"), certs.join("ca.crt")).expect("ca");
        std::fs::create_dir_all(at.join(".docker")).expect("mkdir");
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        let json = format!("{{\"auths\": {{\"{}\": {{\"auth\": \"{auth}\"}}}}}}", self.host());
        std::fs::write(at.join(".docker/config.json"), json).expect("config.json");
        at.to_path_buf()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.down();
    }
}

/// `hoist ARGS` with HOME (credentials, CA) and HOIST_CACHE set.
pub fn hoist(home: &Path, cache: &Path, args: &[&str]) -> Output {
    Command::new(crate::bin_dir().join("hoist"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env("HOIST_CACHE", cache)
        .output()
        .expect("run hoist")
}

/// The test CA (`ca/ca.crt`: `ca/` is skopeo's cert dir) and the server's pair for 127.0.0.1.
fn write_tls(dir: &Path) {
    std::fs::create_dir_all(dir.join("ca")).expect("mkdir");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "hoist test registry CA");
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    std::fs::write(dir.join("ca/ca.crt"), ca_cert.pem()).expect("ca.crt");
    let issuer = Issuer::new(ca, ca_key);
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    server.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    server.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().expect("server key");
    let cert = server.signed_by(&key, &issuer).expect("server cert");
    std::fs::write(dir.join("server.crt"), cert.pem()).expect("server.crt");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("server.key");
}
