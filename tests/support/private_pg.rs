//! A private PostgreSQL server for one test (so that it can be restarted
//! without touching the shared one): `initdb` in a temporary directory,
//! trust authentication, listening on a free loopback port, stopped and
//! removed on drop.
//!
//! The server binaries are found under `/usr/lib/postgresql/<version>/bin`
//! (or `$CAIRN_TEST_PG_BIN`). `initdb` refuses to run as root, so as root
//! the server runs as the `postgres` user (`runuser`), in a directory it
//! owns. Missing binaries skip the test with a message — unless `CI=true`,
//! where that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running private PostgreSQL server.
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
    pub port: u16,
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The newest installed server's binary directory.
fn server_bin() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("CAIRN_TEST_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

impl PrivatePostgres {
    /// Initialises and starts a server with database `cairn`; `None` (with
    /// a message) if the server binaries are not installed and this is not
    /// CI.
    pub fn start() -> Option<Self> {
        let Some(bin) = server_bin() else {
            assert!(
                !ci(),
                "CI=true but no PostgreSQL server binaries under /usr/lib/postgresql"
            );
            eprintln!("skipping: no PostgreSQL server binaries under /usr/lib/postgresql");
            return None;
        };
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = tempfile::tempdir().unwrap();
        if root {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown postgres {}", dir.path().display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let this = Self {
            bin,
            dir,
            as_postgres: root,
            port,
        };
        let data = this.data();
        this.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
        );
        this.pg_ctl(&["start"]);
        this.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "cairn",
            ],
        );
        Some(this)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs server binary `program` (as `postgres` when this is root).
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `pg_ctl ACTION` (waiting for it), listening on loopback only.
    fn pg_ctl(&self, action: &[&str]) {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {}",
            self.port,
            self.dir.path().display()
        );
        let mut args = vec![
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "-o",
            &options,
        ];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args);
    }

    /// The URL of database `cairn`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/cairn", self.port)
    }

    /// `pg_ctl restart -m fast`: every session is closed, the server stops
    /// and starts again; returns once it accepts connections.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "fast"]);
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let path = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        let _ = command
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
