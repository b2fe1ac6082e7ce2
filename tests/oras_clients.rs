//! The `oras` Python library (PyPI `oras` 0.2.43) against a real server,
//! doing what `oras push --artifact-type`, `oras attach`, `oras discover`
//! and `oras pull` do: an artifact with a custom `artifactType`, a
//! referrer attached to it (a manifest with `subject`, pushed by digest),
//! the referrers API listing it, and pulls by digest giving the same bytes.
//! The library has no attach or discover helper, so the script builds
//! those requests with its lower-level calls (`upload_blob`,
//! `do_request`), as the oras CLI sends them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_protocol::ext::registry::PublishPolicy;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use serde_json::{Value, json};

/// Whether the oras library is importable; with `CI=true` a missing
/// library fails the test instead of skipping it.
fn oras_installed() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import oras.provider"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the oras Python package is missing (pip install oras==0.2.43)"
        );
        eprintln!("skipped: the oras Python package is not installed");
    }
    found
}

/// Pushes, attaches, discovers and pulls in `repository` of `host` with
/// `token` (attaching to the existing manifest `argv[5]` instead of
/// pushing one, if given); prints one JSON object with what it saw.
const SCRIPT: &str = r#"
import hashlib, json, os, sys
import oras.oci, oras.provider

host, token, repository, work = sys.argv[1:5]
os.chdir(work)
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
registry = oras.provider.Registry(hostname=host, insecure=True, auth_backend="basic")
registry.auth.set_basic_auth("ci", token)
base = f"{registry.prefix}://{host}/v2/{repository}"
seen = {}

def upload(path, media_type):
    layer = oras.oci.NewLayer(path, media_type=media_type)
    response = registry.upload_blob(path, f"{host}/{repository}", layer)
    assert response.status_code in (200, 201, 202), (path, response.status_code, response.text)
    return layer

def titled(layer, title):
    layer = dict(layer)
    layer["annotations"] = {"org.opencontainers.image.title": title}
    return layer

def put_manifest(reference, manifest):
    body = json.dumps(manifest).encode()
    response = registry.do_request(
        f"{base}/manifests/{reference}", "PUT", headers={"Content-Type": MANIFEST}, data=body
    )
    return body, response

with open("empty.json", "wb") as f:
    f.write(b"{}")
empty = upload("empty.json", EMPTY)

if len(sys.argv) > 5:
    # Attach to what is already there.
    response = registry.do_request(f"{base}/manifests/{sys.argv[5]}", "GET", headers={"Accept": MANIFEST})
    assert response.status_code == 200, (response.status_code, response.text)
    body = response.content
else:
    # oras push --artifact-type application/vnd.example.report.v1 …:main report.json
    report = titled(upload("report.json", "application/vnd.example.report.v1+json"), "report.json")
    body, response = put_manifest("main", {
        "schemaVersion": 2, "mediaType": MANIFEST,
        "artifactType": "application/vnd.example.report.v1",
        "config": empty, "layers": [report],
    })
    seen["push"] = {"status": response.status_code, "body": response.text,
                    "digest": response.headers.get("Docker-Content-Digest")}
    if response.status_code != 201:
        print(json.dumps(seen))
        sys.exit(0)
subject = {"mediaType": MANIFEST, "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
           "size": len(body)}

# oras attach --artifact-type application/vnd.example.signature.v1 …@subject signature.sig
signature = titled(upload("signature.sig", "application/vnd.example.signature.v1"), "signature.sig")
referrer = {
    "schemaVersion": 2, "mediaType": MANIFEST,
    "artifactType": "application/vnd.example.signature.v1",
    "config": empty, "layers": [signature], "subject": subject,
    "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
}
referrer_digest = "sha256:" + hashlib.sha256(json.dumps(referrer).encode()).hexdigest()
body, response = put_manifest(referrer_digest, referrer)
seen["attach"] = {"status": response.status_code, "body": response.text,
                  "digest": response.headers.get("Docker-Content-Digest"),
                  "subject": response.headers.get("OCI-Subject")}

# oras discover …@subject (optionally --artifact-type)
def discover(query):
    response = registry.do_request(
        f"{base}/referrers/{subject['digest']}{query}", "GET", headers={"Accept": INDEX}
    )
    assert response.status_code == 200, (query, response.status_code, response.text)
    return {"index": response.json(), "filters": response.headers.get("OCI-Filters-Applied"),
            "contentType": response.headers.get("Content-Type")}
seen["discover"] = discover("")
seen["discoverSignatures"] = discover("?artifactType=application/vnd.example.signature.v1")
seen["discoverSboms"] = discover("?artifactType=application/vnd.example.sbom.v1")

# oras pull …@digest, for the artifact and its referrer
def pull(digest):
    out = os.path.join(work, "pulled", digest.replace(":", "-"))
    paths = registry.pull(target=f"{host}/{repository}@{digest}", outdir=out)
    return {os.path.basename(p): open(p, "rb").read().hex() for p in paths}
seen["subject"] = subject
seen["pullSubject"] = pull(subject["digest"])
seen["pullReferrer"] = pull(referrer_digest)
print(json.dumps(seen))
"#;

/// Runs [`SCRIPT`] in a directory holding `report.json` and
/// `signature.sig` with these contents, attaching to `subject` if given.
async fn run_script(
    server: &TestServer,
    token: &str,
    (repository, subject): (&str, Option<&str>),
    report: &[u8],
    signature: &[u8],
) -> Value {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("report.json"), report).unwrap();
    std::fs::write(work.path().join("signature.sig"), signature).unwrap();
    let output = tokio::process::Command::new("python3")
        .args(["-c", SCRIPT, &server.addr.to_string(), token, repository])
        .arg(work.path())
        .args(subject)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// An artifact with a custom `artifactType`, a referrer attached to it,
/// discovered through the referrers API (with and without an
/// `artifactType` filter) and both pulled by digest, byte for byte; each
/// push is logged. A namespace that stores WebAssembly only refuses the
/// artifact and logs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oras_pushes_attaches_discovers_and_pulls() {
    if !oras_installed() {
        return;
    }
    for db in TestDatabase::all().await {
        let kind = db.kind;
        let server = TestServer::start(db).await;
        let token =
            identity_with_token(&server, "olive", &["acme", "misc"], &[Action::Publish]).await;
        claim(&server, "acme", &["olive"], PublishPolicy::default()).await;
        claim(
            &server,
            "misc",
            &["olive"],
            PublishPolicy {
                allow_other: true,
                ..PublishPolicy::default()
            },
        )
        .await;
        let report = serde_json::to_vec(&json!({"findings": [], "tool": kind})).unwrap();
        let signature = b"signature bytes made by a signing tool".to_vec();

        // Refused where only WebAssembly is stored, with nothing logged.
        let before = log_length(&server);
        let seen = run_script(&server, &token, ("acme/report", None), &report, &signature).await;
        assert_eq!(seen["push"]["status"], 400, "{kind}: {seen}");
        let body: Value = serde_json::from_str(seen["push"]["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            body["errors"][0]["code"], "MANIFEST_INVALID",
            "{kind}: {body}"
        );
        assert_eq!(log_length(&server), before, "{kind}");

        // Accepted where the policy allows other content.
        let seen = run_script(&server, &token, ("misc/report", None), &report, &signature).await;
        assert_eq!(seen["push"]["status"], 201, "{kind}: {seen}");
        let subject = seen["subject"]["digest"].as_str().unwrap();
        assert_eq!(seen["push"]["digest"], subject, "{kind}");
        assert_eq!(seen["attach"]["status"], 201, "{kind}: {seen}");
        assert_eq!(seen["attach"]["subject"], subject, "{kind}: {seen}");
        let referrer = seen["attach"]["digest"].as_str().unwrap();
        assert!(
            log_length(&server) > before,
            "{kind}: the pushes are logged"
        );

        // Discovered: the referrer, with its artifact type; the filter is
        // applied and says so.
        let listed = seen["discover"]["index"]["manifests"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{kind}: {seen}");
        assert_eq!(listed[0]["digest"], referrer, "{kind}");
        assert_eq!(
            listed[0]["artifactType"], "application/vnd.example.signature.v1",
            "{kind}"
        );
        assert_eq!(
            listed[0]["annotations"]["org.opencontainers.image.created"], "2026-01-01T00:00:00Z",
            "{kind}"
        );
        assert_eq!(
            seen["discover"]["contentType"], "application/vnd.oci.image.index.v1+json",
            "{kind}"
        );
        let signatures = &seen["discoverSignatures"];
        assert_eq!(signatures["filters"], "artifactType", "{kind}: {seen}");
        assert_eq!(signatures["index"]["manifests"], json!(listed), "{kind}");
        let sboms = &seen["discoverSboms"];
        assert_eq!(sboms["filters"], "artifactType", "{kind}: {seen}");
        assert_eq!(sboms["index"]["manifests"], json!([]), "{kind}");

        // Pulled by digest, byte for byte.
        assert_eq!(
            seen["pullSubject"],
            json!({"report.json": hex::encode(&report)}),
            "{kind}"
        );
        assert_eq!(
            seen["pullReferrer"],
            json!({"signature.sig": hex::encode(&signature)}),
            "{kind}"
        );
        let (status, _, manifest) = get_bytes(&format!(
            "{}/v2/misc/report/manifests/{subject}",
            server.url
        ))
        .await;
        assert_eq!(status, 200, "{kind}");
        let manifest: Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(
            manifest["artifactType"], "application/vnd.example.report.v1",
            "{kind}"
        );

        // A referrer is accepted where only WebAssembly is stored: here
        // attached to a release.
        let component = component_importing("example:signed/api@1.0.0");
        let release = oci_push(&server, &token, "acme/app", "1.0.0", &component)
            .await
            .unwrap();
        let before = log_length(&server);
        let seen = run_script(
            &server,
            &token,
            ("acme/app", Some("1.0.0")),
            &report,
            &signature,
        )
        .await;
        assert_eq!(seen["subject"]["digest"], release, "{kind}: {seen}");
        assert_eq!(seen["attach"]["status"], 201, "{kind}: {seen}");
        let listed = seen["discover"]["index"]["manifests"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{kind}: {seen}");
        assert_eq!(listed[0]["digest"], seen["attach"]["digest"], "{kind}");
        assert_eq!(
            seen["pullSubject"],
            json!({ digest_of(&component): hex::encode(&component) }),
            "{kind}"
        );
        assert_eq!(
            seen["pullReferrer"],
            json!({"signature.sig": hex::encode(&signature)}),
            "{kind}"
        );
        assert!(
            log_length(&server) > before,
            "{kind}: the referrer is logged"
        );
    }
}
