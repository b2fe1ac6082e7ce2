//! Headless Chromium: a page's DOM once its scripts ran, and screenshots.

use std::path::{Path, PathBuf};

/// Chromium, or `None` (skip) outside CI when it is not installed.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and Chromium is missing at {} (Debian package `chromium`)",
        path.display()
    );
    eprintln!("skipping: Chromium is not installed at {}", path.display());
    None
}

/// A fresh browser profile: one tab's storage for a sequence of loads.
pub struct Browser {
    binary: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    pub fn new(binary: &Path) -> Self {
        Self {
            binary: binary.to_path_buf(),
            profile: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(&self, extra: &[String], url: &str) -> String {
        let mut command = std::process::Command::new(&self.binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--virtual-time-budget=10000",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(extra)
            .arg(url);
        // Blocking, on a thread of its own: the server under test runs on
        // this runtime.
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            output.status.success(),
            "chromium failed on {url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The DOM of `url` once its scripts ran.
    pub async fn dom(&self, url: &str) -> String {
        self.run(&["--dump-dom".to_owned()], url).await
    }

    /// The DOM of `url` once `done` holds for it: the pages' scripts
    /// fetch and verify asynchronously, and a loaded machine may end the
    /// browser's virtual time budget first. At most five loads.
    pub async fn dom_when(&self, url: &str, done: impl Fn(&str) -> bool) -> String {
        let mut dom = String::new();
        for _ in 0..5 {
            dom = self.dom(url).await;
            if done(&dom) {
                break;
            }
        }
        dom
    }

    /// A 1280×900 screenshot of `url` into `path`.
    pub async fn screenshot(&self, url: &str, path: &Path) {
        self.run(
            &[
                format!("--screenshot={}", path.display()),
                "--window-size=1280,900".to_owned(),
                "--hide-scrollbars".to_owned(),
            ],
            url,
        )
        .await;
        assert!(path.exists(), "no screenshot of {url}");
    }
}
