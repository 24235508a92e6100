//! The `diglot` binary: configuration errors, --print-config, listener logging, and graceful
//! shutdown on SIGTERM and SIGINT.

mod common;

use std::process::{Command, Stdio};

use common::*;

fn diglot() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_diglot"));
    c.env_remove("RUST_LOG");
    c
}

/// A config file in a fresh temp directory (removed when the returned guard drops), with the
/// store's data directory beside it.
fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new().prefix(&format!("diglot-cli-{name}-")).tempdir().unwrap();
    let path = dir.path().join("broker.toml");
    let store = dir.path().join("data");
    std::fs::write(&path, format!("{text}\n[store]\npath = {:?}\n", store.display().to_string())).unwrap();
    (dir, path)
}

/// Runs `diglot` expecting a failure; returns stderr.
fn fails(args: &[&str]) -> String {
    let out = diglot().args(args).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success(), "diglot {args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "one-line error, got: {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    err
}

#[test]
fn bad_configs_exit_non_zero_with_one_line() {
    let (_dir, p) = temp_file("unknown", "[limits]\nmax_frame_byte = 3\n");
    let e = fails(&["--config", p.to_str().unwrap()]);
    assert!(e.contains("max_frame_byte") && e.contains("broker.toml:2"), "{e}");

    let (_dir, p) = temp_file("addr", "[listeners.mqtt]\naddr = \"300.1.1.1:99999\"\n");
    let e = fails(&["--config", p.to_str().unwrap()]);
    assert!(e.contains("broker.toml:2"), "{e}");

    let e = fails(&["--config", "/nonexistent/broker.toml"]);
    assert!(e.contains("/nonexistent/broker.toml"), "{e}");

    // A port in use names the listener and the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_dir, p) = temp_file(
        "inuse",
        &format!(
            "[listeners.ws]\naddr = \"127.0.0.1:0\"\n[listeners.stomp]\naddr = \"127.0.0.1:0\"\n\
             [listeners.mqtt]\naddr = \"127.0.0.1:{port}\"\n"
        ),
    );
    let e = fails(&["--config", p.to_str().unwrap()]);
    assert!(e.contains("listeners.mqtt") && e.contains(&port.to_string()), "{e}");
    // Its cause once, not once per layer of the error.
    assert_eq!(e.matches("in use").count(), 1, "{e}");
}

/// A broker whose log pipe closes (a log shipper that died) keeps serving and still stops
/// cleanly: a line it cannot write is dropped. Before, tracing reported the failed write with
/// `eprintln!`, which panicked on the closed stderr, and SIGTERM then ended with exit 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_log_pipe_neither_stops_nor_crashes_the_broker() {
    use std::io::{BufRead, BufReader};
    let (_dir, p) = temp_file(
        "pipe",
        "[listeners.ws]\naddr = \"127.0.0.1:0\"\n[listeners.stomp]\naddr = \"127.0.0.1:0\"\n\
         [listeners.mqtt]\naddr = \"127.0.0.1:0\"\n[log]\nlevel = \"info\"\n",
    );
    let mut child = diglot()
        .args(["--config", p.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child.id());
    let mut mqtt = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains("listening") && line.contains("listeners.mqtt") {
            mqtt = line.rsplit("addr=").next().and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok());
        }
        if line.contains("diglot started") {
            break;
        }
    }
    // Both ends of the log pipes are closed now (the reader was dropped, and stderr's too).
    drop(child.stderr.take());
    let mqtt = mqtt.expect("the MQTT listener is logged");
    // Connections are logged: each line now fails to be written.
    for i in 0..3 {
        let mut c = tcp_connect(mqtt).await;
        c.send(&mqtt_connect_bytes(&format!("piped-{i}"), 30, true)).await.unwrap();
        assert_eq!(c.recv().await.unwrap(), vec![0x20, 2, 0, 0], "still serving");
    }
    signal(&child, "-TERM");
    let status = wait_exit(child);
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_foreign_or_newer_store_is_refused_not_wiped() {
    let (dir, p) = temp_file("foreign", "[listeners.ws]\naddr = \"127.0.0.1:0\"\n[listeners.mqtt]\naddr = \"127.0.0.1:0\"\n[listeners.stomp]\naddr = \"127.0.0.1:0\"\n");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("precious.txt"), "not a store").unwrap();
    let e = fails(&["--config", p.to_str().unwrap()]);
    assert!(e.contains("store") && e.contains(&data.display().to_string()), "{e}");
    assert_eq!(std::fs::read_to_string(data.join("precious.txt")).unwrap(), "not a store");
}

#[test]
fn print_config_is_the_effective_config() {
    let out = diglot().arg("--print-config").current_dir(std::env::temp_dir()).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(diglot::Config::parse(&text, "stdout").unwrap(), diglot::Config::default());

    let (_dir, p) = temp_file("print", "[limits]\nmax_inflight = 7\n");
    let out = diglot().args(["--config", p.to_str().unwrap(), "--print-config"]).output().unwrap();
    let c = diglot::Config::parse(&String::from_utf8(out.stdout).unwrap(), "stdout").unwrap();
    assert_eq!(c.limits.max_inflight, 7);
}

/// `--print-config` leaves out the configuration's secrets (the JWT HS256 secret, password
/// hashes, the Redis password), so that its output can be pasted into a ticket; the rest is as
/// configured.
#[test]
fn print_config_hides_secrets() {
    let hash = diglot_auth::password::hash(b"correct horse").unwrap();
    let secret = "0123456789abcdef0123456789abcdef-jwt";
    let (_dir, p) = temp_file(
        "secrets",
        &format!(
            "[auth]\nusers = [{{ username = \"alice\", password_hash = \"{hash}\" }}]\n\
             [auth.jwt]\nhs256_secret = \"{secret}\"\n\
             [cluster]\nredis_url = \"redis://ops:hunter2@127.0.0.1:6379/0\"\n"
        ),
    );
    let out = diglot().args(["--config", p.to_str().unwrap(), "--print-config"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for shown in [&hash[..], secret, "hunter2"] {
        assert!(!text.contains(shown), "{shown} printed:\n{text}");
    }
    let value: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(value["auth"]["users"][0]["username"].as_str(), Some("alice"));
    assert_eq!(value["auth"]["users"][0]["password_hash"].as_str(), Some("REDACTED"));
    assert_eq!(value["auth"]["jwt"]["hs256_secret"].as_str(), Some("REDACTED"));
    assert_eq!(value["cluster"]["redis_url"].as_str(), Some("redis://ops:REDACTED@127.0.0.1:6379/0"));
}

/// SIGHUP puts a changed `log.level` in force: after a reload to `warn`, a normal close (an
/// `info` line) is no longer logged, and a protocol error (a `warn` line) still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_log_level() {
    /// Connects as `id` (MQTT 3.1.1), then leaves with a DISCONNECT, or with a packet of the
    /// reserved type 0 (a protocol error).
    async fn visit(addr: std::net::SocketAddr, id: &str, polite: bool) {
        let mut c = tcp_connect(addr).await;
        c.send(&mqtt_connect_bytes(id, 30, true)).await.unwrap();
        c.send(if polite { &[0xE0, 0] } else { &[0x00, 0] }).await.unwrap();
        c.read_to_close().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    visit(daemon.mqtt, "before-reload", true).await;
    daemon.wait_for_log(&["connection closed", "before-reload"]);

    let config = dir.path().join("broker.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("level = \"info\""), "{text}");
    std::fs::write(&config, text.replace("level = \"info\"", "level = \"warn\"")).unwrap();
    signal(&daemon.child, "-HUP");
    daemon.wait_for_log(&["log level changed", "warn"]);

    visit(daemon.mqtt, "quiet-after-reload", true).await;
    visit(daemon.mqtt, "loud-after-reload", false).await;
    let log = daemon.log.lock().unwrap();
    loop {
        let line = log.recv_timeout(PATIENCE).expect("the protocol error is logged at warn");
        assert!(!line.contains("quiet-after-reload"), "an info line after the reload to warn: {line}");
        if line.contains("loud-after-reload") {
            assert!(line.contains("connection closed") && line.contains("WARN"), "{line}");
            break;
        }
    }
    drop(log);
    signal(&daemon.child, "-TERM");
    let Daemon { child, guard: _guard, .. } = daemon;
    assert!(wait_exit(child).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_says_goodbye_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let Daemon { child, ws, stomp: stomp_addr, guard: _guard, .. } = Daemon::start(dir.path());
    let mut stomp = Stomp::new(tcp_connect(stomp_addr).await);
    stomp.connect("1.2").await;
    let mut ws_stomp = Stomp::new(ws_connect(ws, "/ws", &["v12.stomp"]).await.ok().unwrap());
    ws_stomp.connect("1.2").await;
    let mut ws_mqtt = ws_connect(ws, "/ws", &["mqtt"]).await.ok().unwrap();
    ws_mqtt.send(&mqtt_connect_bytes("bye", 30, true)).await.unwrap();
    assert_eq!(ws_mqtt.recv().await.unwrap(), vec![0x20, 2, 0, 0]);

    signal(&child, "-TERM");
    let e = stomp.frame().await.expect("ERROR on shutdown");
    assert_eq!(e.command, "ERROR");
    assert_eq!(e.header("message"), Some("server shutting down"));
    assert!(stomp.frame().await.is_none());
    assert_eq!(ws_mqtt.close_code().await, Some(1001), "WebSocket close 1001 going away");
    let e = ws_stomp.frame().await.expect("ERROR on shutdown over WebSocket");
    assert_eq!(e.header("message"), Some("server shutting down"));
    assert!(wait_exit(child).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let Daemon { child, ws, guard: _guard, .. } = Daemon::start(dir.path());
    let mut m = ws_connect(ws, "/mqtt", &[]).await.ok().unwrap();
    m.send(&mqtt_connect_bytes("int", 30, true)).await.unwrap();
    assert_eq!(m.recv().await.unwrap(), vec![0x20, 2, 0, 0]);
    signal(&child, "-INT");
    assert_eq!(m.close_code().await, Some(1001));
    assert!(wait_exit(child).success());
}

/// A second SIGTERM while the broker waits for its shutdown grace ends it at once, with exit
/// status 1. The wait here: a WebSocket handshake left half-sent, which the broker lets run to
/// the end of the grace (30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_does_not_wait_for_the_grace() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(dir.path(), "[server]\nshutdown_grace_secs = 30\nhandshake_timeout_secs = 30\n");
    let mut half = tokio::net::TcpStream::connect(daemon.ws).await.unwrap();
    half.write_all(b"GET /ws HTTP/1.1\r\nHost: h\r\n").await.unwrap();
    signal(&daemon.child, "-TERM");
    // The second once the first is being acted on (two sent at once may arrive as one).
    daemon.wait_for_log(&["shutting down"]);
    signal(&daemon.child, "-TERM");
    let Daemon { child, guard: _guard, .. } = daemon;
    let status = wait_exit(child);
    assert_eq!(status.code(), Some(1), "{status:?}");
}

#[test]
fn hash_password_prints_a_verifiable_argon2id_hash() {
    use std::io::Write;
    let mut child = diglot()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"correct horse\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hash = String::from_utf8(out.stdout).unwrap();
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(diglot_auth::password::verify(b"correct horse", hash));
    assert!(!diglot_auth::password::verify(b"wrong", hash));
}
