//! Search index benchmark: loads RELEASES releases (default 10^5) into the
//! index through [`SearchStore::index`], the way the sequencer writes them,
//! then times the queries `GET /api/v1/search` and `…/dependents` make and
//! prints p50, p99 and max per query kind.
//!
//! Run: `scripts/bench-search.sh [releases]` (both databases), or
//! `cargo bench -p cairn-store --bench search -- RELEASES [DATABASE_URL]`
//! (SQLite in a temporary directory without a URL).
//!
//! The corpus: 1,000 namespaces of packages with 4 releases each; every
//! release imports 3 to 6 of 40 WASI-like interfaces (one in five imports
//! `wasi:sockets/*`, one in two `wasi:cli/*`), exports one of 8, and one
//! in ten releases is yanked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "bench"
)]

use std::time::{Duration, Instant};

use cairn_crypto::Sha256Digest;
use cairn_store::{
    Backend, ContentFacts, Direction, IndexedRelease, InterfaceFilter, PackageSummary,
    SearchFilter, SearchStore, SearchUpdate, SqlStore,
};

const PER_PACKAGE: u64 = 4;
const NAMESPACES: u64 = 1000;
const QUERIES: usize = 200;

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn interfaces() -> Vec<String> {
    let mut out = Vec::new();
    for (package, names) in [
        (
            "wasi:cli",
            &["environment", "stdout", "stderr", "stdin", "exit"][..],
        ),
        ("wasi:io", &["streams", "poll", "error"]),
        ("wasi:filesystem", &["types", "preopens"]),
        ("wasi:clocks", &["wall-clock", "monotonic-clock"]),
        ("wasi:random", &["random", "insecure"]),
        ("wasi:sockets", &["tcp", "udp", "network"]),
        ("wasi:http", &["types", "outgoing-handler"]),
        ("wasi:keyvalue", &["store", "atomics"]),
    ] {
        for name in names {
            for version in ["0.2.0", "0.2.1"] {
                out.push(format!("{package}/{name}@{version}"));
            }
        }
    }
    out.truncate(40);
    out
}

fn exports() -> Vec<String> {
    (0..8)
        .map(|i| match i {
            0 => "wasi:http/incoming-handler@0.2.0".to_owned(),
            1 => "wasi:http/incoming-handler@0.2.1".to_owned(),
            2 => "wasi:cli/run@0.2.0".to_owned(),
            n => format!("acme:plugin/api{n}@1.0.0"),
        })
        .collect()
}

/// Loads `releases` releases, 1,000 per transaction.
async fn load(store: &SqlStore, releases: u64) {
    let imports = interfaces();
    let exports = exports();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut update = SearchUpdate::default();
    let started = Instant::now();
    for i in 0..releases {
        let package_n = i / PER_PACKAGE;
        let namespace = format!("ns{}", package_n % NAMESPACES);
        let package = format!("{namespace}:pkg-{package_n}");
        let version = format!("1.{}.0", i % PER_PACKAGE);
        let content = Sha256Digest::of(&i.to_le_bytes());
        let mut imported: Vec<String> = (0..3 + rng.below(4))
            .map(|_| imports[rng.below(imports.len() as u64) as usize].clone())
            .collect();
        if rng.below(5) == 0 {
            imported.push("wasi:sockets/tcp@0.2.0".into());
        }
        if rng.below(2) == 0 {
            imported.push("wasi:cli/environment@0.2.0".into());
        }
        update.facts.push(ContentFacts {
            content,
            kind: "component".into(),
            imports: imported,
            exports: vec![exports[rng.below(exports.len() as u64) as usize].clone()],
        });
        update.releases.push(IndexedRelease {
            package: package.clone(),
            namespace: namespace.clone(),
            version: version.clone(),
            content,
            registry_index: i,
        });
        if i % PER_PACKAGE == PER_PACKAGE - 1 || i + 1 == releases {
            let yanked = if rng.below(10) == 0 {
                vec![version]
            } else {
                Vec::new()
            };
            update.packages.push(PackageSummary {
                package,
                namespace,
                latest: Some(format!("1.{}.0", i % PER_PACKAGE)),
                yanked,
                head_index: i,
            });
        }
        if update.releases.len() == 1000 {
            store.index(&std::mem::take(&mut update)).await.unwrap();
        }
    }
    store.index(&update).await.unwrap();
    println!(
        "loaded {releases} releases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn filter(direction: Direction, name: &str, version: Option<&str>) -> InterfaceFilter {
    InterfaceFilter {
        direction,
        name: name.into(),
        version: version.map(Into::into),
    }
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what:<44} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
}

/// One page of a search as the service makes it: the packages, then
/// their matching releases.
async fn page(store: &SqlStore, filter: &SearchFilter, after: Option<&str>) -> Option<String> {
    let hits = store.search_packages(filter, after, 21).await.unwrap();
    let names: Vec<String> = hits.iter().take(20).map(|h| h.package.clone()).collect();
    store
        .matching_releases(&names, &filter.interfaces, 20_000)
        .await
        .unwrap();
    (hits.len() > 20).then(|| names.last().cloned()).flatten()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let releases: u64 = args.first().map_or(100_000, |n| n.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("search.db").display()));
    let store = SqlStore::connect(&url, 8).await.unwrap();
    store.migrate().await.unwrap();
    println!("backend: {:?}", store.backend());
    load(&store, releases).await;
    if *store.backend() == Backend::Postgres {
        // What autovacuum does on a live database after such a load: the
        // planner needs the statistics to use the indexes.
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query("ANALYZE").execute(&pool).await.unwrap();
        pool.close().await;
    }

    let scope: Vec<String> = (0..5).map(|n| format!("ns{n}")).collect();
    let packages = (releases / PER_PACKAGE).max(1);
    let kinds: Vec<(&str, SearchFilter)> = vec![
        (
            "import=wasi:cli/* (first page)",
            SearchFilter {
                interfaces: vec![filter(Direction::Import, "wasi:cli/*", None)],
                ..SearchFilter::default()
            },
        ),
        (
            "import=wasi:sockets/tcp@0.2.*",
            SearchFilter {
                interfaces: vec![filter(Direction::Import, "wasi:sockets/tcp", Some("0.2.*"))],
                ..SearchFilter::default()
            },
        ),
        (
            "export=wasi:http/incoming-handler@0.2.1",
            SearchFilter {
                interfaces: vec![filter(
                    Direction::Export,
                    "wasi:http/incoming-handler",
                    Some("0.2.1"),
                )],
                ..SearchFilter::default()
            },
        ),
        (
            "import=wasi:keyvalue/* & export=acme:*",
            SearchFilter {
                interfaces: vec![
                    filter(Direction::Import, "wasi:keyvalue/*", None),
                    filter(Direction::Export, "acme:*", None),
                ],
                ..SearchFilter::default()
            },
        ),
        (
            "import=wasi:cli/* in 5 namespaces",
            SearchFilter {
                interfaces: vec![filter(Direction::Import, "wasi:cli/*", None)],
                namespaces: Some(scope.clone()),
                ..SearchFilter::default()
            },
        ),
        (
            "prefix=ns7:",
            SearchFilter {
                prefix: Some("ns7:".into()),
                ..SearchFilter::default()
            },
        ),
        (
            "q=pkg-9999 (substring)",
            SearchFilter {
                contains: Some("pkg-9999".into()),
                ..SearchFilter::default()
            },
        ),
        (
            "namespace=ns42",
            SearchFilter {
                namespaces: Some(vec!["ns42".into()]),
                ..SearchFilter::default()
            },
        ),
    ];
    let mut rng = Rng(42);
    let mut all = Vec::new();
    for (what, filter) in &kinds {
        let mut times = Vec::with_capacity(QUERIES);
        for _ in 0..QUERIES {
            // Pages from anywhere in the index, not only the first.
            let after = (rng.below(2) == 0).then(|| {
                let n = rng.below(packages);
                format!("ns{}:pkg-{n}", n % NAMESPACES)
            });
            let started = Instant::now();
            page(&store, filter, after.as_deref()).await;
            times.push(started.elapsed());
        }
        all.extend(times.iter().copied());
        report(what, times);
    }
    let mut times = Vec::with_capacity(QUERIES);
    for _ in 0..QUERIES {
        let after = format!("ns{}:pkg-{}", rng.below(NAMESPACES), rng.below(packages));
        let started = Instant::now();
        store
            .dependents("wasi:http", None, Some((&after, "1.0.0")), 21)
            .await
            .unwrap();
        times.push(started.elapsed());
    }
    all.extend(times.iter().copied());
    report("dependents of wasi:http", times);
    report("all queries", all);
}
