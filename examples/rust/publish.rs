//! A backend service publishing to Diglot over MQTT/TCP with rumqttc, at QoS 1.
//!
//!     cargo run -p diglot --example publish [HOST] [PORT]      # default 127.0.0.1 1883
//!
//! Browser clients subscribed to MQTT `sensors/#` or STOMP `/topic/sensors/#` receive it.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "127.0.0.1".into());
    let port = args.next().map_or(Ok(1883), |p| p.parse())?;

    let mut options = MqttOptions::new("example-rust-publisher", host, port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 10);
    client.publish("sensors/kitchen/temp", QoS::AtLeastOnce, false, r#"{"celsius":21.5,"from":"rust"}"#).await?;
    // The event loop does the I/O; the PUBACK means the broker has taken (and stored) it.
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = events.poll().await? {
            println!("published, acknowledged");
            break;
        }
    }
    client.disconnect().await?;
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
    Ok(())
}
