//! STOMP over WebSocket and TCP with hand-written frames.

mod common;

use common::*;

async fn stomp_over(b: &diglot::Broker, ws: bool) -> Stomp {
    let conn = if ws {
        ws_connect(b.ws_addr().unwrap(), "/ws", &["v12.stomp"]).await.ok().expect("ws")
    } else {
        tcp_connect(b.stomp_addr().unwrap()).await
    };
    Stomp::new(conn)
}

async fn pub_sub(ws: bool) {
    let b = broker().await;
    let mut sub = stomp_over(&b, ws).await;
    let connected = sub.connect("1.2").await;
    assert_eq!(connected.header("version"), Some("1.2"));
    assert!(connected.header("server").is_some_and(|s| s.starts_with("diglot")));
    sub.send("SUBSCRIBE", &[("id", "s1"), ("destination", "/topic/chat/+"), ("receipt", "r-sub")], "").await;
    let r = sub.frame().await.unwrap();
    assert_eq!((r.command.as_str(), r.header("receipt-id")), ("RECEIPT", Some("r-sub")));

    let mut publ = stomp_over(&b, ws).await;
    publ.connect("1.2").await;
    publ.send(
        "SEND",
        &[("destination", "/topic/chat/room1"), ("content-type", "text/plain"), ("receipt", "r1")],
        "hello",
    )
    .await;
    let r = publ.frame().await.unwrap();
    assert_eq!((r.command.as_str(), r.header("receipt-id")), ("RECEIPT", Some("r1")));

    let m = sub.frame().await.unwrap();
    assert_eq!(m.command, "MESSAGE");
    assert_eq!(m.header("subscription"), Some("s1"));
    assert_eq!(m.header("destination"), Some("/topic/chat/room1"));
    assert!(m.header("message-id").is_some());
    assert_eq!(m.header("content-length"), Some("5"));
    assert_eq!(m.header("content-type"), Some("text/plain"));
    assert_eq!(m.body, b"hello");

    // A body with a NUL byte needs content-length and survives.
    publ.conn.send_binary(b"SEND\ndestination:/topic/chat/bin\ncontent-length:3\n\na\0b\0").await.unwrap();
    let m = sub.frame().await.unwrap();
    assert_eq!(m.body, b"a\0b");

    sub.send("UNSUBSCRIBE", &[("id", "s1")], "").await;
    sub.send("DISCONNECT", &[("receipt", "bye")], "").await;
    let r = sub.frame().await.unwrap();
    assert_eq!((r.command.as_str(), r.header("receipt-id")), ("RECEIPT", Some("bye")));
    assert!(sub.frame().await.is_none(), "closed after DISCONNECT");
    b.shutdown().await;
}

#[tokio::test]
async fn tcp_connect_subscribe_send_receive_receipt() {
    pub_sub(false).await;
}

#[tokio::test]
async fn websocket_connect_subscribe_send_receive_receipt() {
    pub_sub(true).await;
}

#[tokio::test]
async fn garbage_gets_error_with_message_then_close() {
    let b = broker().await;
    for ws in [false, true] {
        let mut s = stomp_over(&b, ws).await;
        s.connect("1.2").await;
        s.send("FROBNICATE", &[("x", "y")], "").await;
        let e = s.frame().await.expect("ERROR frame");
        assert_eq!(e.command, "ERROR");
        assert!(e.header("message").is_some_and(|m| !m.is_empty()), "{e:?}");
        assert!(s.frame().await.is_none(), "closed after ERROR");

        // A frame before CONNECT is an error too.
        let mut s = stomp_over(&b, ws).await;
        s.send("SEND", &[("destination", "/topic/x")], "early").await;
        let e = s.frame().await.expect("ERROR frame");
        assert_eq!(e.command, "ERROR");
        assert!(s.frame().await.is_none());
    }
    b.shutdown().await;
}

#[tokio::test]
async fn version_negotiation_over_tcp() {
    let b = broker().await;
    for (offer, want) in [("1.0", "1.0"), ("1.1", "1.1"), ("1.0,1.1,1.2", "1.2"), ("1.0,1.1", "1.1")] {
        let mut s = stomp_over(&b, false).await;
        let f = s.connect(offer).await;
        assert_eq!(f.header("version"), Some(want), "accept-version {offer}");
    }
    let mut s = stomp_over(&b, false).await;
    s.send("CONNECT", &[("accept-version", "2.0"), ("host", "x")], "").await;
    let e = s.frame().await.unwrap();
    assert_eq!(e.command, "ERROR");
    assert!(e.header("version").is_some_and(|v| v.contains("1.2")), "{e:?}");
    b.shutdown().await;
}

/// `expires` passes from a STOMP publisher to a STOMP subscriber unchanged, to the millisecond.
#[tokio::test]
async fn expires_is_passed_on_exactly() {
    let b = broker().await;
    let mut sub = stomp_over(&b, false).await;
    sub.connect("1.2").await;
    sub.send("SUBSCRIBE", &[("id", "e"), ("destination", "/topic/exp"), ("receipt", "r")], "").await;
    assert_eq!(sub.frame().await.unwrap().command, "RECEIPT");
    let mut publ = stomp_over(&b, false).await;
    publ.connect("1.2").await;
    let later =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 + 3_600_123;
    publ.send("SEND", &[("destination", "/topic/exp"), ("expires", &later.to_string())], "soon").await;
    let m = sub.frame().await.unwrap();
    assert_eq!(m.header("expires"), Some(later.to_string().as_str()));
    b.shutdown().await;
}
