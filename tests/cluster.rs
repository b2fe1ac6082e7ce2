//! cairn as a cluster: three `cairn serve` processes (the real binary) on
//! one PostgreSQL database and one S3 bucket (`moto_server` on loopback),
//! each with its own data directory holding only copies of the registry's
//! keys, driven by real clients (`warg-client`, OCI pushes,
//! `wasm-pkg-client` 0.16 publishes) through a client-side load balancer
//! that sends each write to a chosen node and retries at another only on
//! 503 or an unreachable node.
//!
//! * A storm of publishes and pushes through every node survives the
//!   sequencer node's SIGKILL: another node signs a new checkpoint within
//!   10 s of the kill, every acknowledged write (of each client) is served
//!   by every surviving node, a client that followed the log before the
//!   failover verifies consistency after it, and `cairn fsck` is clean.
//! * A leader paused past its lease (SIGSTOP, then SIGCONT) commits and
//!   signs nothing: the manifest push it held is refused at once (503) and
//!   never served, and the log has no fork.
//! * A restart of PostgreSQL (a private server, `pg_ctl restart -m fast`)
//!   under the running cluster and its writers loses no acknowledged write
//!   and forks nothing; the log keeps growing.
//!
//! The tests run one at a time (each starts three nodes and an emulator).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cairn_blob::testing::S3Emulator;
use cairn_store::{LeaseStore as _, SqlStore};
use cairn_tests::cluster::*;
use cairn_tests::private_pg::PrivatePostgres;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use warg_protocol::registry::PackageName;

mod cluster_wkg;
use cluster_wkg::WkgPublished;

/// One test at a time: three nodes each are enough for two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Lease settings of the test clusters: a dead leader is replaced within
/// 6 s of its last renewal (the default is 8 s), which leaves room for a
/// busy machine inside the 10 s the tests allow.
const LEASE: [&str; 4] = ["--lease-duration", "5", "--lease-renew-interval", "1"];

/// Three nodes, `a` (the leader, which initialised the registry), `b` and
/// `c`, each with its own data directory.
struct Cluster {
    settings: NodeSettings,
    nodes: Vec<Node>,
    data: Vec<tempfile::TempDir>,
    balancer: Arc<Balancer>,
}

impl Cluster {
    async fn start(settings: NodeSettings) -> Self {
        let data: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let a = Node::start("a", &settings, data[0].path());
        a.wait_role(true, 120).await;
        let mut nodes = vec![a];
        for (i, id) in [(1, "b"), (2, "c")] {
            copy_keys(data[0].path(), data[i].path());
            nodes.push(Node::start(id, &settings, data[i].path()));
        }
        for node in &nodes[1..] {
            node.wait_role(false, 120).await;
        }
        let balancer = Arc::new(Balancer::new(nodes.iter().map(|n| n.url.clone()).collect()));
        Self {
            settings,
            nodes,
            data,
            balancer,
        }
    }

    /// The index of the node that leads now (by `/readyz`), if one does.
    async fn leader(&self, among: &[usize]) -> Option<usize> {
        for &i in among {
            if self.nodes[i].ready().await == Some(true) {
                return Some(i);
            }
        }
        None
    }

    /// A token that pushes in namespace `test`.
    fn token(&self) -> String {
        self.settings
            .publish_token(self.data[0].path(), "pusher", "test")
    }

    fn fsck(&self) {
        self.settings.fsck(self.data[1].path());
    }
}

/// What the storm's writers got acknowledged, and the writes each node
/// had accepted before the storm.
#[derive(Default)]
struct Acked {
    publishes: Vec<Acknowledged>,
    pushes: Vec<Pushed>,
    wkg: Vec<WkgPublished>,
    failures: Vec<WriteFailure>,
    before: (Vec<usize>, Vec<usize>),
}

/// Writers through the balancer: per node, one `warg-client` publisher,
/// one OCI pusher and one `wasm-pkg-client` publisher preferring it, each
/// writing until stopped (at most 400 writes each).
struct Storm {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Acked>>,
    before: (Vec<usize>, Vec<usize>),
    /// `wasm-pkg-client` publishes acknowledged so far.
    wkg: Arc<AtomicUsize>,
}

impl Storm {
    fn start(cluster: &Cluster, token: &str, tag: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let before = (
            cluster.balancer.publishes_accepted(),
            cluster.balancer.pushes_accepted(),
        );
        let key = Arc::new(new_key());
        let wkg = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for node in 0..cluster.nodes.len() {
            let wkg_token = token.to_owned();
            let (balancer, stopped, key) = (cluster.balancer.clone(), stop.clone(), key.clone());
            let prefix = format!("test:{tag}-w{node}");
            tasks.push(tokio::spawn(async move {
                let mut acked = Acked::default();
                for i in 0..400 {
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("{prefix}-n{i}");
                    match balancer
                        .publish(node, &key, &name, "1.0.0", wasm(&name))
                        .await
                    {
                        Ok(publish) => acked.publishes.push(publish),
                        Err(failure) => acked.failures.push(failure),
                    }
                }
                acked
            }));
            let (balancer, stopped, token) =
                (cluster.balancer.clone(), stop.clone(), token.to_owned());
            let repo = format!("test/{tag}-o{node}");
            tasks.push(tokio::spawn(async move {
                let mut acked = Acked::default();
                for i in 0..400 {
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let version = format!("1.0.{i}");
                    let layer = wasm(&format!("{repo}:{version}"));
                    match balancer.push(node, &token, &repo, &version, layer).await {
                        Ok(push) => acked.pushes.push(push),
                        Err(failure) => acked.failures.push(failure),
                    }
                }
                acked
            }));
            let (balancer, stopped, token, count) = (
                cluster.balancer.clone(),
                stop.clone(),
                wkg_token,
                wkg.clone(),
            );
            let prefix = format!("test:{tag}-k{node}");
            tasks.push(tokio::spawn(async move {
                let mut acked = Acked::default();
                for i in 0..400 {
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let (package, version) = (format!("{prefix}-n{i}"), "1.0.0");
                    let component =
                        wit_package(&package, version, "interface api { run: func(); }");
                    // A client gives up on a node that does not answer.
                    let published = tokio::time::timeout(
                        Duration::from_secs(30),
                        cluster_wkg::publish(&balancer, node, &token, &package, version, component),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(WriteFailure {
                            status: None,
                            message: "no answer within 30 s".into(),
                        })
                    });
                    match published {
                        Ok(published) => {
                            count.fetch_add(1, Ordering::SeqCst);
                            acked.wkg.push(published);
                        }
                        Err(failure) => acked.failures.push(failure),
                    }
                }
                acked
            }));
        }
        Self {
            stop,
            tasks,
            before,
            wkg,
        }
    }

    /// Waits until `more` further `wasm-pkg-client` publishes than now were
    /// acknowledged.
    async fn more_wkg(&self, more: usize, seconds: u64) {
        let now = self.wkg.load(Ordering::SeqCst);
        eventually(seconds, "more wasm-pkg-client publishes", || async {
            (self.wkg.load(Ordering::SeqCst) >= now + more).then_some(())
        })
        .await;
    }

    async fn stop(self) -> Acked {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Acked {
            before: self.before,
            ..Acked::default()
        };
        for task in self.tasks {
            let acked = task.await.unwrap();
            all.publishes.extend(acked.publishes);
            all.pushes.extend(acked.pushes);
            all.wkg.extend(acked.wkg);
            all.failures.extend(acked.failures);
        }
        all
    }
}

/// Waits until the balancer has `publishes` more warg publishes and
/// `pushes` more OCI pushes acknowledged than now.
async fn more_writes(balancer: &Balancer, publishes: usize, pushes: usize, seconds: u64) {
    let sum = |v: Vec<usize>| v.into_iter().sum::<usize>();
    let (p0, o0) = (
        sum(balancer.publishes_accepted()),
        sum(balancer.pushes_accepted()),
    );
    eventually(seconds, "more acknowledged writes", || async {
        (sum(balancer.publishes_accepted()) >= p0 + publishes
            && sum(balancer.pushes_accepted()) >= o0 + pushes)
            .then_some(())
    })
    .await;
}

/// Every acknowledged publish and push is served, byte for byte, by each
/// node of `urls` (with full verification, for warg; through
/// `wasm-pkg-client`, for its publishes).
async fn all_served(acked: &Acked, urls: &[&str]) {
    let http = reqwest::Client::new();
    for url in urls {
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client_fixed(dir.path(), url);
        for publish in &acked.publishes {
            assert_eq!(
                download(&client, &publish.name, &publish.version)
                    .await
                    .unwrap_or_else(|e| panic!("{url}: {}: {e:?}", publish.name)),
                publish.bytes,
                "{url}: {}",
                publish.name
            );
        }
        for push in &acked.pushes {
            let response = http
                .get(format!("{url}/v2/{}/manifests/{}", push.repo, push.tag))
                .header("accept", MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{url}: {}:{}", push.repo, push.tag);
            assert_eq!(
                response.headers()["docker-content-digest"]
                    .to_str()
                    .unwrap(),
                push.digest
            );
            let (status, _, bytes) = get_bytes(&format!(
                "{url}/v2/{}/blobs/{}",
                push.repo,
                digest_of(&push.layer)
            ))
            .await;
            assert_eq!(
                (status, bytes),
                (200, push.layer.clone()),
                "{url}: {}",
                push.repo
            );
        }
        for published in &acked.wkg {
            let read = cluster_wkg::read(url, &published.package, &published.version).await;
            assert_eq!(
                read.as_deref(),
                Ok(published.bytes.as_slice()),
                "{url}: {}@{}",
                published.package,
                published.version
            );
        }
    }
}

/// Reports what the storm did and where, checking that every write
/// acknowledged was counted at the node that accepted it.
fn report(what: &str, cluster: &Cluster, acked: &Acked) {
    let since = |now: Vec<usize>, before: &[usize]| -> Vec<usize> {
        now.iter().zip(before).map(|(n, b)| n - b).collect()
    };
    let publishes = since(cluster.balancer.publishes_accepted(), &acked.before.0);
    let pushes = since(cluster.balancer.pushes_accepted(), &acked.before.1);
    let mut wkg = vec![0; publishes.len()];
    for published in &acked.wkg {
        wkg[published.node] += 1;
    }
    eprintln!(
        "{what}: {} publishes (per node {publishes:?}), {} pushes (per node {pushes:?}), \
         {} wasm-pkg-client publishes (per node {wkg:?}), {} retried elsewhere, \
         {} not acknowledged: {:?}",
        acked.publishes.len(),
        acked.pushes.len(),
        acked.wkg.len(),
        cluster.balancer.refusals(),
        acked.failures.len(),
        acked.failures.iter().take(3).collect::<Vec<_>>(),
    );
    let mut counted = vec![0; publishes.len()];
    for publish in &acked.publishes {
        counted[publish.node] += 1;
    }
    assert_eq!(counted, publishes);
    let mut counted = vec![0; pushes.len()];
    for push in &acked.pushes {
        counted[push.node] += 1;
    }
    assert_eq!(counted, pushes);
}

/// A warg client's storage that follows the log: `update` from `url`,
/// returning the checkpoint length it verified.
async fn follow(dir: &Path, url: &str, package: &str) -> usize {
    let client = warg_client_fixed(dir, url);
    client
        .fetch_package(&PackageName::new(package).unwrap())
        .await
        .unwrap();
    client.update().await.unwrap();
    stored_checkpoint_length(&client).await
}

async fn s3_settings(moto: &S3Emulator, database_url: &str, bucket: &str) -> NodeSettings {
    let s3 = moto.bucket(bucket, "registry").await;
    let mut settings = NodeSettings::new(database_url).with_s3(&s3);
    settings.serve_args = LEASE.iter().map(|s| (*s).to_owned()).collect();
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_through_every_node_survives_the_sequencer_being_killed() {
    let _serial = SERIAL.lock().await;
    let Some(moto) = S3Emulator::start().await else {
        return;
    };
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let mut cluster = Cluster::start(s3_settings(&moto, &db.url, "cluster-kill").await).await;
    let token = cluster.token();
    let store = SqlStore::connect(&db.url, 2).await.unwrap();

    // A client follows the log through the leader before the failover.
    let key = new_key();
    cluster
        .balancer
        .publish(1, &key, "test:followed", "1.0.0", wasm("followed"))
        .await
        .unwrap();
    let follower = tempfile::tempdir().unwrap();
    let seen = follow(follower.path(), &cluster.nodes[0].url, "test:followed").await;

    // The storm, through every node; the leader is killed in the middle.
    let storm = Storm::start(&cluster, &token, "kill");
    more_writes(&cluster.balancer, 6, 3, 120).await;
    storm.more_wkg(3, 120).await;
    let killed = Instant::now();
    cluster.nodes[0].kill();
    cluster.balancer.down(0);
    let before = stored_length(&store).await;
    let took_over = eventually(10, "a new checkpoint from another node", || async {
        let lease = store.lease().await.ok()?;
        (lease.holder != "a" && stored_length(&store).await > before).then_some(lease)
    })
    .await;
    let failover = killed.elapsed();
    assert!(failover < Duration::from_secs(10), "{failover:?}");
    assert_eq!(took_over.epoch, 2);
    eprintln!(
        "failover: {failover:?} from SIGKILL to the first checkpoint of {}",
        took_over.holder
    );
    more_writes(&cluster.balancer, 6, 3, 60).await;
    storm.more_wkg(3, 60).await;
    let acked = storm.stop().await;
    report("storm with a SIGKILL", &cluster, &acked);

    // Served by both survivors; the follower verifies the new leader's log
    // as consistent with what it saw before.
    let new_leader = cluster.leader(&[1, 2]).await.unwrap();
    assert_eq!(cluster.nodes[new_leader].id, took_over.holder);
    let length = checkpoint_length(&cluster.nodes[new_leader].url).await;
    for i in [1, 2] {
        eventually(10, "the standby serving the latest checkpoint", || async {
            (served_length(&cluster.nodes[i].url).await >= Some(length)).then_some(())
        })
        .await;
    }
    all_served(&acked, &[&cluster.nodes[1].url, &cluster.nodes[2].url]).await;
    let now = follow(
        follower.path(),
        &cluster.nodes[new_leader].url,
        &acked.publishes.last().unwrap().name,
    )
    .await;
    assert!(now > seen, "the follower moved from {seen} to {now}");
    checkpoints_extend(&store).await;
    cluster.nodes.clear();
    cluster.fsck();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_commits_and_signs_nothing_once_resumed() {
    let _serial = SERIAL.lock().await;
    let Some(moto) = S3Emulator::start().await else {
        return;
    };
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let mut cluster = Cluster::start(s3_settings(&moto, &db.url, "cluster-pause").await).await;
    let token = cluster.token();
    let store = SqlStore::connect(&db.url, 2).await.unwrap();
    let http = reqwest::Client::new();
    let key = new_key();
    cluster
        .balancer
        .publish(0, &key, "test:followed", "1.0.0", wasm("followed"))
        .await
        .unwrap();
    let follower = tempfile::tempdir().unwrap();
    let seen = follow(follower.path(), &cluster.nodes[0].url, "test:followed").await;

    // A push prepared at the leader (session and blobs), its manifest sent
    // while the leader is paused.
    let held = PreparedPush::upload(
        &http,
        &cluster.nodes[0].url,
        &token,
        "test/held",
        &wasm("held by a paused leader"),
    )
    .await
    .unwrap();
    // Writes through every node; the leader is paused in the middle of
    // them (perhaps inside a batch's transaction: the database ends that
    // session, so its locks do not block the takeover), and the held push's
    // manifest is sent to it.
    let storm = Storm::start(&cluster, &token, "before-pause");
    more_writes(&cluster.balancer, 4, 2, 120).await;
    cluster.nodes[0].signal("STOP");
    let paused = Instant::now();
    cluster.balancer.down(0);
    let mut acked = storm.stop().await;
    let held = tokio::spawn(async move {
        let http = reqwest::Client::new();
        held.manifest(&http, "1.0.0").await
    });
    let storm = Storm::start(&cluster, &token, "pause");

    // Another node takes over and the storm goes on through it.
    let took_over = eventually(15, "another node leading", || async {
        let lease = store.lease().await.ok()?;
        (lease.holder != "a").then_some(lease)
    })
    .await;
    // Epoch 2 unless a leader lost its lease again meanwhile (on a loaded
    // machine); never the paused leader's epoch 1.
    assert!(took_over.epoch >= 2, "{took_over:?}");
    eprintln!(
        "{} leads at epoch {}, {:?} after the pause",
        took_over.holder,
        took_over.epoch,
        paused.elapsed()
    );
    more_writes(&cluster.balancer, 6, 3, 60).await;
    let during = storm.stop().await;
    report("storm with a paused leader", &cluster, &during);
    acked.publishes.extend(during.publishes);
    acked.pushes.extend(during.pushes);
    acked.wkg.extend(during.wkg);

    // Resumed, the old leader finds its lease gone: the push it held is
    // refused at once (503: its batch is fenced, or the queue closes as the
    // term ends — not when its 30 s wait for a batch runs out) and stored
    // nowhere, and it stands by.
    cluster.nodes[0].signal("CONT");
    let resumed = Instant::now();
    let held = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the held push was not answered within 10 s of the resume")
        .unwrap();
    eprintln!("held push answered after {:?}: {held:?}", resumed.elapsed());
    let failure = held.expect_err("a push at a paused leader was accepted");
    assert_eq!(failure.status, Some(503), "{failure:?}");
    cluster.nodes[0].wait_role(false, 15).await;

    // Writes go on through every node, the old leader among them.
    cluster.balancer.up(0);
    let storm = Storm::start(&cluster, &token, "after-pause");
    more_writes(&cluster.balancer, 3, 1, 60).await;
    let after = storm.stop().await;
    report("storm after the pause", &cluster, &after);
    acked.publishes.extend(after.publishes);
    acked.pushes.extend(after.pushes);
    acked.wkg.extend(after.wkg);
    // The resumed leader did not take its term back: the lease is in the
    // term that took over or a later one (which `a`, a standby now, may
    // only have won anew).
    let lease = store.lease().await.unwrap();
    assert!(
        lease.epoch > took_over.epoch
            || (lease.epoch, lease.holder.as_str()) == (took_over.epoch, took_over.holder.as_str()),
        "{lease:?} after {took_over:?}"
    );

    let new_leader = cluster.leader(&[0, 1, 2]).await.unwrap();
    let length = checkpoint_length(&cluster.nodes[new_leader].url).await;
    for node in &cluster.nodes {
        eventually(10, "every node serving the latest checkpoint", || async {
            (served_length(&node.url).await >= Some(length)).then_some(())
        })
        .await;
        let response = http
            .get(format!("{}/v2/test/held/manifests/1.0.0", node.url))
            .header("accept", MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            404,
            "{}: the held push was stored",
            node.id
        );
    }
    let urls: Vec<&str> = cluster.nodes.iter().map(|n| n.url.as_str()).collect();
    all_served(&acked, &urls).await;
    assert_eq!(
        checkpoints_extend(&store).await,
        stored_length(&store).await
    );
    let now = follow(follower.path(), &cluster.nodes[0].url, "test:followed").await;
    assert!(now > seen, "the follower moved from {seen} to {now}");
    cluster.nodes.clear();
    cluster.fsck();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_the_cluster_loses_and_forks_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(moto) = S3Emulator::start().await else {
        return;
    };
    let Some(pg) = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap()
    else {
        return;
    };
    let pg = Arc::new(pg);
    let mut cluster = Cluster::start(s3_settings(&moto, &pg.url(), "cluster-pg").await).await;
    let token = cluster.token();
    let follower = tempfile::tempdir().unwrap();
    cluster
        .balancer
        .publish(0, &new_key(), "test:followed", "1.0.0", wasm("followed"))
        .await
        .unwrap();
    let seen = follow(follower.path(), &cluster.nodes[0].url, "test:followed").await;

    let storm = Storm::start(&cluster, &token, "pg");
    more_writes(&cluster.balancer, 6, 3, 120).await;
    let before = checkpoint_length(&cluster.nodes[0].url).await;
    let restarted = pg.clone();
    tokio::task::spawn_blocking(move || restarted.restart())
        .await
        .unwrap();
    eprintln!("PostgreSQL restarted");
    more_writes(&cluster.balancer, 6, 3, 90).await;
    let acked = storm.stop().await;
    report("storm across a PostgreSQL restart", &cluster, &acked);

    // A node leads (the same one, or another after a re-election), the log
    // grew, and every acknowledged write is served by every node.
    let store = SqlStore::connect(&pg.url(), 2).await.unwrap();
    let lease = store.lease().await.unwrap();
    assert!(
        ["a", "b", "c"].contains(&lease.holder.as_str()),
        "{lease:?}"
    );
    let leader = cluster.leader(&[0, 1, 2]).await.unwrap();
    assert_eq!(cluster.nodes[leader].id, lease.holder);
    let length = checkpoint_length(&cluster.nodes[leader].url).await;
    assert!(length > before, "the log grew from {before} to {length}");
    for node in &cluster.nodes {
        eventually(10, "every node serving the latest checkpoint", || async {
            (served_length(&node.url).await >= Some(length)).then_some(())
        })
        .await;
    }
    let urls: Vec<&str> = cluster.nodes.iter().map(|n| n.url.as_str()).collect();
    all_served(&acked, &urls).await;
    assert_eq!(
        checkpoints_extend(&store).await,
        stored_length(&store).await
    );
    let now = follow(
        follower.path(),
        &cluster.nodes[leader].url,
        &acked.publishes.last().unwrap().name,
    )
    .await;
    assert!(now > seen, "the follower moved from {seen} to {now}");
    cluster.nodes.clear();
    cluster.fsck();
}
