//! A real redis-server for the cluster tests: on a free loopback port, no persistence,
//! killed on drop. `scripts/redis-test-server` installs the binary if it is missing.
#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::common::PATIENCE;

/// A redis-server child process, killed on drop.
pub struct Redis {
    pub child: Option<Child>,
    pub port: u16,
    /// Extra arguments (TLS).
    pub args: Vec<String>,
    /// With a directory: an append-only file there (fsync always), so that a restart keeps
    /// the data.
    pub dir: Option<std::path::PathBuf>,
}

fn redis_binary() -> String {
    if let Ok(p) = std::env::var("DIGLOT_REDIS_SERVER") {
        return p;
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file());
    match found {
        Some(p) => p.display().to_string(),
        None => panic!(
            "redis-server not found: the cluster tests need a real Redis. Run scripts/redis-test-server \
             (it installs Debian's redis-server package) before cargo test, or set DIGLOT_REDIS_SERVER"
        ),
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Redis {
    pub async fn start() -> Redis {
        Redis::start_with(Vec::new()).await
    }

    /// Starts with extra arguments; `port` is the plain port unless they say otherwise.
    pub async fn start_with(args: Vec<String>) -> Redis {
        let mut r = Redis { child: None, port: free_port(), args, dir: None };
        r.spawn().await;
        r
    }

    /// Starts one whose data survives a restart (in `dir`).
    pub async fn start_persistent(dir: &std::path::Path) -> Redis {
        let mut r = Redis { child: None, port: free_port(), args: Vec::new(), dir: Some(dir.to_path_buf()) };
        r.spawn().await;
        r
    }

    pub async fn spawn(&mut self) {
        let persist: Vec<String> = match &self.dir {
            Some(d) => ["--dir", &d.display().to_string(), "--appendonly", "yes", "--appendfsync", "always"]
                .map(String::from)
                .to_vec(),
            None => Vec::new(),
        };
        let child = Command::new(redis_binary())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(persist)
            .args(self.port_args())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        tokio::time::timeout(PATIENCE, async {
            while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("redis-server listens");
    }

    fn port_args(&self) -> Vec<String> {
        if self.args.is_empty() {
            return vec!["--port".into(), self.port.to_string()];
        }
        let mut a = vec!["--port".into(), "0".into(), "--tls-port".into(), self.port.to_string()];
        a.extend(self.args.iter().cloned());
        a
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
