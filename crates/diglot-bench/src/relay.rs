//! `diglot-bench relay`: the thinnest WebSocket relay that can stand in for a broker, as the
//! ceiling of every load report. Each connection joins the room named by its request path;
//! every message it sends goes to every other connection of that room (a connection that asks
//! for `?send-only` sends but is not sent anything, like a publisher that subscribes to
//! nothing). One `Bytes` is shared by all receivers, and each connection's writer drains its
//! queue into one flush.
//!
//! It is deliberately not a broker: no protocol, no topics, no acknowledgements, no durability,
//! no authentication. A receiver whose queue (`--queue` messages) is full loses the message
//! (counted and reported at exit), which is what a QoS 0 broker may do too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use clap::Args;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Options of `diglot-bench relay`.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Address to listen on (port 0: any free port; the bound address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Messages queued per receiving connection before new ones are dropped.
    #[arg(long, default_value_t = 8192)]
    pub queue: usize,
    /// Stop by itself after this many seconds (0: at SIGINT/SIGTERM only).
    #[arg(long, default_value_t = 0)]
    pub max_secs: u64,
}

struct Peer {
    id: u64,
    tx: mpsc::Sender<Message>,
}

/// One room's receivers, replaced whole when someone joins or leaves so that senders only
/// take a cheap read lock and clone an `Arc` per message.
type Room = Arc<RwLock<Arc<Vec<Peer>>>>;

#[derive(Default)]
struct Relay {
    rooms: Mutex<HashMap<String, Room>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
    relayed: AtomicU64,
}

impl Relay {
    fn room(&self, name: &str) -> Room {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms.entry(name.to_string()).or_default().clone()
    }
}

fn edit(room: &Room, change: impl FnOnce(&mut Vec<Peer>)) {
    let mut guard = room.write().unwrap_or_else(|p| p.into_inner());
    let mut peers: Vec<Peer> = guard.iter().map(|p| Peer { id: p.id, tx: p.tx.clone() }).collect();
    change(&mut peers);
    *guard = Arc::new(peers);
}

/// Serves until SIGINT/SIGTERM (or `--max-secs`), printing `relay listening on ADDR` first.
pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    println!("relay listening on {}", listener.local_addr()?);
    let relay = Arc::new(Relay::default());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let limit = async {
        match args.max_secs {
            0 => std::future::pending().await,
            s => tokio::time::sleep(std::time::Duration::from_secs(s)).await,
        }
    };
    tokio::pin!(limit);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let relay = relay.clone();
                    tokio::spawn(async move { serve(relay, stream, args.queue).await });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = &mut limit => break,
        }
    }
    eprintln!(
        "relay: {} messages relayed, {} dropped (full queues)",
        relay.relayed.load(Ordering::Relaxed),
        relay.dropped.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn serve(relay: Arc<Relay>, stream: TcpStream, queue: usize) {
    let _ = stream.set_nodelay(true);
    let mut target = String::new();
    // tungstenite's `Callback` fixes the (large) error type; this one never fails.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        target = req.uri().to_string();
        Ok(resp)
    };
    // Small buffers that grow on demand: the relay is the memory floor too (conns).
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(64 * 1024);
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await else { return };
    let (path, send_only) = match target.split_once('?') {
        Some((path, query)) => (path.to_string(), query.split('&').any(|q| q == "send-only")),
        None => (target.clone(), false),
    };
    let room = relay.room(&path);
    let id = relay.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Message>(queue.max(1));
    if !send_only {
        edit(&room, |peers| peers.push(Peer { id, tx }));
    }
    let (mut sink, mut source) = ws.split();
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            // Everything already queued goes out in the same flush.
            while let Ok(more) = rx.try_recv() {
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let (mut relayed, mut dropped) = (0u64, 0u64);
    while let Some(Ok(message)) = source.next().await {
        if !(message.is_binary() || message.is_text()) {
            if message.is_close() {
                break;
            }
            continue;
        }
        let peers = room.read().unwrap_or_else(|p| p.into_inner()).clone();
        for peer in peers.iter().filter(|p| p.id != id) {
            // Message::Binary/Text hold `Bytes`: the clone shares the payload.
            match peer.tx.try_send(message.clone()) {
                Ok(()) => relayed += 1,
                Err(_) => dropped += 1,
            }
        }
    }
    relay.relayed.fetch_add(relayed, Ordering::Relaxed);
    relay.dropped.fetch_add(dropped, Ordering::Relaxed);
    edit(&room, |peers| peers.retain(|p| p.id != id));
    writer.abort();
}
