//! The Sigstore client library of npm (sigstore-js: `@sigstore/sign`)
//! signing against mock Fulcio and Rekor services (`@sigstore/mock`) on
//! loopback: tests/fixtures/sigstore-js/sigstore.js, driven over its
//! stdin and stdout.
//!
//! The fixture's packages are pinned by its package-lock.json and installed
//! by scripts/test.sh (`npm ci`). Without them (or without `node`) the tests
//! using this are skipped with a message, and fail with `CI=true`.
//!
//! Included with `#[path]` by the tests that sign with it.
#![allow(dead_code, reason = "each test uses part of it")]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_server::config::ServeArgs;
use serde_json::{Value, json};

/// How long one answer of the fixture may take (it signs on loopback in
/// well under a second; the first answer also waits for node to start).
const ANSWER_DEADLINE: Duration = Duration::from_secs(60);

/// The fixture's directory.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sigstore-js")
}

/// A running fixture: its mock services, the trusted root it wrote, and
/// the identity its signatures are certified for.
pub struct SigstoreJs {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
    _dir: tempfile::TempDir,
    /// The mock services' base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The trusted root of the mock Fulcio CA and Rekor log.
    pub root_path: PathBuf,
    /// The OIDC issuer the certificates name.
    pub issuer: String,
    /// The SAN (a GitHub workflow URI) the certificates name.
    pub identity: String,
}

impl SigstoreJs {
    /// Starts the fixture; `None` (after saying why) when node or the
    /// fixture's packages are missing, which with `CI=true` is a failure.
    pub fn start() -> Option<Self> {
        let dir = fixture();
        let node = Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        let installed = dir
            .join("node_modules/@sigstore/sign/package.json")
            .is_file();
        if !node || !installed {
            let why = if node {
                "the sigstore-js fixture is not installed (npm ci --prefix tests/fixtures/sigstore-js)"
            } else {
                "node is missing (apt-get install -y nodejs npm)"
            };
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
                "{why}"
            );
            eprintln!("skipped: {why}");
            return None;
        }
        let out = tempfile::tempdir().unwrap();
        let mut child = Command::new("node")
            .arg(dir.join("sigstore.js"))
            .arg(out.path())
            .current_dir(&dir)
            // The client talks to 127.0.0.1 only; no proxy may intercept.
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, answers) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut this = Self {
            child,
            stdin,
            answers,
            _dir: out,
            url: String::new(),
            root_path: PathBuf::new(),
            issuer: String::new(),
            identity: String::new(),
        };
        let hello = this.answer();
        let field = |name: &str| hello[name].as_str().unwrap().to_owned();
        this.url = field("url");
        this.root_path = PathBuf::from(field("trustedRoot"));
        this.issuer = field("issuer");
        this.identity = field("identity");
        Some(this)
    }

    /// Server options trusting the fixture's Sigstore.
    pub fn args(&self) -> ServeArgs {
        ServeArgs {
            trusted_root: Some(self.root_path.clone()),
            ..ServeArgs::default()
        }
    }

    /// The next line the fixture writes, as JSON.
    fn answer(&mut self) -> Value {
        let line = tokio::task::block_in_place(|| self.answers.recv_timeout(ANSWER_DEADLINE));
        let line = match line {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("sigstore-js did not answer in time"),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().unwrap();
                panic!("sigstore-js exited ({status}); its stderr is above")
            }
        };
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("sigstore-js wrote {line:?}: {e}"))
    }

    /// Sends one sign request; answers the Sigstore bundle (JSON bytes).
    fn sign(&mut self, request: &Value) -> Vec<u8> {
        let line = format!("{request}\n");
        tokio::task::block_in_place(|| {
            self.stdin.write_all(line.as_bytes()).unwrap();
            self.stdin.flush().unwrap();
        });
        let answer = self.answer();
        if let Some(error) = answer.get("error") {
            panic!(
                "sigstore-js could not sign: {}",
                error.as_str().unwrap_or_default()
            );
        }
        serde_json::to_vec(&answer["bundle"]).unwrap()
    }

    /// A message signature over `artifact` (its SHA-256 is the message
    /// digest), logged as a `hashedrekord` entry.
    pub fn sign_message(&mut self, artifact: &[u8]) -> Vec<u8> {
        self.sign(&json!({ "kind": "message", "artifact": STANDARD.encode(artifact) }))
    }

    /// A DSSE envelope of the in-toto `statement`, logged as an entry of
    /// `entry_type` (`dsse` or `intoto`).
    pub fn sign_statement(&mut self, statement: &Value, entry_type: &str) -> Vec<u8> {
        self.sign(&json!({ "kind": "dsse", "statement": statement, "entryType": entry_type }))
    }
}

impl Drop for SigstoreJs {
    fn drop(&mut self) {
        // Killing the child ends it even if a request is in flight.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An in-toto statement v1 of `predicate_type` about manifest `image`
/// (`sha256:<hex>`), as cosign 3 writes one.
pub fn statement(image: &str, predicate_type: &str) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": "registry.test/acme/app",
            "digest": { "sha256": image.trim_start_matches("sha256:") },
        }],
        "predicateType": predicate_type,
        "predicate": {},
    })
}
