//! `wasm-pkg-client` 0.16 (what `wkg` 0.16 runs: publishes are OCI pushes)
//! through a cluster's [`Balancer`]: publishes that a node answered 503 or
//! could not take are retried at the next node, and reads of a release
//! from one node.

use cairn_tests::cluster::{Balancer, WriteFailure};
use wasm_pkg_client_016 as wkg;

/// A `wasm-pkg-client` publish a node acknowledged.
#[derive(Clone, Debug)]
pub struct WkgPublished {
    /// `namespace:name`.
    pub package: String,
    pub version: String,
    /// The component published (its bytes are the release's content).
    pub bytes: Vec<u8>,
    /// The node (index) that accepted it.
    pub node: usize,
}

/// A client for the node at `url` (`http://HOST:PORT`), logged in with
/// `token` if given: the `wkg` 0.16 configuration.
fn client(url: &str, token: Option<&str>) -> wkg::Client {
    let host = url.trim_start_matches("http://");
    let auth = token
        .map(|t| format!("auth = {{ username = \"ci\", password = \"{t}\" }}\n"))
        .unwrap_or_default();
    let toml = format!(
        "default_registry = \"{host}\"\n[registry.\"{host}\".oci]\nprotocol = \"http\"\n{auth}"
    );
    wkg::Client::new(wkg::Config::from_toml(&toml).unwrap())
}

/// Publishes the component `bytes` (whose WIT package is
/// `package@version`) through `balancer`, preferring node `preferred`,
/// logged in with `token`. `Ok` once a node acknowledged it: the client's
/// manifest push was answered 201, so the release is published there.
pub async fn publish(
    balancer: &Balancer,
    preferred: usize,
    token: &str,
    package: &str,
    version: &str,
    bytes: Vec<u8>,
) -> Result<WkgPublished, WriteFailure> {
    let (node, ()) = balancer
        .route(preferred, |node| {
            let client = client(&balancer.urls[node], Some(token));
            let bytes = bytes.clone();
            async move {
                client
                    .publish_release_data(
                        Box::pin(std::io::Cursor::new(bytes)),
                        wkg::PublishOpts::default(),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| failure(&e))
            }
        })
        .await?;
    Ok(WkgPublished {
        package: package.to_owned(),
        version: version.to_owned(),
        bytes,
        node,
    })
}

/// The content of release `package@version` as `wasm-pkg-client` reads it
/// from the node at `url`, or why it cannot.
pub async fn read(url: &str, package: &str, version: &str) -> Result<Vec<u8>, String> {
    use futures_util::TryStreamExt as _;
    let client = client(url, None);
    let package: wkg::PackageRef = package.parse().map_err(|e| format!("{e}"))?;
    let version = version.parse().map_err(|e| format!("{e}"))?;
    let release = client
        .get_release(&package, &version)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let chunks: Vec<bytes::Bytes> = client
        .stream_content(&package, &release)
        .await
        .map_err(|e| format!("{e:#}"))?
        .try_collect()
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(chunks.concat())
}

/// The HTTP status a `wasm-pkg-client` error carries, from its chain
/// (`None`: no answer — a node that is gone, a connection cut off).
fn failure(error: &wkg::Error) -> WriteFailure {
    use oci_client::errors::OciDistributionError as Oci;
    let mut status = Some(0);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(oci) = e.downcast_ref::<Oci>() {
            status = match oci {
                Oci::ServerError { code, .. } => Some(*code),
                Oci::RegistryError { .. } => Some(400),
                Oci::UnauthorizedError { .. } => Some(401),
                Oci::RequestError(_) => None,
                _ => Some(0),
            };
            break;
        }
        if e.downcast_ref::<reqwest::Error>().is_some() {
            status = None;
            break;
        }
        source = e.source();
    }
    WriteFailure {
        status,
        message: format!("{error:#}"),
    }
}
