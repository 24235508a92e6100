//! `http.static_dir` over real sockets: files, index pages, redirects and refusals on the
//! WebSocket and HTTP listeners, next to the WebSocket paths and the API; and
//! `diglot --serve-examples`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request with `Connection: close`; the whole answer as text.
async fn http(addr: SocketAddr, method: &str, path: &str, extra: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(common::PATIENCE, s.read_to_end(&mut out)).await.expect("an answer").unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn status(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn site(dir: &Path) -> PathBuf {
    let root = dir.join("site");
    std::fs::create_dir_all(root.join("chat")).unwrap();
    std::fs::write(root.join("chat/index.html"), "<!doctype html><p>chat</p>").unwrap();
    std::fs::write(root.join("chat/app.js"), "console.log(1)").unwrap();
    std::fs::write(dir.join("secret.txt"), "outside").unwrap();
    root
}

#[tokio::test]
async fn static_dir_serves_files_beside_websockets_and_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = diglot::Config::ephemeral();
    config.http.static_dir = site(dir.path()).display().to_string();
    config.listeners.http.enabled = true;
    let broker = common::broker_with(config).await;
    let ws = broker.ws_addr().unwrap();
    let http_only = broker.addr("http").unwrap();

    for addr in [ws, http_only] {
        let a = http(addr, "GET", "/chat/", "").await;
        assert_eq!(status(&a), 200, "{a}");
        assert_eq!(header(&a, "content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(header(&a, "x-content-type-options"), Some("nosniff"));
        assert_eq!(body(&a), "<!doctype html><p>chat</p>");

        let a = http(addr, "GET", "/chat/app.js", "").await;
        assert_eq!(header(&a, "content-type"), Some("text/javascript; charset=utf-8"), "{a}");

        let a = http(addr, "HEAD", "/chat/app.js", "").await;
        assert_eq!(status(&a), 200, "{a}");
        assert_eq!(header(&a, "content-length"), Some("14"), "{a}");
        assert_eq!(body(&a), "");

        let a = http(addr, "GET", "/chat", "").await;
        assert_eq!((status(&a), header(&a, "location")), (301, Some("/chat/")), "{a}");

        for bad in ["/../secret.txt", "/%2e%2e/secret.txt", "/chat/..%2F..%2Fsecret.txt", "/nope.html"] {
            assert_eq!(status(&http(addr, "GET", bad, "").await), 404, "{bad}");
        }
        assert_eq!(status(&http(addr, "POST", "/chat/", "Content-Length: 0\r\n").await), 404);
        // The broker's own endpoints keep their paths.
        assert_eq!(status(&http(addr, "GET", "/healthz", "").await), 200);
        assert_eq!(status(&http(addr, "GET", "/api/v1/stats", "").await), 200);
        assert!(body(&http(addr, "GET", "/dashboard", "").await).contains("<html"));
    }
    // The WebSocket paths still answer as WebSocket endpoints, and still upgrade.
    assert_eq!(status(&http(ws, "GET", "/ws", "").await), 426);
    match common::ws_connect(ws, "/ws", &["mqtt"]).await {
        Ok(common::Conn::Ws { protocol, .. }) => assert_eq!(protocol.as_deref(), Some("mqtt")),
        Ok(_) => unreachable!("ws_connect opens a WebSocket"),
        Err(a) => panic!("upgrade refused: {} {}", a.status, a.body),
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn without_static_dir_other_paths_are_404() {
    let broker = common::broker().await;
    let a = http(broker.ws_addr().unwrap(), "GET", "/chat/", "").await;
    assert_eq!(status(&a), 404, "{a}");
    broker.shutdown().await;
}

#[test]
fn static_dir_must_be_a_directory() {
    let e = diglot::Config::parse("[http]\nstatic_dir = \"/nonexistent/www\"\n", "b.toml").unwrap_err().to_string();
    assert!(e.contains("http.static_dir") && e.contains("/nonexistent/www"), "{e}");
}

#[test]
fn serve_examples_finds_the_examples_or_says_why_not() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_diglot"))
        .args(["--serve-examples", "--print-config"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = diglot::Config::parse(&String::from_utf8(out.stdout).unwrap(), "stdout").unwrap();
    assert_eq!(Path::new(&config.http.static_dir), repo.join("examples"));

    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_diglot"))
        .args(["--serve-examples", "--print-config"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--serve-examples") && err.contains("repository root"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
