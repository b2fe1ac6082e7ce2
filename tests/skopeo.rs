//! skopeo (containers/image, as Debian packages it) against a real server:
//! OCI image layouts copied in and out, manifests inspected, tags listed
//! and a tag deleted, with a token as the password (`--dest-creds
//! user:TOKEN`) or as a Bearer token (`--dest-registry-token TOKEN`).
//! A semver tag copied in is a warg release, immutable afterwards; what
//! comes back out is byte for byte what went in. Images that are not
//! WebAssembly go only to namespaces whose policy allows other content.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use cairn_protocol::ext::registry::PublishPolicy;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use serde_json::{Value, json};

/// Whether skopeo is installed; with `CI=true` a missing skopeo fails the
/// test instead of skipping it.
fn skopeo_installed() -> bool {
    let found = std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "skopeo is missing (apt-get install -y skopeo)"
        );
        eprintln!("skipped: skopeo is not installed");
    }
    found
}

/// A server with two claimed namespaces owned by `sam`: `acme` with the
/// default policy (WebAssembly only) and `misc`, whose policy allows other
/// content. Returns the server and sam's publish token for both.
async fn server(db: TestDatabase) -> (TestServer, String) {
    let server = TestServer::start(db).await;
    let token = identity_with_token(&server, "sam", &["acme", "misc"], &[Action::Publish]).await;
    claim(&server, "acme", &["sam"], PublishPolicy::default()).await;
    claim(
        &server,
        "misc",
        &["sam"],
        PublishPolicy {
            allow_other: true,
            ..PublishPolicy::default()
        },
    )
    .await;
    (server, token)
}

/// A skopeo run with `args`, its signature policy accepting anything (the
/// registry is what is under test, not the host's policy).
async fn skopeo(policy: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new("skopeo")
        .arg("--policy")
        .arg(policy)
        .args(args)
        .output()
        .await
        .unwrap()
}

/// The stdout of a run that must have succeeded.
fn succeeded(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The stderr of a run that must have failed.
fn failed(what: &str, output: &Output) -> String {
    assert!(
        !output.status.success(),
        "{what} succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A scratch directory with a permissive signature policy for skopeo.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("policy.json"),
            br#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        Self { dir }
    }

    fn policy(&self) -> std::path::PathBuf {
        self.dir.path().join("policy.json")
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

/// Writes an OCI image layout (`oci-layout`, `index.json`,
/// `blobs/sha256/…`) at `dir` holding `manifest`, tagged `tag`, and its
/// `blobs`.
fn write_layout(dir: &str, tag: &str, manifest: &[u8], blobs: &[&[u8]]) {
    let dir = Path::new(dir);
    let store = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&store).unwrap();
    for blob in blobs.iter().copied().chain([manifest]) {
        let digest = digest_of(blob);
        std::fs::write(store.join(digest.trim_start_matches("sha256:")), blob).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST,
            "digest": digest_of(manifest),
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Every blob of the layout at `dir`, by digest (the manifest among them).
fn layout_blobs(dir: &str) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(Path::new(dir).join("blobs").join("sha256"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (
                format!("sha256:{name}"),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

/// The digest `index.json` of the layout at `dir` names for `tag`.
fn layout_manifest(dir: &str, tag: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(Path::new(dir).join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {index}"))["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A small component, told apart by the interface it imports
/// (`example:<name>/api`).
fn component(name: &str) -> Vec<u8> {
    component_importing(&format!("example:{name}/api@1.0.0"))
}

/// A wasm artifact (config, layer, manifest) for `wasm`.
fn wasm_artifact(wasm: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let config = wasm_config(wasm);
    let manifest = wasm_manifest(wasm, &config);
    (config, manifest)
}

/// A plain container image: one gzipped tar layer holding `hello.txt`
/// with `text`, its OCI image config and its manifest.
fn plain_image(text: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let tar = tar_with("hello.txt", text.as_bytes());
    let layer = gzip_stored(&tar);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/bin/cat", "/hello.txt"] },
        "rootfs": { "type": "layers", "diff_ids": [digest_of(&tar)] },
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest_of(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest_of(&layer),
            "size": layer.len(),
        }],
    }))
    .unwrap();
    (layer, config, manifest)
}

/// A ustar archive with one regular file.
fn tar_with(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0_u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[148..156].copy_from_slice(b"        ");
    header[156] = b'0';
    header[257..265].copy_from_slice(b"ustar\x0000");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    tar
}

/// A gzip stream of `data` in stored (uncompressed) deflate blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let chunks: Vec<&[u8]> = data.chunks(0xffff).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = u16::try_from(chunk.len()).unwrap();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out
}

/// CRC-32 (IEEE), as gzip's trailer carries it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0_u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `skopeo copy` of a component's OCI layout to a semver tag publishes a
/// release that the warg client verifies; inspect, list-tags and a copy
/// back out give the same bytes; a second copy of other content to the
/// same version is refused and logs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_a_component_in_and_out() {
    if !skopeo_installed() {
        return;
    }
    for db in TestDatabase::all().await {
        let kind = db.kind;
        let (server, token) = server(db).await;
        let host = server.addr.to_string();
        let scratch = Scratch::new();
        let policy = scratch.policy();
        let creds = format!("sam:{token}");

        let wasm = component("copied");
        let (config, manifest) = wasm_artifact(&wasm);
        let source = scratch.path("source");
        write_layout(&source, "1.0.0", &manifest, &[&wasm, &config]);
        let target = format!("docker://{host}/acme/app:1.0.0");
        let output = skopeo(
            &policy,
            &[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &creds,
                &format!("oci:{source}:1.0.0"),
                &target,
            ],
        )
        .await;
        succeeded(&format!("{kind}: copy in"), &output);

        // The manifest went in unchanged.
        let raw = skopeo(
            &policy,
            &["inspect", "--raw", "--tls-verify=false", &target],
        )
        .await;
        assert_eq!(
            succeeded(&format!("{kind}: inspect --raw"), &raw).as_bytes(),
            manifest,
            "{kind}"
        );
        let raw_config = skopeo(
            &policy,
            &[
                "inspect",
                "--config",
                "--raw",
                "--tls-verify=false",
                &target,
            ],
        )
        .await;
        assert_eq!(
            succeeded(&format!("{kind}: inspect --config --raw"), &raw_config).as_bytes(),
            config,
            "{kind}"
        );
        let tags = skopeo(
            &policy,
            &[
                "list-tags",
                "--tls-verify=false",
                &format!("docker://{host}/acme/app"),
            ],
        )
        .await;
        let tags: Value =
            serde_json::from_str(&succeeded(&format!("{kind}: list-tags"), &tags)).unwrap();
        assert!(
            tags["Tags"]
                .as_array()
                .unwrap()
                .contains(&Value::from("1.0.0")),
            "{kind}: {tags}"
        );

        // Copied back out, every blob is byte for byte what went in.
        let out = scratch.path("out");
        let output = skopeo(
            &policy,
            &[
                "copy",
                "--src-tls-verify=false",
                &target,
                &format!("oci:{out}:1.0.0"),
            ],
        )
        .await;
        succeeded(&format!("{kind}: copy out"), &output);
        assert_eq!(
            layout_manifest(&out, "1.0.0"),
            digest_of(&manifest),
            "{kind}"
        );
        assert_eq!(layout_blobs(&out), layout_blobs(&source), "{kind}");

        // The copy is a release in the package log, verified by the warg
        // client, attributed to sam.
        let package: Value = reqwest::get(format!("{}/api/v1/packages/acme:app", server.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let versions = package["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 1, "{kind}: {package}");
        assert_eq!(versions[0]["version"], "1.0.0", "{kind}: {package}");
        assert_eq!(
            versions[0]["content"],
            digest_of(&wasm),
            "{kind}: {package}"
        );
        assert_eq!(versions[0]["publishedBy"], "sam", "{kind}: {package}");
        let client_dir = tempfile::tempdir().unwrap();
        let warg = warg_client(client_dir.path(), &server.url).await;
        assert_eq!(
            download(&warg, "acme:app", "1.0.0").await.unwrap(),
            wasm,
            "{kind}"
        );

        // Other content to the same version is refused, and nothing is
        // logged. The Bearer form of the token is accepted as well.
        let before = log_length(&server);
        let other = component("copied-again");
        let (other_config, other_manifest) = wasm_artifact(&other);
        let second = scratch.path("second");
        write_layout(&second, "1.0.0", &other_manifest, &[&other, &other_config]);
        let output = skopeo(
            &policy,
            &[
                "copy",
                "--dest-tls-verify=false",
                "--dest-registry-token",
                &token,
                &format!("oci:{second}:1.0.0"),
                &target,
            ],
        )
        .await;
        let stderr = failed(&format!("{kind}: copy over a release"), &output);
        assert!(stderr.contains("denied"), "{kind}: {stderr}");
        assert_eq!(log_length(&server), before, "{kind}");
        let raw = skopeo(
            &policy,
            &["inspect", "--raw", "--tls-verify=false", &target],
        )
        .await;
        assert_eq!(
            succeeded(&format!("{kind}: inspect after refusal"), &raw).as_bytes(),
            manifest,
            "{kind}"
        );
    }
}

/// A plain container image is copied into a namespace whose policy allows
/// other content (and back out unchanged), and refused, with nothing
/// logged, in a namespace that stores WebAssembly only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_other_images_where_the_policy_allows() {
    if !skopeo_installed() {
        return;
    }
    for db in TestDatabase::all().await {
        let kind = db.kind;
        let (server, token) = server(db).await;
        let host = server.addr.to_string();
        let scratch = Scratch::new();
        let policy = scratch.policy();
        let creds = format!("sam:{token}");

        let (layer, config, manifest) = plain_image("hello from a plain image\n");
        let source = scratch.path("source");
        write_layout(&source, "main", &manifest, &[&layer, &config]);
        let copy_to = |repository: &str| {
            [
                "copy".to_owned(),
                "--dest-tls-verify=false".to_owned(),
                "--dest-creds".to_owned(),
                creds.clone(),
                format!("oci:{source}:main"),
                format!("docker://{host}/{repository}:main"),
            ]
        };

        let before = log_length(&server);
        let args = copy_to("acme/base");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = failed(
            &format!("{kind}: copy to a wasm-only namespace"),
            &skopeo(&policy, &args).await,
        );
        assert!(stderr.contains("WebAssembly"), "{kind}: {stderr}");
        assert_eq!(log_length(&server), before, "{kind}");

        let args = copy_to("misc/base");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        succeeded(
            &format!("{kind}: copy to misc"),
            &skopeo(&policy, &args).await,
        );
        assert!(log_length(&server) > before, "{kind}: the push is logged");
        let out = scratch.path("out");
        let output = skopeo(
            &policy,
            &[
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{host}/misc/base:main"),
                &format!("oci:{out}:main"),
            ],
        )
        .await;
        succeeded(&format!("{kind}: copy out"), &output);
        assert_eq!(
            layout_manifest(&out, "main"),
            digest_of(&manifest),
            "{kind}"
        );
        assert_eq!(layout_blobs(&out), layout_blobs(&source), "{kind}");
    }
}

/// `skopeo delete` of a mutable tag removes the tag (a logged change):
/// the server answers 202 and the tag is then unknown. A version tag
/// cannot be deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_deletes_a_mutable_tag() {
    if !skopeo_installed() {
        return;
    }
    for db in TestDatabase::all().await {
        let kind = db.kind;
        let (server, token) = server(db).await;
        let host = server.addr.to_string();
        let scratch = Scratch::new();
        let policy = scratch.policy();
        let creds = format!("sam:{token}");

        for (tag, name) in [("1.0.0", "release"), ("nightly", "nightly")] {
            let wasm = component(name);
            let (config, manifest) = wasm_artifact(&wasm);
            let source = scratch.path(tag);
            write_layout(&source, tag, &manifest, &[&wasm, &config]);
            let output = skopeo(
                &policy,
                &[
                    "copy",
                    "--dest-tls-verify=false",
                    "--dest-creds",
                    &creds,
                    &format!("oci:{source}:{tag}"),
                    &format!("docker://{host}/acme/app:{tag}"),
                ],
            )
            .await;
            succeeded(&format!("{kind}: copy {tag}"), &output);
        }

        let (_, headers, _) =
            get_bytes(&format!("{}/v2/acme/app/manifests/nightly", server.url)).await;
        let nightly_digest = headers["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned();
        let before = log_length(&server);
        let nightly = format!("docker://{host}/acme/app:nightly");
        let output = skopeo(
            &policy,
            &["delete", "--tls-verify=false", "--creds", &creds, &nightly],
        )
        .await;
        succeeded(&format!("{kind}: delete nightly"), &output);
        assert!(log_length(&server) > before, "{kind}: the delete is logged");
        let (status, _, _) =
            get_bytes(&format!("{}/v2/acme/app/manifests/nightly", server.url)).await;
        assert_eq!(status, 404, "{kind}");
        // skopeo deletes by the digest the tag named: the manifest goes too.
        let (status, _, _) = get_bytes(&format!(
            "{}/v2/acme/app/manifests/{nightly_digest}",
            server.url
        ))
        .await;
        assert_eq!(status, 404, "{kind}");
        let stderr = failed(
            &format!("{kind}: inspect a deleted tag"),
            &skopeo(
                &policy,
                &["inspect", "--raw", "--tls-verify=false", &nightly],
            )
            .await,
        );
        assert!(stderr.contains("manifest unknown"), "{kind}: {stderr}");

        // A release stays, and so does a mutable tag naming a release's
        // manifest: skopeo deletes by digest, and releases are never
        // deleted (they are yanked).
        let release_layout = scratch.path("1.0.0");
        let output = skopeo(
            &policy,
            &[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &creds,
                &format!("oci:{release_layout}:1.0.0"),
                &format!("docker://{host}/acme/app:edge"),
            ],
        )
        .await;
        succeeded(&format!("{kind}: copy edge"), &output);
        let before = log_length(&server);
        for tag in ["1.0.0", "edge"] {
            let reference = format!("docker://{host}/acme/app:{tag}");
            let stderr = failed(
                &format!("{kind}: delete {tag}"),
                &skopeo(
                    &policy,
                    &[
                        "delete",
                        "--tls-verify=false",
                        "--creds",
                        &creds,
                        &reference,
                    ],
                )
                .await,
            );
            assert!(stderr.contains("yank"), "{kind}: {stderr}");
            assert_eq!(log_length(&server), before, "{kind}");
            succeeded(
                &format!("{kind}: inspect {tag}"),
                &skopeo(
                    &policy,
                    &["inspect", "--raw", "--tls-verify=false", &reference],
                )
                .await,
            );
        }
    }
}
