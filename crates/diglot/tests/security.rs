//! The secure defaults of the WebSocket edge: the Origin allow-list, the per-address
//! connection limit, and refusing anonymous access on non-loopback listeners.

mod common;

use common::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// The handshake status for a request with this `Origin` (none if `None`).
async fn status_with_origin(addr: std::net::SocketAddr, origin: Option<&str>) -> u16 {
    let mut req = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", HeaderValue::from_str(o).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

fn with_default_origins() -> diglot::Config {
    let mut c = diglot::Config::ephemeral();
    c.listeners.ws.allowed_origins = diglot::Config::default().listeners.ws.allowed_origins;
    c
}

#[tokio::test]
async fn origin_allow_list() {
    let b = broker_with(with_default_origins()).await;
    let addr = b.ws_addr().unwrap();
    assert_eq!(status_with_origin(addr, Some("http://localhost:3000")).await, 101);
    assert_eq!(status_with_origin(addr, Some("http://127.0.0.1:8000")).await, 101);
    assert_eq!(status_with_origin(addr, None).await, 101, "non-browser clients send no Origin");
    assert_eq!(status_with_origin(addr, Some("https://evil.example")).await, 403);
    assert_eq!(status_with_origin(addr, Some("http://localhost.evil.example")).await, 403);
    assert_eq!(status_with_origin(addr, Some("null")).await, 403);
    b.shutdown().await;

    let mut c = with_default_origins();
    c.listeners.ws.allowed_origins = vec!["https://app.example.com".into()];
    c.listeners.ws.allow_missing_origin = false;
    let b = broker_with(c).await;
    let addr = b.ws_addr().unwrap();
    assert_eq!(status_with_origin(addr, Some("https://app.example.com")).await, 101);
    assert_eq!(status_with_origin(addr, Some("http://localhost:3000")).await, 403);
    assert_eq!(status_with_origin(addr, None).await, 403);
    b.shutdown().await;
}

#[tokio::test]
async fn per_address_connection_limit() {
    let mut c = diglot::Config::ephemeral();
    c.limits.max_connections_per_ip = 3;
    let b = broker_with(c).await;
    let mut held = Vec::new();
    for i in 0..3 {
        let mut m = tcp_connect(b.mqtt_addr().unwrap()).await;
        m.send(&mqtt_connect_bytes(&format!("held{i}"), 30, true)).await.unwrap();
        assert_eq!(m.recv().await.unwrap(), vec![0x20, 2, 0, 0]);
        held.push(m);
    }
    // The fourth from the same address is turned away: a plain close on TCP, 503 on WebSocket.
    let mut fourth = tcp_connect(b.mqtt_addr().unwrap()).await;
    let _ = fourth.send(&mqtt_connect_bytes("fourth", 30, true)).await;
    assert!(fourth.read_to_close().await.is_empty());
    let Err(answer) = ws_connect(b.ws_addr().unwrap(), "/mqtt", &[]).await else { panic!("accepted over the limit") };
    assert_eq!(answer.status, 503);
    // Closing one frees a slot.
    drop(held.pop());
    let mut again = None;
    for _ in 0..200 {
        let mut m = tcp_connect(b.mqtt_addr().unwrap()).await;
        let _ = m.send(&mqtt_connect_bytes("again", 30, true)).await;
        if let Some(data) = m.recv().await {
            assert_eq!(data, vec![0x20, 2, 0, 0]);
            again = Some(m);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(again.is_some(), "a slot frees up once a connection closes");
    b.shutdown().await;
}

#[test]
fn anonymous_access_off_loopback_must_be_explicit() {
    let e = diglot::Config::parse("[listeners.mqtt]\naddr = \"0.0.0.0:1883\"\n", "b.toml").unwrap_err().to_string();
    assert!(e.contains("listeners.mqtt") && e.contains("allow_anonymous"), "{e}");
    let ok = diglot::Config::parse(
        "[server]\nallow_anonymous = true\n[listeners.mqtt]\naddr = \"0.0.0.0:1883\"\n",
        "b.toml",
    );
    assert!(ok.is_ok(), "{ok:?}");
    let e = diglot::Config::parse("[server]\nallow_anonymous = false\n", "b.toml").unwrap_err().to_string();
    assert!(e.contains("allow_anonymous"), "{e}");
    let e = diglot::Config::parse("[server]\nallow_anonymous = \"sometimes\"\n", "b.toml").unwrap_err().to_string();
    assert!(e.contains("b.toml:2"), "{e}");
}

/// A WebSocket client that stops answering is found by the server's own pings even with the
/// protocol's keep-alive off; one that answers (any client library does) stays connected.
#[tokio::test]
async fn server_pings_find_dead_websocket_peers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = diglot::Config::ephemeral();
    c.listeners.ws.ping_interval_secs = 2;
    let b = broker_with(c).await;

    // A silent peer: upgraded, MQTT CONNECT with keep-alive 0, then it never reads or answers.
    let mut s = tokio::net::TcpStream::connect(b.ws_addr().unwrap()).await.unwrap();
    s.write_all(
        b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let connect = mqtt_connect_bytes("silent", 0, true);
    let mut frame = vec![0x82, 0x80 | connect.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(&connect);
    s.write_all(&frame).await.unwrap();
    // Read (and ignore) everything until the server gives up on us and closes.
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, s.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the server closed the silent connection");

    // A live client that keeps reading answers the pings and stays.
    let mut live = ws_connect(b.ws_addr().unwrap(), "/mqtt", &[]).await.ok().unwrap();
    live.send(&mqtt_connect_bytes("live", 0, true)).await.unwrap();
    assert_eq!(live.recv().await.unwrap(), vec![0x20, 2, 0, 0]);
    let Conn::Ws { ws, .. } = &mut live else { unreachable!() };
    use futures::StreamExt;
    // tungstenite answers pings while it reads; read through a few ping intervals.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async { while ws.next().await.is_some() {} }).await;
    live.send(&[0xC0, 0]).await.unwrap();
    assert_eq!(live.recv().await.unwrap(), vec![0xD0, 0], "still connected: PINGRESP");
    b.shutdown().await;
}

/// A publisher over `limits.max_publish_rate` is slowed down, not cut off: every message
/// arrives, and the slowdowns are counted (`$SYS/broker/publish/rate limited`).
#[tokio::test]
async fn publish_rate_limit_slows_instead_of_dropping() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut c = diglot::Config::ephemeral();
    c.limits.max_publish_rate = 20;
    c.server.sys_interval_secs = 1;
    let b = broker_with(c).await;
    let addr = b.mqtt_addr().unwrap();
    let (sub, mut sub_ev) = AsyncClient::new(MqttOptions::new("rl-sub", "127.0.0.1", addr.port()), 100);
    sub.subscribe("rl/#", QoS::AtLeastOnce).await.unwrap();
    sub.subscribe("$SYS/broker/publish/#", QoS::AtMostOnce).await.unwrap();
    let mut subacks = 0;
    until(&mut sub_ev, |e| {
        subacks += matches!(e, Event::Incoming(Packet::SubAck(_))) as usize;
        (subacks == 2).then_some(())
    })
    .await;
    let (publ, mut pub_ev) = AsyncClient::new(MqttOptions::new("rl-pub", "127.0.0.1", addr.port()), 100);
    tokio::spawn(async move {
        for i in 0..60 {
            publ.publish("rl/x", QoS::AtLeastOnce, false, i.to_string()).await.unwrap();
        }
        while pub_ev.poll().await.is_ok() {}
    });
    let (mut got, mut limited) = (Vec::new(), 0u64);
    until(&mut sub_ev, |e| {
        if let Event::Incoming(Packet::Publish(p)) = e {
            if p.topic == "rl/x" {
                got.push(String::from_utf8_lossy(&p.payload).parse::<u32>().unwrap());
            } else if p.topic.ends_with("rate limited") {
                limited = String::from_utf8_lossy(&p.payload).parse().unwrap();
            }
        }
        (got.len() == 60 && limited > 0).then_some(())
    })
    .await;
    assert_eq!(got, (0..60).collect::<Vec<_>>(), "all delivered, in order");
    b.shutdown().await;
}
