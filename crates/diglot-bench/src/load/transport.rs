//! The byte pipes under the load generator's clients: raw TCP, or a WebSocket client
//! (tokio-tungstenite) over TCP. Split into a [`Reader`] and a [`Writer`] so that one task can
//! publish while another reads.
//!
//! Writes are batched: [`Writer::push`] only buffers (TCP: one `BytesMut`; WebSocket: one
//! message per protocol packet, fed to tungstenite's write buffer) and [`Writer::flush`] hands
//! the whole batch to the socket. This is not a general client: no TLS, no compression, no
//! redirects.

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// How a connection is made at the socket level.
#[derive(Debug, Clone, Default)]
pub struct SocketOpts {
    /// Bind to this source address before connecting (port chosen by the kernel).
    pub source: Option<IpAddr>,
    /// `SO_RCVBUF` in bytes, to make a slow reader push back on the sender sooner.
    pub recv_buffer: Option<u32>,
}

/// Opens a TCP connection with `TCP_NODELAY` (the writer batches by itself).
pub async fn tcp(addr: SocketAddr, opts: &SocketOpts) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(size) = opts.recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(ip) = opts.source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

type Ws = WebSocketStream<TcpStream>;

/// Opens a WebSocket at `url` (`ws://host:port/path?query`) over a connection to `addr`,
/// offering `subprotocol` if given. Text messages are used when `text` is set (STOMP).
pub async fn websocket(
    addr: SocketAddr,
    url: &str,
    subprotocol: Option<&str>,
    text: bool,
    opts: &SocketOpts,
) -> io::Result<(Reader, Writer)> {
    let stream = tcp(addr, opts).await?;
    let mut request = url.into_client_request().map_err(io::Error::other)?;
    if let Some(p) = subprotocol {
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).map_err(io::Error::other)?);
    }
    let config = WebSocketConfig::default().write_buffer_size(64 * 1024);
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await.map_err(io::Error::other)?;
    let (sink, stream) = ws.split();
    Ok((Reader::Ws(stream), Writer::Ws { sink, text }))
}

/// Splits a TCP stream into the two halves.
pub fn split_tcp(stream: TcpStream) -> (Reader, Writer) {
    let (r, w) = stream.into_split();
    (Reader::Tcp { read: r, buf: BytesMut::new() }, Writer::Tcp { write: w, buf: BytesMut::with_capacity(64 * 1024) })
}

/// The receiving half.
pub enum Reader {
    /// Raw TCP: chunks as they come off the socket.
    Tcp {
        /// The socket's read half.
        read: OwnedReadHalf,
        /// Where reads land before they are split off as chunks.
        buf: BytesMut,
    },
    /// WebSocket: one chunk per text or binary message.
    Ws(SplitStream<Ws>),
}

impl Reader {
    /// The next chunk of bytes; for a WebSocket, exactly one message's payload. `Ok(None)` when
    /// the peer closed. Cancel-safe.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        match self {
            Reader::Tcp { read, buf } => {
                if buf.capacity() < 16 * 1024 {
                    buf.reserve(64 * 1024);
                }
                match read.read_buf(buf).await? {
                    0 => Ok(None),
                    _ => Ok(Some(buf.split().freeze())),
                }
            }
            Reader::Ws(stream) => loop {
                match stream.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(None),
                    Some(Err(e)) => return Err(io::Error::other(e)),
                    Some(Ok(Message::Binary(b))) => return Ok(Some(b)),
                    Some(Ok(Message::Text(t))) => return Ok(Some(Bytes::from(t))),
                    Some(Ok(_)) => continue,
                }
            },
        }
    }
}

/// The sending half, which batches.
pub enum Writer {
    /// Raw TCP: packets are appended to one buffer.
    Tcp {
        /// The socket's write half.
        write: OwnedWriteHalf,
        /// The batch not yet written.
        buf: BytesMut,
    },
    /// WebSocket: one message per packet, written together on flush.
    Ws {
        /// The socket's sink.
        sink: SplitSink<Ws, Message>,
        /// Send text messages (STOMP) rather than binary ones.
        text: bool,
    },
}

impl Writer {
    /// Queues one packet (one WebSocket message) without writing it yet (tungstenite writes
    /// by itself once its write buffer is full).
    pub async fn push(&mut self, packet: Bytes) -> io::Result<()> {
        match self {
            Writer::Tcp { buf, .. } => {
                buf.extend_from_slice(&packet);
                Ok(())
            }
            Writer::Ws { sink, text } => {
                let message = if *text {
                    Message::Text(Utf8Bytes::try_from(packet).map_err(io::Error::other)?)
                } else {
                    Message::Binary(packet)
                };
                sink.feed(message).await.map_err(io::Error::other)
            }
        }
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        match self {
            Writer::Tcp { write, buf } => {
                if !buf.is_empty() {
                    write.write_all(buf).await?;
                    buf.clear();
                }
                Ok(())
            }
            Writer::Ws { sink, .. } => sink.flush().await.map_err(io::Error::other),
        }
    }

    /// Flushes and closes the sending direction (TCP FIN, WebSocket close frame).
    pub async fn close(&mut self) -> io::Result<()> {
        self.flush().await?;
        match self {
            Writer::Tcp { write, .. } => write.shutdown().await,
            Writer::Ws { sink, .. } => sink.close().await.map_err(io::Error::other),
        }
    }
}
