//! TLS listeners (`wss`, `mqtts`, `stomps`) with a test CA made in the test, client
//! certificates, and a certificate reload on SIGHUP.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA, and a server certificate for 127.0.0.1/localhost signed by it, written to `dir`.
struct Pki {
    ca_pem: String,
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("diglot test CA {name}"));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki { ca_pem: cert.pem(), ca: Issuer::new(params, key) }
    }

    /// Writes `cert.pem` and `key.pem` for `names`, signed by this CA.
    fn issue(&self, dir: &Path, prefix: &str, names: &[&str]) -> (String, String) {
        let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = (dir.join(format!("{prefix}cert.pem")), dir.join(format!("{prefix}key.pem")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    }

    fn client_config(&self, client_cert: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client_cert {
            Some((cert, key)) => {
                let certs = CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
                builder.with_client_auth_cert(certs, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

fn tls_config(dir: &Path, pki: &Pki, client_ca: Option<&str>) -> diglot::Config {
    let (cert, key) = pki.issue(dir, "server-", &["localhost", "127.0.0.1"]);
    let mut c = diglot::Config::ephemeral();
    for (enabled, cert_file, key_file, ca, require) in [
        (
            &mut c.listeners.wss.enabled,
            &mut c.listeners.wss.cert_file,
            &mut c.listeners.wss.key_file,
            &mut c.listeners.wss.client_ca_file,
            &mut c.listeners.wss.require_client_cert,
        ),
        (
            &mut c.listeners.mqtts.enabled,
            &mut c.listeners.mqtts.cert_file,
            &mut c.listeners.mqtts.key_file,
            &mut c.listeners.mqtts.client_ca_file,
            &mut c.listeners.mqtts.require_client_cert,
        ),
        (
            &mut c.listeners.stomps.enabled,
            &mut c.listeners.stomps.cert_file,
            &mut c.listeners.stomps.key_file,
            &mut c.listeners.stomps.client_ca_file,
            &mut c.listeners.stomps.require_client_cert,
        ),
    ] {
        *enabled = true;
        *cert_file = cert.clone();
        *key_file = key.clone();
        if let Some(file) = client_ca {
            *ca = file.to_string();
            *require = true;
        }
    }
    c
}

#[tokio::test]
async fn wss_mqtts_and_stomps_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("a");
    let b = broker_with(tls_config(dir.path(), &pki, None)).await;
    let client = pki.client_config(None);

    // MQTT over TLS.
    let mut m = tls_connect(b.addr("mqtts").unwrap(), client.clone()).await.unwrap();
    m.write_all(&mqtt_connect_bytes("tls-mqtt", 30, true)).await.unwrap();
    let mut connack = [0u8; 4];
    m.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);

    // STOMP over TLS.
    let mut s = tls_connect(b.addr("stomps").unwrap(), client.clone()).await.unwrap();
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0").await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"CONNECTED\n"), "{}", String::from_utf8_lossy(&buf[..n]));

    // MQTT over WebSocket over TLS, subprotocol negotiation as on ws.
    let stream = tls_connect(b.addr("wss").unwrap(), client).await.unwrap();
    let addr = b.addr("wss").unwrap();
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "wss://localhost:{}/ws",
        addr.port()
    ))
    .unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    assert_eq!(resp.headers().get("Sec-WebSocket-Protocol").unwrap(), "mqtt");
    use futures::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(mqtt_connect_bytes("tls-ws", 30, true).into()))
        .await
        .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(reply.into_data().to_vec(), vec![0x20, 2, 0, 0]);

    // The admin API tells the TLS connections from a plain one.
    let _plain = common::raw_mqtt::Mqtt::connected311(b.mqtt_addr().unwrap(), "plain-mqtt").await;
    let (status, body) = http_get(b.ws_addr().unwrap(), "/api/v1/connections").await;
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut seen: Vec<(String, String, bool)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("-").to_string();
            (s("protocol"), s("transport"), c["tls"].as_bool().expect("a tls field"))
        })
        .collect();
    seen.sort();
    let want = [
        ("mqtt/3.1.1", "tcp", false),
        ("mqtt/3.1.1", "tcp", true),
        ("mqtt/3.1.1", "ws", true),
        ("stomp/1.2", "tcp", true),
    ];
    assert_eq!(seen, want.map(|(p, t, tls)| (p.to_string(), t.to_string(), tls)));
    b.shutdown().await;
}

#[tokio::test]
async fn untrusted_servers_and_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("server");
    let clients = Pki::new("clients");
    let ca_file = dir.path().join("clients-ca.pem");
    std::fs::write(&ca_file, &clients.ca_pem).unwrap();
    let b = broker_with(tls_config(dir.path(), &pki, Some(ca_file.to_str().unwrap()))).await;

    // A client that does not trust the server's CA refuses the handshake.
    let stranger = Pki::new("stranger");
    assert!(tls_connect(b.addr("mqtts").unwrap(), stranger.client_config(None)).await.is_err());

    // The server requires a client certificate from the clients' CA.
    let no_cert = tls_connect(b.addr("mqtts").unwrap(), pki.client_config(None)).await;
    let refused = match no_cert {
        Err(_) => true,
        // TLS 1.3: the client learns of the refusal on its first read.
        Ok(mut s) => {
            let _ = s.write_all(&mqtt_connect_bytes("nocert", 30, true)).await;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.is_err()
        }
    };
    assert!(refused, "a client without a certificate is refused");
    let (cc, ck) = stranger.issue(dir.path(), "untrusted-", &["client"]);
    let bad = tls_connect(b.addr("mqtts").unwrap(), pki.client_config(Some((&cc, &ck)))).await;
    let refused = match bad {
        Err(_) => true,
        Ok(mut s) => {
            let _ = s.write_all(&mqtt_connect_bytes("badcert", 30, true)).await;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.is_err()
        }
    };
    assert!(refused, "a certificate from an untrusted CA is refused");

    let (cc, ck) = clients.issue(dir.path(), "client-", &["client"]);
    let mut ok = tls_connect(b.addr("mqtts").unwrap(), pki.client_config(Some((&cc, &ck)))).await.unwrap();
    ok.write_all(&mqtt_connect_bytes("goodcert", 30, true)).await.unwrap();
    let mut connack = [0u8; 4];
    ok.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    b.shutdown().await;
}

#[test]
fn a_missing_certificate_is_a_clear_start_error() {
    let mut c = diglot::Config::ephemeral();
    c.listeners.mqtts.enabled = true;
    let e = diglot::Config::parse(&c.to_toml(), "b.toml").unwrap_err().to_string();
    assert!(e.contains("listeners.mqtts") && e.contains("cert_file"), "{e}");
    c.listeners.mqtts.cert_file = "/nonexistent/cert.pem".into();
    c.listeners.mqtts.key_file = "/nonexistent/key.pem".into();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt.block_on(diglot::Broker::start(&c)).err().expect("refused").to_string();
    assert!(e.contains("listeners.mqtts") && e.contains("/nonexistent/cert.pem"), "{e}");
    let _ = std::fs::remove_dir_all(&c.store.path);
}

/// SIGHUP loads a new certificate for new connections; open connections stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = Pki::new("first");
    let (cert, key) = first.issue(dir.path(), "server-", &["localhost", "127.0.0.1"]);
    let extra = format!(
        "[listeners.mqtts]\nenabled = true\naddr = \"127.0.0.1:0\"\ncert_file = {cert:?}\nkey_file = {key:?}\n"
    );
    let daemon = Daemon::start_with(dir.path(), &extra);
    let mqtts = daemon.addrs["mqtts"];
    let mut open = tls_connect(mqtts, first.client_config(None)).await.unwrap();
    open.write_all(&mqtt_connect_bytes("before", 30, true)).await.unwrap();
    let mut connack = [0u8; 4];
    open.read_exact(&mut connack).await.unwrap();

    let second = Pki::new("second");
    second.issue(dir.path(), "server-", &["localhost", "127.0.0.1"]);
    signal(&daemon.child, "-HUP");
    // Eventually new handshakes present the second certificate.
    let mut switched = false;
    for _ in 0..200 {
        if tls_connect(mqtts, second.client_config(None)).await.is_ok() {
            switched = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(switched, "the reloaded certificate is served");
    // The connection made before the reload still works.
    open.write_all(&[0xC0, 0]).await.unwrap();
    let mut pingresp = [0u8; 2];
    open.read_exact(&mut pingresp).await.unwrap();
    assert_eq!(pingresp, [0xD0, 0]);
    signal(&daemon.child, "-TERM");
    let Daemon { child, guard: _guard, .. } = daemon;
    assert!(wait_exit(child).success());
}
