//! Receipts at the OCI door and the door watched by the auditor.
//!
//! Manifest answers (GET and HEAD, by tag and by digest, pushed over OCI
//! or derived from a warg release) name the log record that made them
//! visible under the reference (`Cairn-Record`) and link its receipt; the
//! receipt verifies with `cairn audit verify-receipt` and with an
//! independent RFC 6962 check in Python, and the record it proves says
//! what was served. A tag row repointed in the database is reported by
//! `cairn audit follow --oci` (exit 2, with the signed record) and by
//! `cairn fsck`; an honest registry is clean for both. On SQLite and
//! PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_audit::{AuditError, Trust};
use cairn_crypto::Sha256Digest;
use cairn_protocol::{LogId, PackageName};
use cairn_server::config::{AuditCommand, TrustArgs};
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use sqlx::Connection as _;

/// The inclusion check of RFC 6962 / RFC 9162 §2.1.3.2, written without
/// cairn's code: the receipt's entry must name the record, hash to the
/// leaf, and the proof must lead to the checkpoint's root.
const PYTHON_RFC6962: &str = r#"
import base64, hashlib, sys
receipt, log_id, record_id = open(sys.argv[1], "rb").read(), sys.argv[2], sys.argv[3]
head, note = receipt.split(b"\n\n", 1)
lines = head.decode().split("\n")
assert lines[0] == "c2sp.org/tlog-proof@v1", lines[0]
entry = base64.b64decode(lines[1].removeprefix("extra "))
index = int(lines[2].removeprefix("index "))
proof = [base64.b64decode(l) for l in lines[3:]]
origin, size, root = note.decode().split("\n")[:3]
size, root = int(size), base64.b64decode(root)
def prefixed(s):
    return bytes([len(s)]) + s.encode()
assert entry == b"WARG-LOG-LEAF-V0" + prefixed(log_id) + prefixed(record_id), "entry"
H = lambda b: hashlib.sha256(b).digest()
r, fn, sn = H(b"\x00" + entry), index, size - 1
assert index < size
for p in proof:
    assert sn > 0, "proof too long"
    if fn & 1 or fn == sn:
        r = H(b"\x01" + p + r)
        while not fn & 1 and fn != 0:
            fn >>= 1
            sn >>= 1
    else:
        r = H(b"\x01" + r + p)
    fn >>= 1
    sn >>= 1
assert sn == 0 and r == root, "the inclusion proof does not lead to the root"
print(f"{origin} {size} {index}")
"#;

fn log_id(name: &str) -> LogId {
    LogId::package(&PackageName::new(name).unwrap())
}

fn meta_log_id(name: &str) -> LogId {
    LogId::package_meta(&PackageName::new(name).unwrap())
}

fn trust_args(server: &TestServer) -> TrustArgs {
    TrustArgs {
        vkey: server.registry().note_verifier_key().to_string(),
        policy: None,
    }
}

/// A manifest answer's record and receipt link.
struct Named {
    digest: String,
    record: String,
    link: String,
}

async fn ask(method: reqwest::Method, url: &str) -> Named {
    let response = reqwest::Client::new()
        .request(method.clone(), url)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{method} {url}");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("{method} {url}: no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    Named {
        digest: header("docker-content-digest"),
        record: header("cairn-record"),
        link: header("link"),
    }
}

/// The record `record_id` of `log`, as `v1/fetch/logs` serves it: its
/// content bytes.
async fn fetch_record(server: &TestServer, log: LogId, record_id: &str) -> Vec<u8> {
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/fetch/logs", server.url))
        .json(&serde_json::json!({
            "logLength": log_length(server),
            "packages": { log.to_string(): null },
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for record in response["packages"][log.to_string()].as_array().unwrap() {
        let bytes = STANDARD
            .decode(record["contentBytes"].as_str().unwrap())
            .unwrap();
        let id = Sha256Digest::of(&[b"CAIRN-RECORD-V0:".as_slice(), &bytes].concat());
        if id.to_string() == record_id {
            return bytes;
        }
    }
    panic!("record {record_id} is not in log {log}");
}

/// Checks that `reference` of `repository` names `expected` (log/record)
/// on GET and HEAD, and that the receipt verifies (library, CLI, Python).
/// Returns the digest served.
async fn receipt_verifies(
    server: &TestServer,
    repository: &str,
    reference: &str,
    expected: &str,
) -> String {
    let kind = server.kind();
    let url = format!("{}/v2/{repository}/manifests/{reference}", server.url);
    let get = ask(reqwest::Method::GET, &url).await;
    let head = ask(reqwest::Method::HEAD, &url).await;
    assert_eq!(get.record, expected, "{kind}: {repository}:{reference}");
    assert_eq!(
        (
            head.record.as_str(),
            head.link.as_str(),
            head.digest.as_str()
        ),
        (get.record.as_str(), get.link.as_str(), get.digest.as_str()),
        "{kind}: HEAD and GET agree"
    );
    let (log, record) = get.record.split_once('/').unwrap();
    assert_eq!(
        get.link,
        format!("</receipt/{log}/{record}>; rel=\"receipt\"")
    );

    let path = get.link.trim_start_matches('<').split('>').next().unwrap();
    let (status, _, receipt) = get_bytes(&format!("{}{path}", server.url)).await;
    assert_eq!(status, 200, "{kind}: {path}");
    let trust = Trust {
        vkey: server.registry().note_verifier_key(),
        policy: None,
    };
    let facts = cairn_audit::receipt::verify_receipt(&receipt, &trust).unwrap();
    assert_eq!(
        (facts.log_id.to_string(), facts.record_id.to_string()),
        (log.to_owned(), record.to_owned())
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("receipt");
    std::fs::write(&file, &receipt).unwrap();
    let code = cairn_server::commands::audit(AuditCommand::VerifyReceipt {
        file: file.clone(),
        trust: trust_args(server),
    })
    .await
    .unwrap();
    assert_eq!(code, ExitCode::SUCCESS, "{kind}: verify-receipt");

    let python = |record: &str| {
        std::process::Command::new("python3")
            .args(["-c", PYTHON_RFC6962])
            .arg(&file)
            .args([log, record])
            .output()
            .unwrap()
    };
    let output = python(record);
    assert!(
        output.status.success(),
        "{kind}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed.trim(),
        format!("{} {} {}", trust.origin(), facts.size, facts.index)
    );
    // Another record does not verify against the same proof.
    let other = Sha256Digest::of(b"another record").to_string();
    assert!(!python(&other).status.success(), "{kind}");
    get.digest
}

/// `cairn audit follow --oci` against `server`, keeping state in `state`.
async fn follow_oci(server: &TestServer, state: &std::path::Path) -> ExitCode {
    cairn_server::commands::audit(AuditCommand::Follow {
        url: server.url.clone(),
        trust: trust_args(server),
        state: state.to_path_buf(),
        interval: None,
        oci: true,
        token: None,
    })
    .await
    .unwrap()
}

/// `cairn fsck` (without blobs) on the stopped server's database.
async fn fsck(server: &TestServer) -> cairn_service::fsck::FsckReport {
    let store = cairn_store::SqlStore::connect(&server.db.url, 2)
        .await
        .unwrap();
    cairn_service::fsck::fsck(&store, None, |_| {})
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_answers_carry_receipts_and_the_door_is_watched() {
    for db in TestDatabase::all().await {
        let mut server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;

        // Two releases pushed over OCI, `latest` moved by a third push.
        let first = oci_push(&server, &token, "test/app", "1.0.0", &wasm("app 1"))
            .await
            .unwrap();
        let second = oci_push(&server, &token, "test/app", "1.1.0", &wasm("app 2"))
            .await
            .unwrap();
        oci_push(&server, &token, "test/app", "latest", &wasm("app 2"))
            .await
            .unwrap();
        // A release published over warg (its manifest derived on a pull).
        let dir = tempfile::tempdir().unwrap();
        let warg = warg_client(dir.path(), &server.url).await;
        let release = publish_release(&warg, &new_key(), "test:lib", "2.0.0", wasm("lib"))
            .await
            .unwrap();

        // A tag: the metadata record that set it, which says so.
        let meta = meta_log_id("test:app");
        let url = format!("{}/v2/test/app/manifests/1.0.0", server.url);
        let named = ask(reqwest::Method::GET, &url).await;
        let (log, record) = named.record.split_once('/').unwrap();
        assert_eq!(log, meta.to_string(), "{kind}");
        let text = String::from_utf8(fetch_record(&server, meta, record).await).unwrap();
        assert!(
            text.contains(&first) && text.contains("\"1.0.0\""),
            "{kind}: {text}"
        );
        let set_one = named.record.clone();
        assert_eq!(
            receipt_verifies(&server, "test/app", "1.0.0", &set_one).await,
            first
        );
        // By digest: the record that logged the manifest (the same push).
        receipt_verifies(&server, "test/app", &first, &set_one).await;
        // A moved tag: the later record, which names the manifest.
        let named = ask(
            reqwest::Method::GET,
            &format!("{}/v2/test/app/manifests/latest", server.url),
        )
        .await;
        let (_, record) = named.record.split_once('/').unwrap();
        assert_ne!(named.record, set_one);
        let text = String::from_utf8(fetch_record(&server, meta, record).await).unwrap();
        assert!(
            text.contains(&second) && text.contains("\"latest\""),
            "{kind}: {text}"
        );
        assert_eq!(
            receipt_verifies(&server, "test/app", "latest", &named.record).await,
            second
        );
        // Derived from a warg release: the release record of the package log.
        let released = format!("{}/{release}", log_id("test:lib"));
        let derived = receipt_verifies(&server, "test/lib", "2.0.0", &released).await;
        receipt_verifies(&server, "test/lib", &derived, &released).await;

        // The honest registry: the door agrees with the logs.
        let state = tempfile::tempdir().unwrap();
        assert_eq!(follow_oci(&server, state.path()).await, ExitCode::SUCCESS);
        server.stop().await;
        let report = fsck(&server).await;
        assert!(report.is_clean(), "{kind}: {:?}", report.problems);

        // A release tag repointed at another pushed manifest.
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect(&server.db.url).await.unwrap();
        let changed = sqlx::query(
            "UPDATE oci_tags SET digest = $1 WHERE repository = 'test/app' AND tag = '1.0.0'",
        )
        .bind(second.parse::<Sha256Digest>().unwrap().0.to_vec())
        .execute(&mut connection)
        .await
        .unwrap()
        .rows_affected();
        assert_eq!(changed, 1, "{kind}");
        connection.close().await.unwrap();
        let report = fsck(&server).await;
        let expected = format!(
            "tag 1.0.0 of test/app names {second} in the database but the log says {first}"
        );
        assert!(
            report.problems.iter().any(|p| p.contains(&expected)),
            "{kind}: {:?}",
            report.problems
        );
        server.restart().await;
        let before = log_length(&server);

        // The auditor: exit 2, the evidence kept, naming the signed record.
        assert_eq!(follow_oci(&server, state.path()).await, ExitCode::from(2));
        let kept: Vec<_> = std::fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("evidence-"))
            .collect();
        assert_eq!(kept.len(), 1, "{kind}: {kept:?}");
        let evidence = std::fs::read_to_string(&kept[0]).unwrap();
        let (_, record) = set_one.split_once('/').unwrap();
        for needle in [
            "SECURITY ERROR: the OCI door serves what the signed log contradicts".to_owned(),
            format!(
                "GET /v2/test/app/manifests/1.0.0 serves manifest {second}, but the log says {first}"
            ),
            format!("the signed record: {record} of log {meta} (cairn-meta:test:app)"),
            format!("receipt: {}/receipt/{meta}/{record}", server.url),
            "--- signed checkpoint".to_owned(),
        ] {
            assert!(evidence.contains(&needle), "{kind}: {needle}\n{evidence}");
        }
        // Through the library: the same evidence, about that tag only.
        let remote = cairn_audit::remote::Remote::new(&server.url).unwrap();
        let door = cairn_audit::oci::Door::new(&server.url, None).unwrap();
        let trust = Trust {
            vkey: server.registry().note_verifier_key(),
            policy: None,
        };
        match cairn_audit::oci::check(&remote, &door, &trust, |_| {}).await {
            Err(AuditError::Evidence(evidence)) => {
                assert!(evidence.summary.contains("(1 references)"), "{evidence}");
                assert!(
                    evidence.details[0].starts_with("1.0.0 of test/app"),
                    "{evidence}"
                );
            }
            other => panic!("{kind}: {other:?}"),
        }
        assert_eq!(log_length(&server), before, "{kind}: auditing logs nothing");
    }
}
