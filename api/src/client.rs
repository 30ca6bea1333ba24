//! Connecting to a host's control API: over the Unix socket (inside the guest) or over
//! TCP with the operator's client certificate (from the build's `pki/` directory).

use std::path::Path;
use std::time::Duration;

use hoist_guest::pki::{CA_CERT, CLIENT_CERT, CLIENT_KEY};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::pb::control_client::ControlClient;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("connecting to {target}: {cause}")]
    Transport { target: String, cause: tonic::transport::Error },
}

fn read(path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|cause| ConnectError::Read { path: path.display().to_string(), cause })
}

/// mTLS over TCP to `addr` ("127.0.0.1:PORT") with `pki/ca.pem`, `pki/client.pem`, `pki/client.key`.
pub async fn tcp(addr: &str, pki: &Path) -> Result<ControlClient<Channel>, ConnectError> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&pki.join(CA_CERT))?))
        .identity(Identity::from_pem(read(&pki.join(CLIENT_CERT))?, read(&pki.join(CLIENT_KEY))?))
        .domain_name(crate::SERVER_NAME);
    let err = |cause| ConnectError::Transport { target: addr.to_string(), cause };
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(err)?
        .tls_config(tls)
        .map_err(err)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(err)?;
    Ok(ControlClient::new(channel).max_decoding_message_size(crate::MAX_MESSAGE))
}

/// The Unix socket inside the guest.
pub async fn unix(path: &Path) -> Result<ControlClient<Channel>, ConnectError> {
    let path = path.to_path_buf();
    let target = path.display().to_string();
    let channel = Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .map_err(|cause| ConnectError::Transport { target, cause })?;
    Ok(ControlClient::new(channel).max_decoding_message_size(crate::MAX_MESSAGE))
}
