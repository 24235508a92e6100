//! A Diglot broker inside your own program, for tests of your services: start it on port 0,
//! point the service at its address, check what arrives, shut it down.
//!
//!     cargo run -p diglot --example embedded
//!
//! `Config::ephemeral()` puts every listener on 127.0.0.1 port 0 and the store in a new temp
//! directory; change any field of the config before `Broker::start` (it is the same `Config`
//! that `broker.toml` deserializes into).

use std::time::Duration;

use diglot::{Broker, Config};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::ephemeral();
    let broker = Broker::start(&config).await?;
    let addr = broker.mqtt_addr().expect("the MQTT listener is on by default");
    println!("broker listening: MQTT {addr}, WebSocket {:?}", broker.ws_addr());

    // The "service under test": here a rumqttc client that subscribes, then publishes.
    let (client, mut events) =
        AsyncClient::new(MqttOptions::new("service-under-test", addr.ip().to_string(), addr.port()), 10);
    client.subscribe("orders/#", QoS::AtLeastOnce).await?;
    client.publish("orders/42", QoS::AtLeastOnce, false, "created").await?;
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = events.poll().await? {
                return Ok::<_, rumqttc::ConnectionError>((p.topic, p.payload));
            }
        }
    })
    .await??;
    println!("received {} {:?}", received.0, String::from_utf8_lossy(&received.1));
    assert_eq!((received.0.as_str(), &received.1[..]), ("orders/42", &b"created"[..]));

    client.disconnect().await?;
    broker.shutdown().await; // clients get their goodbye; the store is flushed and closed
    std::fs::remove_dir_all(&config.store.path)?;
    Ok(())
}
