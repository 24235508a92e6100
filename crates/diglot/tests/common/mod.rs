//! Shared helpers for the end-to-end tests: a real broker on port 0 and independent clients
//! over real sockets (tokio-tungstenite for WebSocket, tokio's TcpStream for raw TCP).
#![allow(dead_code)] // each test binary uses a different subset of these helpers

pub mod raw_mqtt;
pub mod users;

use std::net::SocketAddr;
use std::time::Duration;

use diglot::{Broker, Config};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous bound for "eventually": tests never assert on timing, only that a thing happens.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A broker on port 0 whose temporary data directory is removed when it is dropped.
pub struct TestBroker {
    broker: Option<Broker>,
    pub config: Config,
    keep_data: bool,
}

impl std::ops::Deref for TestBroker {
    type Target = Broker;
    fn deref(&self) -> &Broker {
        self.broker.as_ref().expect("running")
    }
}

impl TestBroker {
    /// Stops the broker (clients get their goodbye) and removes its data directory.
    pub async fn shutdown(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
    }

    /// Stops the broker but keeps its data directory, for a restart with [`restart`].
    pub async fn stop_keeping_data(mut self) -> Config {
        self.keep_data = true;
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
        self.config.clone()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.config.store.path);
        }
    }
}

/// Starts a broker with every listener on 127.0.0.1 port 0.
pub async fn broker() -> TestBroker {
    broker_with(Config::ephemeral()).await
}

/// Starts a broker with a tweaked ephemeral config.
pub async fn broker_with(config: Config) -> TestBroker {
    let broker = Broker::start(&config).await.expect("broker starts");
    TestBroker { broker: Some(broker), config, keep_data: false }
}

/// A client byte stream: raw TCP or a WebSocket (text or binary messages).
pub enum Conn {
    Tcp(TcpStream),
    Ws { ws: Box<WebSocketStream<MaybeTlsStream<TcpStream>>>, text: bool, protocol: Option<String> },
}

/// What the WebSocket handshake answered.
pub struct WsAnswer {
    pub status: u16,
    pub protocol: Option<String>,
    pub body: String,
}

/// Opens a WebSocket to `path`, offering `protocols` (none if empty).
pub async fn ws_connect(addr: SocketAddr, path: &str, protocols: &[&str]) -> Result<Conn, WsAnswer> {
    ws_connect_with(addr, path, protocols, &[]).await
}

/// Opens a WebSocket to `path` (which may carry a query string) with extra request headers
/// (`Authorization`, `Cookie`, …), offering `protocols` (none if empty). A refused handshake
/// is the server's HTTP answer, as with [`ws_connect`].
pub async fn ws_connect_with(
    addr: SocketAddr,
    path: &str,
    protocols: &[&str],
    headers: &[(&str, &str)],
) -> Result<Conn, WsAnswer> {
    use tokio_tungstenite::tungstenite::http::HeaderName;
    let mut req = format!("ws://{addr}{path}").into_client_request().expect("request");
    if !protocols.is_empty() {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(&protocols.join(", ")).expect("header"));
    }
    for (name, value) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            let protocol = resp.headers().get("Sec-WebSocket-Protocol").map(|v| v.to_str().expect("ascii").to_string());
            let route = path.split('?').next().unwrap_or(path);
            let text = protocol.as_deref().is_some_and(|p| p.contains("stomp")) || route.contains("stomp");
            Ok(Conn::Ws { ws: Box::new(ws), text, protocol })
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err(WsAnswer { status, protocol: None, body })
        }
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Opens a raw TCP connection.
pub async fn tcp_connect(addr: SocketAddr) -> Conn {
    Conn::Tcp(TcpStream::connect(addr).await.expect("tcp connect"))
}

impl Conn {
    /// The subprotocol the server echoed.
    pub fn protocol(&self) -> Option<&str> {
        match self {
            Conn::Ws { protocol, .. } => protocol.as_deref(),
            Conn::Tcp(_) => None,
        }
    }

    /// Sends bytes (one WebSocket message).
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(bytes).await,
            Conn::Ws { ws, text, .. } => {
                let msg = if *text {
                    WsMessage::Text(String::from_utf8(bytes.to_vec()).expect("utf-8").into())
                } else {
                    WsMessage::Binary(bytes.to_vec().into())
                };
                ws.send(msg).await.map_err(std::io::Error::other)
            }
        }
    }

    /// Sends raw bytes as a binary WebSocket message even on a text connection.
    pub async fn send_binary(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(bytes).await,
            Conn::Ws { ws, .. } => {
                ws.send(WsMessage::Binary(bytes.to_vec().into())).await.map_err(std::io::Error::other)
            }
        }
    }

    /// The next chunk of bytes, or `None` once the server closed the connection. Panics if
    /// nothing happens within [`PATIENCE`].
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        tokio::time::timeout(PATIENCE, self.recv_inner()).await.expect("server answered within the test's patience")
    }

    async fn recv_inner(&mut self) -> Option<Vec<u8>> {
        match self {
            Conn::Tcp(s) => {
                let mut buf = vec![0u8; 64 * 1024];
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some(buf)
                    }
                }
            }
            Conn::Ws { ws, .. } => loop {
                match ws.next().await {
                    Some(Ok(WsMessage::Binary(b))) => return Some(b.to_vec()),
                    Some(Ok(WsMessage::Text(t))) => return Some(t.as_bytes().to_vec()),
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => continue,
                }
            },
        }
    }

    /// The WebSocket close code the server sent, reading until the close arrives.
    pub async fn close_code(&mut self) -> Option<u16> {
        let Conn::Ws { ws, .. } = self else { return None };
        tokio::time::timeout(PATIENCE, async {
            loop {
                match ws.next().await {
                    Some(Ok(WsMessage::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    None | Some(Err(_)) => return None,
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await
        .expect("close within patience")
    }

    /// Reads until the server closes the connection, returning everything it sent.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = self.recv().await {
            all.extend_from_slice(&chunk);
        }
        all
    }
}

/// A STOMP frame as the test client parses it (independently of the broker's codec).
#[derive(Debug, Clone)]
pub struct StompFrame {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl StompFrame {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A minimal STOMP client over a [`Conn`].
pub struct Stomp {
    pub conn: Conn,
    buf: Vec<u8>,
}

impl Stomp {
    pub fn new(conn: Conn) -> Stomp {
        Stomp { conn, buf: Vec::new() }
    }

    /// Sends a frame built from a command, headers and body.
    pub async fn send(&mut self, command: &str, headers: &[(&str, &str)], body: &str) {
        let mut f = format!("{command}\n");
        for (k, v) in headers {
            f.push_str(&format!("{k}:{v}\n"));
        }
        f.push('\n');
        f.push_str(body);
        f.push('\0');
        self.conn.send(f.as_bytes()).await.expect("send");
    }

    /// CONNECT with `accept-version` and wait for CONNECTED.
    pub async fn connect(&mut self, versions: &str) -> StompFrame {
        self.send("CONNECT", &[("accept-version", versions), ("host", "localhost"), ("heart-beat", "0,0")], "").await;
        let f = self.frame().await.expect("CONNECTED");
        assert_eq!(f.command, "CONNECTED", "{f:?}");
        f
    }

    /// The next frame (heart-beat EOLs skipped), or `None` if the server closed.
    pub async fn frame(&mut self) -> Option<StompFrame> {
        loop {
            while matches!(self.buf.first(), Some(b'\n') | Some(b'\r')) {
                self.buf.remove(0);
            }
            if let Some(f) = self.parse() {
                return Some(f);
            }
            let chunk = self.conn.recv().await?;
            self.buf.extend_from_slice(&chunk);
        }
    }

    fn parse(&mut self) -> Option<StompFrame> {
        let head_end = self.buf.windows(2).position(|w| w == b"\n\n")?;
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("utf-8 headers");
        let mut lines = head.lines();
        let command = lines.next()?.to_string();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').expect("header colon");
                (k.to_string(), v.to_string())
            })
            .collect();
        let body_start = head_end + 2;
        let len = headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse::<usize>().expect("len"));
        let body_end = match len {
            Some(n) => {
                if self.buf.len() < body_start + n + 1 {
                    return None;
                }
                body_start + n
            }
            None => body_start + self.buf[body_start..].iter().position(|&b| b == 0)?,
        };
        let body = self.buf[body_start..body_end].to_vec();
        self.buf.drain(..=body_end);
        Some(StompFrame { command, headers, body })
    }
}

/// Encodes an MQTT 3.1.1 CONNECT by hand (for tests that need exact bytes).
pub fn mqtt_connect_bytes(client_id: &str, keep_alive: u16, clean: bool) -> Vec<u8> {
    let mut var = vec![0, 4, b'M', b'Q', b'T', b'T', 4, if clean { 0x02 } else { 0 }];
    var.extend_from_slice(&keep_alive.to_be_bytes());
    var.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    var.extend_from_slice(client_id.as_bytes());
    let mut p = vec![0x10, var.len() as u8];
    p.extend_from_slice(&var);
    p
}

/// Splits a byte stream into MQTT packets (fixed header type nibble, whole packet bytes).
pub fn mqtt_packets(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut packets = Vec::new();
    while bytes.len() >= 2 {
        let (mut len, mut mult, mut i) = (0usize, 1usize, 1usize);
        loop {
            let Some(&b) = bytes.get(i) else { return packets };
            len += (b & 0x7f) as usize * mult;
            mult *= 128;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        if bytes.len() < i + len {
            break;
        }
        packets.push((bytes[0] >> 4, bytes[..i + len].to_vec()));
        bytes = &bytes[i + len..];
    }
    packets
}

/// The real `diglot` binary running on port 0 with its config and data under `dir`.
pub struct Daemon {
    pub child: std::process::Child,
    pub ws: SocketAddr,
    pub mqtt: SocketAddr,
    pub stomp: SocketAddr,
    /// Every listener's address by name (`ws`, `mqtts`, …).
    pub addrs: std::collections::HashMap<String, SocketAddr>,
    /// Kills the daemon if the test ends (or fails) without stopping it.
    pub guard: KillOnDrop,
    /// The daemon's log lines after its start, as it writes them ([`Daemon::wait_for_log`]).
    pub log: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
}

/// Sends SIGKILL to a daemon that is still running when the guard drops, so that a failing
/// test never leaves a broker behind.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.0)).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("diglot") {
            let _ = std::process::Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
}

impl Daemon {
    /// Starts the daemon (config `dir/broker.toml` plus `extra` TOML, store in `dir/data`) and
    /// reads its listener addresses from its log; its output keeps being drained.
    pub fn start_with(dir: &std::path::Path, extra: &str) -> Daemon {
        use std::io::{BufRead, BufReader};
        let config = dir.join("broker.toml");
        let store = dir.join("data");
        std::fs::write(
            &config,
            format!(
                "[listeners.ws]\naddr = \"127.0.0.1:0\"\n[listeners.mqtt]\naddr = \"127.0.0.1:0\"\n\
                 [listeners.stomp]\naddr = \"127.0.0.1:0\"\n[log]\nlevel = \"info\"\n\
                 [store]\npath = {:?}\n{extra}",
                store.display().to_string()
            ),
        )
        .unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_diglot"))
            .args(["--config", config.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addrs = std::collections::HashMap::new();
        loop {
            let line = lines.next().expect("daemon logs its listeners").unwrap();
            if line.contains("diglot started") {
                break;
            }
            if !line.contains("listening") {
                continue;
            }
            let addr: SocketAddr = line.rsplit("addr=").next().unwrap().trim().parse().unwrap();
            let name = line.split("listener=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("");
            addrs.insert(name.trim_start_matches("listeners.").to_string(), addr);
        }
        // Drained whether or not anyone reads them (a full pipe would stop the daemon).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.by_ref().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let guard = KillOnDrop(child.id());
        let get = |k: &str| *addrs.get(k).unwrap_or_else(|| panic!("listener {k} logged"));
        let log = std::sync::Mutex::new(rx);
        Daemon { child, ws: get("ws"), mqtt: get("mqtt"), stomp: get("stomp"), addrs: addrs.clone(), guard, log }
    }

    /// Waits (at most [`PATIENCE`]) for a log line that holds every one of `needles`.
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
        let log = self.log.lock().unwrap();
        let until = std::time::Instant::now() + PATIENCE;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match log.recv_timeout(left) {
                Ok(line) if needles.iter().all(|n| line.contains(n)) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needles:?} within the test's patience"),
            }
        }
    }

    /// [`Daemon::start_with`] with nothing extra.
    pub fn start(dir: &std::path::Path) -> Daemon {
        Daemon::start_with(dir, "")
    }
}

/// Sends a signal (`-TERM`, `-INT`, `-KILL`) to a child process.
pub fn signal(child: &std::process::Child, sig: &str) {
    let status = std::process::Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Waits for a child to exit (failing the test after a generous bound).
pub fn wait_exit(mut child: std::process::Child) -> std::process::ExitStatus {
    for _ in 0..400 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("diglot did not exit after the signal");
}

/// Polls a rumqttc (v4) event loop until `want` returns a value, failing on connection errors
/// or when nothing fitting happens within [`PATIENCE`].
pub async fn until<T>(ev: &mut rumqttc::EventLoop, mut want: impl FnMut(&rumqttc::Event) -> Option<T>) -> T {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let e = ev.poll().await.expect("event loop");
            if let Some(t) = want(&e) {
                return t;
            }
        }
    })
    .await
    .expect("expected MQTT event within patience")
}

/// The MQTT 5 form of [`until`], for a rumqttc v5 event loop.
pub async fn until5<T>(ev: &mut rumqttc::v5::EventLoop, mut want: impl FnMut(&rumqttc::v5::Event) -> Option<T>) -> T {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let e = ev.poll().await.expect("MQTT 5 event loop");
            if let Some(t) = want(&e) {
                return t;
            }
        }
    })
    .await
    .expect("expected MQTT 5 event within patience")
}

/// A raw HTTP/1.1 GET (with `Connection: close`): the status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")).await
}

/// A raw HTTP/1.1 POST of a JSON `body` (with `Connection: close`, no credentials): the status
/// and body.
pub async fn http_post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let len = body.len();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    http_request(addr, head + body).await
}

async fn http_request(addr: SocketAddr, req: String) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("tcp connect");
    s.write_all(req.as_bytes()).await.expect("send request");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut raw)).await.expect("answer in time").expect("read answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// `GET /metrics`, parsed with a Prometheus text-format parser.
pub async fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let lines: Vec<std::io::Result<String>> = body.lines().map(|l| Ok(l.to_string())).collect();
    prometheus_parse::Scrape::parse(lines.into_iter()).expect("valid Prometheus text format")
}

/// The value of the sample `name` whose labels include all of `labels` (0 when absent, as
/// Prometheus treats a counter that was never incremented).
pub fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// The first packet from an MQTT 5 client's event loop that `want` picks out, within
/// [`PATIENCE`].
pub async fn mqtt5_until<T>(
    ev: &mut rumqttc::v5::EventLoop,
    mut want: impl FnMut(&rumqttc::v5::mqttbytes::v5::Packet) -> Option<T>,
) -> T {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let rumqttc::v5::Event::Incoming(p) = ev.poll().await.expect("mqtt event loop") {
                if let Some(t) = want(&p) {
                    return t;
                }
            }
        }
    })
    .await
    .expect("expected an MQTT packet within patience")
}
