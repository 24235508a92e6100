//! The WebSocket subprotocol negotiation matrix against the real broker.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn expect_accept(addr: std::net::SocketAddr, path: &str, offer: &[&str], echoed: Option<&str>) -> Conn {
    let conn = match ws_connect(addr, path, offer).await {
        Ok(c) => c,
        Err(a) => panic!("{offer:?} on {path} refused with {}: {}", a.status, a.body),
    };
    assert_eq!(conn.protocol(), echoed, "offer {offer:?} on {path}");
    conn
}

/// MQTT CONNECT → CONNACK accepted proves the connection reached the MQTT adapter.
async fn assert_speaks_mqtt(mut conn: Conn) {
    conn.send(&mqtt_connect_bytes("neg", 30, true)).await.unwrap();
    let connack = conn.recv().await.expect("CONNACK");
    assert_eq!(connack, vec![0x20, 0x02, 0x00, 0x00]);
}

/// STOMP CONNECT → CONNECTED with the expected version.
async fn assert_speaks_stomp(conn: Conn, version: &str) {
    let mut s = Stomp::new(conn);
    let f = s.connect("1.0,1.1,1.2").await;
    assert_eq!(f.header("version"), Some(version), "{f:?}");
}

#[tokio::test]
async fn mqtt_subprotocols() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    assert_speaks_mqtt(expect_accept(addr, "/ws", &["mqtt"], Some("mqtt")).await).await;
    assert_speaks_mqtt(expect_accept(addr, "/ws", &["mqttv3.1"], Some("mqttv3.1")).await).await;
    b.shutdown().await;
}

#[tokio::test]
async fn stomp_subprotocols_echo_the_highest_offered() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    assert_speaks_stomp(expect_accept(addr, "/ws", &["v12.stomp"], Some("v12.stomp")).await, "1.2").await;
    assert_speaks_stomp(expect_accept(addr, "/ws", &["v11.stomp"], Some("v11.stomp")).await, "1.1").await;
    assert_speaks_stomp(expect_accept(addr, "/ws", &["v10.stomp"], Some("v10.stomp")).await, "1.0").await;
    assert_speaks_stomp(expect_accept(addr, "/ws", &["v10.stomp", "v12.stomp"], Some("v12.stomp")).await, "1.2").await;
    b.shutdown().await;
}

#[tokio::test]
async fn unknown_subprotocol_is_400_with_the_list() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    for path in ["/ws", "/mqtt", "/stomp"] {
        let Err(answer) = ws_connect(addr, path, &["chat"]).await else { panic!("chat accepted on {path}") };
        assert_eq!(answer.status, 400);
        for name in ["mqtt", "v12.stomp", "v11.stomp", "v10.stomp"] {
            assert!(answer.body.contains(name), "400 body lists {name}: {}", answer.body);
        }
    }
    let Err(answer) = ws_connect(addr, "/ws", &[]).await else { panic!("no offer accepted on /ws") };
    assert_eq!(answer.status, 400);
    b.shutdown().await;
}

#[tokio::test]
async fn path_defaults_apply_when_nothing_is_offered() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    assert_speaks_mqtt(expect_accept(addr, "/mqtt", &[], None).await).await;
    assert_speaks_stomp(expect_accept(addr, "/stomp", &[], None).await, "1.2").await;
    // An offer still wins over the path's default.
    assert_speaks_stomp(expect_accept(addr, "/mqtt", &["v11.stomp"], Some("v11.stomp")).await, "1.1").await;
    b.shutdown().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    resp
}

#[tokio::test]
async fn healthz_and_plain_http() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    let resp = http_get(addr, "/healthz").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok\n"), "{resp}");
    assert!(http_get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    assert!(http_get(addr, "/ws").await.starts_with("HTTP/1.1 426"));
    b.shutdown().await;
}

#[tokio::test]
async fn echo_path_is_off_by_default_and_echoes_when_set() {
    let b = broker().await;
    let Err(answer) = ws_connect(b.ws_addr().unwrap(), "/echo", &[]).await else { panic!("echo on by default") };
    assert_eq!(answer.status, 404);
    b.shutdown().await;

    let mut config = diglot::Config::ephemeral();
    config.listeners.ws.echo_path = "/echo".into();
    let b = broker_with(config).await;
    let mut c = ws_connect(b.ws_addr().unwrap(), "/echo", &[]).await.ok().unwrap();
    c.send_binary(b"\x00\x01binary").await.unwrap();
    assert_eq!(c.recv().await.unwrap(), b"\x00\x01binary");
    b.shutdown().await;
}
