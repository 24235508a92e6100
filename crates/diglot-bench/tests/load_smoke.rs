//! Smoke test of `diglot-bench load` and `diglot-bench relay`: every scenario runs for about a
//! second against a real Diglot broker started in this process on port 0, and against the
//! relay binary, and its JSON line must parse with sane fields (non-zero counts; the durable
//! drain complete and in order). It never asserts on timing.

use std::process::Stdio;

use diglot::{Broker, Config};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_diglot-bench");

/// Runs one `load` scenario and returns its record, after the checks every record must pass.
/// `pid` is the process whose memory the record reports.
async fn load(scenario: &str, url: &str, target: &str, pid: u32, extra: &[&str]) -> Value {
    let pid = pid.to_string();
    let mut args = vec!["load", scenario, "--url", url, "--target", target, "--pid", &pid];
    args.extend(["--duration-secs", "1", "--drain-secs", "2", "--messages", "300", "--connections", "50"]);
    args.extend(["--rate", "500", "--hold-secs", "0.2"]);
    args.extend(extra);
    let out = Command::new(BIN).args(&args).stderr(Stdio::inherit()).output().await.expect("bench runs");
    assert!(out.status.success(), "{scenario} {url}: exit {:?}", out.status);
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{scenario} {url}: one JSON line, got {text:?}");
    let r: Value = serde_json::from_str(lines[0]).expect("the line is JSON");
    assert_eq!(r["ok"], Value::Bool(true), "{scenario} {url}: {r}");
    assert_eq!(r["scenario"], scenario);
    assert_eq!(r["target"], target);
    assert!(r["params"].is_object(), "{r}");
    r
}

fn count(r: &Value, key: &str) -> u64 {
    r[key].as_u64().unwrap_or_else(|| panic!("{key} is a count in {r}"))
}

/// The checks of each scenario's own fields.
fn check(r: &Value) {
    assert!(r.get("first_error").is_none(), "an error during the run: {r}");
    match r["scenario"].as_str().expect("scenario") {
        "fanin" | "fanout" | "latency" => {
            assert!(count(r, "sent") > 0, "{r}");
            assert!(count(r, "received") > 0, "{r}");
            assert!(r["deliveries_per_s"].as_f64().is_some_and(|v| v > 0.0), "{r}");
            if r["scenario"] != "latency" {
                assert!(count(&r["params"], "topics") >= 1, "{r}");
            }
            if r["scenario"] == "latency" {
                assert!(count(r, "p50_us") > 0 && count(r, "max_us") >= count(r, "p99_us"), "{r}");
            }
        }
        "conns" => {
            assert_eq!(count(r, "connected"), 50, "{r}");
            assert!(count(r, "rss_after_bytes") > 0, "{r}");
            if r["params"]["traffic"].is_string() {
                // Messages flowed with the connections held, and again without them.
                assert!(count(r, "during_received") > 0, "{r}");
                assert!(count(r, "alone_received") > 0, "{r}");
                if r["protocol"] == "mqtt" {
                    assert_eq!(count(r, "alive_after_traffic"), 50, "{r}");
                }
            }
        }
        "durable" if r["applicable"] == Value::Bool(false) => {}
        "durable" => {
            assert_eq!(count(r, "acked"), 300, "{r}");
            assert_eq!(r["complete"], Value::Bool(true), "{r}");
            assert_eq!(r["in_order"], Value::Bool(true), "{r}");
            assert_eq!(count(r, "missing"), 0, "{r}");
        }
        "slow-consumer" => {
            assert!(count(r, "fast_received_baseline") > 0, "{r}");
            assert!(count(r, "fast_received_with_slow") > 0, "{r}");
            assert!(count(r, "slow_received") > 0, "{r}");
            assert!(count(r, "rss_max_bytes") > 0, "{r}");
        }
        other => panic!("unknown scenario {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_against_diglot() {
    let config = Config::ephemeral();
    let broker = Broker::start(&config).await.expect("broker starts");
    let ws = broker.ws_addr().expect("ws listener");
    let mqtt = format!("mqtt://{}", broker.mqtt_addr().expect("mqtt listener"));
    let stomp = format!("stomp://{}", broker.stomp_addr().expect("stomp listener"));
    let (mqtt_ws, stomp_ws) = (format!("mqtt+ws://{ws}/ws"), format!("stomp+ws://{ws}/ws"));
    let runs: &[(&str, &str, &[&str])] = &[
        ("fanin", &mqtt_ws, &["--publishers", "4"]),
        ("fanin", &stomp, &["--publishers", "2"]),
        // A fleet: every message to a topic of its own among 5,000, one `#` subscriber.
        ("fanin", &mqtt, &["--publishers", "4", "--topics", "5000"]),
        ("fanout", &mqtt, &["--subscribers", "4"]),
        ("fanout", &stomp_ws, &["--subscribers", "4"]),
        ("latency", &mqtt_ws, &[]),
        ("conns", &mqtt_ws, &[]),
        ("conns", &mqtt_ws, &["--traffic", "fanout", "--subscribers", "2"]),
        ("durable", &mqtt, &[]),
        ("durable", &stomp_ws, &[]),
        ("slow-consumer", &mqtt_ws, &[]),
    ];
    for (scenario, url, extra) in runs {
        check(&load(scenario, url, "diglot", std::process::id(), extra).await);
    }
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(&config.store.path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_against_the_relay() {
    let mut relay = Command::new(BIN)
        .args(["relay", "--listen", "127.0.0.1:0", "--max-secs", "120"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("relay starts");
    let mut first = String::new();
    let stdout = relay.stdout.take().expect("piped stdout");
    BufReader::new(stdout).read_line(&mut first).await.expect("relay prints its address");
    let addr = first.trim().strip_prefix("relay listening on ").expect("the address line").to_string();
    let pid = relay.id().expect("running");
    let url = format!("ws://{addr}");
    for scenario in ["fanin", "fanout", "latency", "conns", "durable", "slow-consumer"] {
        // The relay's own memory, not this process's.
        let r = load(scenario, &url, "relay", pid, &["--publishers", "2", "--subscribers", "2"]).await;
        assert_eq!(r["protocol"], "raw");
        check(&r);
    }
    relay.kill().await.expect("relay stops");
}
