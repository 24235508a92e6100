//! The `diglot` binary: configuration errors, --print-config, listener logging, and graceful
//! shutdown on SIGTERM and SIGINT.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::*;

fn diglot() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_diglot"));
    c.env_remove("RUST_LOG");
    c
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("diglot-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.toml");
    std::fs::write(&path, text).unwrap();
    path
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
    let p = temp_file("unknown", "[limits]\nmax_frame_byte = 3\n");
    let e = fails(&["--config", p.to_str().unwrap()]);
    assert!(e.contains("max_frame_byte") && e.contains("broker.toml:2"), "{e}");

    let p = temp_file("addr", "[listeners.mqtt]\naddr = \"300.1.1.1:99999\"\n");
    let e = fails(&["--config", p.to_str().unwrap()]);
    assert!(e.contains("broker.toml:2"), "{e}");

    let e = fails(&["--config", "/nonexistent/broker.toml"]);
    assert!(e.contains("/nonexistent/broker.toml"), "{e}");

    // A port in use names the listener and the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let p = temp_file(
        "inuse",
        &format!(
            "[listeners.ws]\naddr = \"127.0.0.1:0\"\n[listeners.stomp]\naddr = \"127.0.0.1:0\"\n\
             [listeners.mqtt]\naddr = \"127.0.0.1:{port}\"\n"
        ),
    );
    let e = fails(&["--config", p.to_str().unwrap()]);
    assert!(e.contains("listeners.mqtt") && e.contains(&port.to_string()), "{e}");
}

#[test]
fn print_config_is_the_effective_config() {
    let out = diglot().arg("--print-config").current_dir(std::env::temp_dir()).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(diglot::Config::parse(&text, "stdout").unwrap(), diglot::Config::default());

    let p = temp_file("print", "[limits]\nmax_inflight = 7\n");
    let out = diglot().args(["--config", p.to_str().unwrap(), "--print-config"]).output().unwrap();
    let c = diglot::Config::parse(&String::from_utf8(out.stdout).unwrap(), "stdout").unwrap();
    assert_eq!(c.limits.max_inflight, 7);
}

/// Starts the daemon on port 0 and reads the listener addresses from its log.
fn start_daemon(name: &str) -> (Child, SocketAddr, SocketAddr) {
    let p = temp_file(
        name,
        "[listeners.ws]\naddr = \"127.0.0.1:0\"\n[listeners.mqtt]\naddr = \"127.0.0.1:0\"\n\
         [listeners.stomp]\naddr = \"127.0.0.1:0\"\n[log]\nlevel = \"info\"\n",
    );
    let mut child = diglot()
        .args(["--config", p.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (mut ws, mut stomp) = (None, None);
    for line in out.lines() {
        let line = line.unwrap();
        if line.contains("listening") {
            let addr: SocketAddr = line.rsplit("addr=").next().unwrap().trim().parse().unwrap();
            if line.contains("kind=\"ws\"") || line.contains("kind=ws") {
                ws = Some(addr);
            } else if line.contains("stomp") {
                stomp = Some(addr);
            }
        }
        if ws.is_some() && stomp.is_some() {
            break;
        }
    }
    (child, ws.expect("ws listener logged"), stomp.expect("stomp listener logged"))
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("diglot did not exit after the signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_says_goodbye_and_exits_zero() {
    let (child, ws, stomp_addr) = start_daemon("term");
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
    let (child, ws, _) = start_daemon("int");
    let mut m = ws_connect(ws, "/mqtt", &[]).await.ok().unwrap();
    m.send(&mqtt_connect_bytes("int", 30, true)).await.unwrap();
    assert_eq!(m.recv().await.unwrap(), vec![0x20, 2, 0, 0]);
    signal(&child, "-INT");
    assert_eq!(m.close_code().await, Some(1001));
    assert!(wait_exit(child).success());
}
