//! Issue #9: a cluster over `rediss://` (TLS), against a real redis-server with a test CA.
//!
//! Its own test binary: the CA reaches redis-rs through `SSL_CERT_FILE` (it reads the
//! system's roots), which is set before any thread of the test starts.

mod common;
mod redis;

use std::time::Duration;

use common::*;
use redis::Redis;
use rumqttc::{AsyncClient, MqttOptions, QoS};

#[test]
fn two_nodes_over_rediss() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    // SAFETY of the environment: no other thread runs yet in this test binary.
    std::env::set_var("SSL_CERT_FILE", &cert_file);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let (c, k) = (cert_file.display().to_string(), key_file.display().to_string());
        let args = ["--tls-cert-file", &c, "--tls-key-file", &k, "--tls-ca-cert-file", &c, "--tls-auth-clients", "no"];
        let redis = Redis::start_with(args.iter().map(|s| s.to_string()).collect()).await;
        let url = format!("rediss://127.0.0.1:{}/", redis.port);
        let node = |id: &str| {
            let mut c = diglot::Config::ephemeral();
            c.cluster.redis_url = url.clone();
            c.cluster.node_id = id.into();
            c.cluster.channel_prefix = "tls".into();
            c
        };
        let a = broker_with(node("a")).await;
        let b = broker_with(node("b")).await;
        for n in [&a, &b] {
            tokio::time::timeout(PATIENCE, async {
                loop {
                    let (_, body) = http_get(n.ws_addr().unwrap(), "/readyz").await;
                    if body.contains("\"cluster\":\"up\"") {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .expect("link up over TLS");
        }
        let mut stomp = Stomp::new(tcp_connect(b.stomp_addr().unwrap()).await);
        stomp.connect("1.2").await;
        stomp.send("SUBSCRIBE", &[("id", "0"), ("destination", "/topic/secure"), ("receipt", "r")], "").await;
        assert_eq!(stomp.frame().await.unwrap().command, "RECEIPT");
        let addr = a.mqtt_addr().unwrap();
        let (client, mut ev) = AsyncClient::new(MqttOptions::new("tls-pub", addr.ip().to_string(), addr.port()), 10);
        tokio::spawn(async move { while ev.poll().await.is_ok() {} });
        // B's interest reaches A within a heartbeat or two; publish until the message crosses.
        let got = tokio::time::timeout(PATIENCE, async {
            loop {
                client.publish("secure", QoS::AtMostOnce, false, "over tls").await.unwrap();
                if let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(300), stomp.frame()).await {
                    return f;
                }
            }
        })
        .await
        .expect("a message crossed over rediss://");
        assert_eq!(got.body, b"over tls");
        a.shutdown().await;
        b.shutdown().await;
    });
}
