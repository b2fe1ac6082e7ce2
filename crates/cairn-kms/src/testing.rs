//! A real AWS-API-speaking KMS for tests: `moto_server` (PyPI `moto[server]`)
//! started on a free loopback port, and a TCP proxy in front of it that
//! tests can cut to simulate a KMS outage.
//!
//! When `moto_server` is not installed the tests that need it are skipped
//! with a message — unless `CI=true`, where that is a failure.
#![allow(clippy::expect_used, clippy::panic, reason = "test support")]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

/// The region keys are created in.
pub const REGION: &str = "us-east-1";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `moto_server`, stopped on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
}

impl Moto {
    /// Starts `moto_server` on a free port and waits (with a deadline) until
    /// it accepts connections. `None` (with a message) if it is not
    /// installed and this is not CI.
    pub async fn start() -> Option<Self> {
        let port = free_port();
        let spawned = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                if ci() {
                    panic!("CI=true but moto_server cannot be started: {e}");
                }
                eprintln!(
                    "skipping KMS tests: moto_server cannot be started ({e}); pip install 'moto[server]'"
                );
                return None;
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let moto = Self { child, addr };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(addr).await.is_ok() {
                return Some(moto);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto_server did not listen on {addr} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A KMS client of the emulator at `endpoint` (dummy credentials).
    pub fn client_for(endpoint: &str) -> Client {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .endpoint_url(endpoint)
            .http_client(crate::http_client())
            .timeout_config(
                aws_sdk_kms::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(2))
                    .build(),
            )
            .build();
        Client::from_conf(config)
    }

    /// A KMS client of this emulator.
    pub fn client(&self) -> Client {
        Self::client_for(&self.url())
    }

    /// Creates a signing key of `spec` with the alias `alias/<alias>`;
    /// returns its key id.
    pub async fn create_key(&self, spec: KeySpec, alias: &str) -> Result<String, String> {
        let client = self.client();
        let key = client
            .create_key()
            .key_usage(KeyUsageType::SignVerify)
            .key_spec(spec)
            .send()
            .await
            .map_err(|e| format!("{:?}", aws_sdk_kms::error::DisplayErrorContext(e)))?;
        let key_id = key
            .key_metadata()
            .map(|m| m.key_id().to_owned())
            .ok_or("no key metadata")?;
        client
            .create_alias()
            .alias_name(format!("alias/{alias}"))
            .target_key_id(&key_id)
            .send()
            .await
            .map_err(|e| format!("{:?}", aws_sdk_kms::error::DisplayErrorContext(e)))?;
        Ok(key_id)
    }

    /// The environment a subprocess needs to reach this emulator through
    /// the standard AWS configuration chain.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", self.url()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy to a target; while it is down it closes every connection
/// (new and open ones), like a network outage.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    /// Starts a proxy to `target` on a free loopback port.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let down = Arc::new(AtomicBool::new(false));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let proxy = Self {
            addr,
            down: down.clone(),
            generation: generation.clone(),
        };
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if down.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        proxy
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts (or restores) the connection.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}
