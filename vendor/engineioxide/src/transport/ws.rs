//! The ws transport module is responsible for handling websocket connections
//! The only public function is [`new_req`] which is used to upgrade a http request to a websocket connection
//!
//! Other functions are used internally to handle the websocket connection through tasks and channels
//! and to handle upgrade from polling to ws

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use smallvec::smallvec;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tokio_util::future::FutureExt as _;

use engineioxide_core::{Packet, ProtocolVersion, Sid, Str, TransportType};

use crate::{
    DisconnectReason, Socket, body::ResponseBody, config::EngineIoConfig, engine::EngineIo,
    errors::Error, handler::EngineIoHandler, socket::InternalRx, socket::Queued,
    transport::make_open_packet,
};

/// Create a response for websocket upgrade
fn ws_response<B>(ws_key: &HeaderValue) -> Response<ResponseBody<B>> {
    let derived = derive_accept_key(ws_key.as_bytes());
    let sec = derived.parse::<HeaderValue>().unwrap();
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        )
        .header(http::header::SEC_WEBSOCKET_ACCEPT, sec)
        .body(ResponseBody::empty_response())
        .unwrap() // we are only using constants
}

/// Upgrade a websocket request to create a websocket connection.
///
/// If a sid is provided in the query it means that is is upgraded from an existing HTTP polling request.
/// In this case the http polling request is closed and the SID is kept for the websocket
pub fn new_req<R: Send + 'static, B, H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    mut req: Request<R>,
) -> Result<Response<ResponseBody<B>>, Error> {
    // Patched: the upgrade is taken out of the request instead of cloning
    // the request's parts for it, and the session keeps the headers without
    // the websocket handshake's (they mean nothing once it is done): a
    // request left with no headers keeps no header map.
    let upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, _body) = req.into_parts();
    let ws_key = parts
        .headers
        .get(http::header::SEC_WEBSOCKET_KEY)
        .ok_or(Error::InvalidWebSocketKey)?
        .clone();
    parts.headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !is_handshake_header(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();

    tokio::spawn(async move {
        let conn = upgrade.await.map(hyper_util::rt::TokioIo::new);

        let res = match conn {
            Ok(conn) => on_init(engine.clone(), conn, protocol, sid, parts).await,
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!("ws upgrade error: {}", _e);
                return;
            }
        };

        match res {
            Ok(_) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed")
            }
            Err(Error::MultipleWebsocketRequests) => {}
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed with error: {_e}");
                if let Some(sid) = sid {
                    engine.close_session(sid, DisconnectReason::TransportError);
                }
            }
        }
    });

    Ok(ws_response(&ws_key))
}

/// Headers of the websocket handshake itself.
fn is_handshake_header(name: &http::HeaderName) -> bool {
    use http::header::{
        CONNECTION, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
        SEC_WEBSOCKET_VERSION, UPGRADE,
    };
    [
        CONNECTION,
        UPGRADE,
        SEC_WEBSOCKET_KEY,
        SEC_WEBSOCKET_VERSION,
        SEC_WEBSOCKET_EXTENSIONS,
        SEC_WEBSOCKET_PROTOCOL,
    ]
    .contains(name)
}

/// Handle a websocket connection upgrade
///
/// Sends an open packet if it is not an upgrade from a polling request
///
/// Read packets from the websocket and handle them, it will block until the connection is closed
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", name = "init_websocket", skip(engine, conn, req_data))
)]
pub async fn on_init<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (socket, ws) = handshake(&engine, conn, protocol, sid, req_data).await?;
    // Patched: the open connection is served by a task of its own, which
    // holds only what serving needs; the upgrade's and the handshake's state
    // ends with this one.
    tokio::spawn(serve(engine, socket, ws));
    Ok(())
}

/// Opens the session (or takes over the polling one being upgraded) and
/// completes the engine.io handshake on the websocket.
async fn handshake<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<(Arc<Socket<H::Data>>, WebSocketStream<S>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(engine.config.ws_read_buffer_size)
        .max_message_size(Some(engine.config.ws_max_message_size))
        .max_frame_size(Some(engine.config.ws_max_frame_size));

    let ws_init = move || WebSocketStream::from_raw_socket(conn, Role::Server, Some(ws_config));
    let (socket, ws) = if let Some(sid) = sid {
        match engine.get_socket(sid) {
            None => return Err(Error::UnknownSessionID(sid)),
            Some(socket) if socket.is_ws() => return Err(Error::MultipleWebsocketRequests),
            Some(socket) => {
                let mut ws = ws_init().await;

                let upgrade_fut = upgrade_handshake::<H, S>(&socket, &mut ws);
                match tokio::time::timeout(engine.config.upgrade_timeout, upgrade_fut)
                    .with_cancellation_token(&socket.cancellation_token)
                    .await
                {
                    Some(Ok(res)) => res?,
                    Some(Err(_)) => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "ws upgrade timed out, closing session");
                        engine.close_session(socket.id, DisconnectReason::TransportError);
                        return Err(Error::Upgrade);
                    }
                    None => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "socket is being closed");
                        return Err(Error::Upgrade);
                    }
                }
                (socket, ws)
            }
        }
    } else {
        let socket = engine.create_session(protocol, TransportType::Websocket, req_data, false);

        #[cfg(feature = "tracing")]
        tracing::debug!("new websocket connection");

        let mut ws = ws_init().await;
        init_handshake(socket.id, &mut ws, &engine.config).await?;
        (socket, ws)
    };
    Ok((socket, ws))
}

/// Serves an open session's websocket until either side closes it: packets
/// queued for the socket are written, and packets the client sends go to
/// the handler. (Patched: upstream splits the websocket and runs the writer
/// in a task of its own, ~1.5 KB more per connection; here one task does
/// both, selecting fairly between the two directions so neither starves.)
///
/// When the client closes the connection or breaks the protocol, the
/// session is closed with the matching reason. When the session is closed
/// from this side (its cancellation token), what is already queued (a
/// `Close` packet, say) is still written before the websocket closes. A
/// write that cannot go on for `ping_timeout` (the client stopped reading)
/// closes the session and drops the connection.
async fn serve<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    socket: Arc<Socket<H::Data>>,
    mut ws: WebSocketStream<S>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A polling request that was in progress during the upgrade may still hold the lock.
    let lock = socket.internal_rx.lock();
    let Some(mut internal_rx) = lock
        .with_cancellation_token(&socket.cancellation_token)
        .await
    else {
        #[cfg(feature = "tracing")]
        tracing::debug!(sid = %socket.id, "session closed before the websocket was served");
        return;
    };
    let InternalRx {
        buffered_rx,
        volatile_rx,
        ..
    } = &mut *internal_rx;
    let cancelled = socket.cancellation_token.cancelled();
    tokio::pin!(cancelled);
    // How long a write may wait for the client to read.
    let write_limit = engine.config.ping_timeout;
    let mut pacing = WritePacing::new();

    let stalled = loop {
        let held = pacing.is_holding();
        let (written, step) = tokio::select! {
            items = buffered_rx.recv() => match items {
                Some(packets) => {
                    let written = async {
                        pacing.note(&packets);
                        write_packets(&mut ws, socket.id, socket.protocol, packets).await;
                        while let Ok(packets) = buffered_rx.try_recv() {
                            pacing.note(&packets);
                            write_packets(&mut ws, socket.id, socket.protocol, packets).await;
                        }
                    };
                    (tokio::time::timeout(write_limit, written).await, Step::Queued)
                }
                None => break false,
            },
            Ok(()) = volatile_rx.changed() => {
                let packets = volatile_rx.borrow_and_update().clone();
                let Some(packets) = packets else { continue };
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = ?socket.id, "ws volatile flush: {} packets", packets.len());
                let written = write_packets(&mut ws, socket.id, socket.protocol, packets);
                (tokio::time::timeout(write_limit, written).await, Step::Queued)
            },
            () = pacing.released(engine.config.ws_write_interval), if held => (Ok(()), Step::Released),
            message = ws.next() => {
                let ended = match message {
                    Some(Ok(message)) => receive(&engine, &socket, message),
                    Some(Err(e)) => Some(Err(e.into())),
                    None => Some(Ok(())),
                };
                if let Some(outcome) = ended {
                    let reason = match outcome {
                        Ok(()) => DisconnectReason::TransportClose,
                        Err(ref e) => {
                            #[cfg(feature = "tracing")]
                            tracing::debug!("error when handling packet: {:?}", e);
                            Option::<DisconnectReason>::from(e)
                                .unwrap_or(DisconnectReason::TransportError)
                        }
                    };
                    engine.close_session(socket.id, reason);
                    break false;
                }
                (Ok(()), Step::Read)
            },
            () = &mut cancelled => {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = %socket.id, "socket is closing");
                break false;
            },
        };
        if written.is_err() {
            break true;
        }
        // What the websocket's buffer holds goes out now, or with the held
        // write when events came too soon after the last write. Answers go
        // at once, with whatever is held. (A read may have buffered a
        // control frame: flushed now unless a write is held.)
        let interval = engine.config.ws_write_interval;
        let flush = match step {
            Step::Queued => !pacing.hold_write(interval),
            Step::Released => true,
            Step::Read => !pacing.is_holding(),
        };
        if flush {
            #[cfg(feature = "tracing")]
            tracing::trace!(sid = %socket.id, "ws flush");
            if tokio::time::timeout(write_limit, ws.flush()).await.is_err() {
                break true;
            }
        }
    };

    if stalled {
        #[cfg(feature = "tracing")]
        tracing::debug!(sid = %socket.id, "the client stopped reading; connection dropped");
        engine.close_session(socket.id, DisconnectReason::TransportError);
        return;
    }
    #[cfg(feature = "tracing")]
    tracing::trace!(sid = %socket.id, "ws closing flush");
    let closing = async {
        while let Ok(packets) = buffered_rx.try_recv() {
            write_packets(&mut ws, socket.id, socket.protocol, packets).await;
        }
        ws.flush().await.ok();
        ws.close(None).await.ok();
    };
    let _ = tokio::time::timeout(write_limit, closing).await;
}

/// What one turn of the connection task did.
enum Step {
    /// Put packets in the websocket's buffer.
    Queued,
    /// The held write may go.
    Released,
    /// Read from the client.
    Read,
}

/// When a websocket may be written to next (see
/// [`EngineIoConfig::ws_write_interval`]). Kept small, as every connection
/// task holds one: milliseconds on the engine's clock, and a timer
/// allocated the first time a write is held (an idle socket never has one).
struct WritePacing {
    /// Before this, a write is held.
    next_write_ms: u64,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    holding: bool,
    /// An answer is in the buffer: the next write goes at once.
    answer: bool,
}

impl WritePacing {
    fn new() -> Self {
        Self {
            next_write_ms: 0,
            timer: None,
            holding: false,
            answer: false,
        }
    }

    /// Looks at packets about to be buffered: an answer to the client (an
    /// ack, a connect reply) or connection control is not held.
    fn note(&mut self, packets: &Queued) {
        self.answer |= packets.iter().any(is_answer);
    }

    fn is_holding(&self) -> bool {
        self.holding
    }

    /// Called when packets were put in the websocket's buffer: `false` if
    /// they may be flushed now (the write is counted; always so when an
    /// answer is among them), `true` if the write is held until
    /// [`Self::released`].
    fn hold_write(&mut self, interval: std::time::Duration) -> bool {
        let answer = std::mem::take(&mut self.answer);
        if interval.is_zero() {
            return false;
        }
        if answer {
            self.holding = false;
            self.count_write(interval);
            return false;
        }
        if self.holding {
            return true;
        }
        let now = crate::socket::engine_clock_ms();
        if now < self.next_write_ms {
            let deadline = tokio::time::Instant::now()
                + std::time::Duration::from_millis(self.next_write_ms - now);
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.holding = true;
            return true;
        }
        self.count_write(interval);
        false
    }

    /// Resolves when the held write may go: the write is then counted.
    async fn released(&mut self, interval: std::time::Duration) {
        if let Some(timer) = &mut self.timer {
            timer.await;
        }
        self.holding = false;
        self.count_write(interval);
    }

    fn count_write(&mut self, interval: std::time::Duration) {
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.next_write_ms = crate::socket::engine_clock_ms().saturating_add(interval_ms);
    }
}

/// Hands one message from the client to the handler. Returns how the
/// session ends if this message ends it: `Ok` when the client closed it,
/// `Err` when it broke the protocol.
fn receive<H: EngineIoHandler>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    msg: Message,
) -> Option<Result<(), Error>> {
    match msg {
        Message::Text(msg) => match Packet::parse(socket.protocol, ws_bytes_to_str(msg)) {
            Ok(Packet::Close) => {
                #[cfg(feature = "tracing")]
                tracing::debug!("[sid={}] closing session", socket.id);
                return Some(Ok(()));
            }
            Ok(Packet::Pong | Packet::Ping) => socket.heartbeat_received(),
            Ok(Packet::Message(msg)) => engine.handler.on_message(msg, socket.clone()),
            Ok(p) => return Some(Err(Error::BadPacket(p))),
            Err(e) => return Some(Err(e.into())),
        },
        Message::Binary(mut data) => {
            if socket.protocol == ProtocolVersion::V3 && !data.is_empty() {
                // The first byte is the message type, which we don't need.
                data = data.split_off(1);
            }
            engine.handler.on_binary(data, socket.clone());
        }
        Message::Close(_) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("websocket closed, closing session");
            return Some(Ok(()));
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = ?socket.id, "unexpected ws message");
        }
    }
    None
}

/// Queues packets on the websocket (flushed by the caller). Only the
/// message being written is held across the await, which keeps the
/// connection task small.
async fn write_packets<S>(
    ws: &mut WebSocketStream<S>,
    _sid: Sid,
    protocol: ProtocolVersion,
    mut packets: Queued,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for packet in packets.drain(..) {
        let Some(message) = ws_message(protocol, packet) else {
            continue;
        };
        if let Err(_e) = ws.feed(message).await {
            #[cfg(feature = "tracing")]
            tracing::debug!("[sid={}] error sending packet: {}", _sid, _e);
        }
    }
}

/// Whether write pacing lets a packet through at once: anything but a
/// socket.io event (`2`) or binary event (`5`) and engine.io's pings,
/// noops and binary attachments, i.e. socket.io acks (`3`, `6`), connect
/// replies and errors (`0`, `4`), disconnects (`1`), engine.io closes.
fn is_answer(packet: &Packet) -> bool {
    match packet {
        Packet::Message(message) => !matches!(message.as_bytes().first(), Some(b'2' | b'5')),
        Packet::Ping | Packet::Pong | Packet::Noop | Packet::Binary(_) | Packet::BinaryV3(_) => {
            false
        }
        _ => true,
    }
}

/// The websocket message carrying a packet (none for a `Noop`).
fn ws_message(protocol: ProtocolVersion, packet: Packet) -> Option<Message> {
    match packet {
        Packet::Binary(bin) | Packet::BinaryV3(bin) => {
            if protocol == ProtocolVersion::V3 {
                // v3 protocol requires packet type as the first byte.
                // This requires a new buffer. This is OK as it is only for the V3 protocol.
                let mut buff = Vec::with_capacity(bin.len() + 1);
                buff.push(0x04);
                buff.extend(bin);
                Some(Message::Binary(buff.into()))
            } else {
                Some(Message::Binary(bin))
            }
        }
        // A Noop Packet maybe sent by the server to upgrade from a polling connection
        // In the case that the packet was not poll in time it will remain in the buffer and therefore
        // it should be discarded here
        Packet::Noop => None,
        packet => Some(Message::Text(String::from(packet).into())),
    }
}

/// Send a Engine.IO [`OpenPacket`] to initiate a websocket connection
async fn init_handshake<S>(
    sid: Sid,
    ws: &mut WebSocketStream<S>,
    config: &EngineIoConfig,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let packet = Packet::Open(make_open_packet(TransportType::Websocket, sid, config));
    let packet: String = packet.into();
    ws.send(Message::Text(packet.into())).await?;
    Ok(())
}

/// Upgrade a session from a polling request to a websocket request.
///
/// Before upgrading the session the server should send a NOOP packet to any pending polling request.
///
/// ## Handshake :
/// ```text
/// CLIENT                                                 SERVER
///│                                                      │
///│   GET /engine.io/?EIO=4&transport=websocket&sid=...  │
///│ ───────────────────────────────────────────────────► │
///│  ◄─────────────────────────────────────────────────┘ │
///│            HTTP 101 (WebSocket handshake)            │
///│                                                      │
///│            -----  WebSocket frames -----             │
///│  ─────────────────────────────────────────────────►  │
///│                         2probe                       │ (ping packet)
///│  ◄─────────────────────────────────────────────────  │
///│                         3probe                       │ (pong packet)
///│  ─────────────────────────────────────────────────►  │
///│                         5                            │ (upgrade packet)
///│                                                      │
///│            -----  WebSocket frames -----             │
/// ```
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", skip(socket, ws))
)]
async fn upgrade_handshake<H: EngineIoHandler, S>(
    socket: &Arc<Socket<H::Data>>,
    ws: &mut WebSocketStream<S>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    #[cfg(feature = "tracing")]
    tracing::debug!("starting websocket connection upgrade");

    // The socket is upgrading, from now on all polling
    // request will return a `Packet::Noop`
    socket.start_upgrade();

    // We send a last Noop request to close a potential waiting polling request.
    socket
        .internal_tx
        .send(Box::new(smallvec![Packet::Noop]))
        .await
        .map_err(|_| Error::Upgrade)?;

    // wait for any current polling connection to finish by waiting for the socket to be unlocked
    // All other polling connection will be immediately closed with a NOOP packet.
    let _lock = socket.internal_rx.lock().await;

    // Fetch the next packet from the ws stream, it should be a PingUpgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        _ => Err(Error::Upgrade)?,
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::PingUpgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("received first ping upgrade");
            // Respond with a PongUpgrade packet
            ws.send(Message::Text(String::from(Packet::PongUpgrade).into()))
                .await?;
        }
        p => Err(Error::BadPacket(p))?,
    };

    // Fetch the next packet from the ws stream, it should be an Upgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        Some(Ok(Message::Close(_))) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws stream closed before upgrade");
            Err(Error::Upgrade)?
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!("unexpected ws message before upgrade");
            Err(Error::Upgrade)?
        }
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::Upgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws upgraded successfully")
        }
        p => Err(Error::BadPacket(p))?,
    };

    socket.upgrade_to_websocket();
    Ok(())
}

fn ws_bytes_to_str(bytes: tungstenite::Utf8Bytes) -> Str {
    // SAFETY: the bytes are guaranteed to be valid UTF-8 by the tungstenite parser
    unsafe { Str::from_bytes_unchecked(bytes.into()) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use http::Request;
    use tokio::io::DuplexStream;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    #[derive(Debug)]
    struct StubHandler;
    impl EngineIoHandler for StubHandler {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, _: DisconnectReason) {}
        fn on_message(self: &Arc<Self>, _: Str, _: Arc<Socket<()>>) {}
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    fn socket() -> Arc<Socket<()>> {
        Arc::new(Socket::new(
            ProtocolVersion::V4,
            TransportType::Websocket,
            &EngineIoConfig::default(),
            Request::<()>::default().into_parts().0,
            Box::new(|_, _| ()),
            false,
        ))
    }

    async fn ws_pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(1024);
        (
            WebSocketStream::from_raw_socket(server, Role::Server, None).await,
            WebSocketStream::from_raw_socket(client, Role::Client, None).await,
        )
    }

    fn engine() -> Arc<EngineIo<StubHandler>> {
        Arc::new(EngineIo::new(
            Arc::new(StubHandler),
            EngineIoConfig::default(),
        ))
    }

    async fn next_text(client: &mut WebSocketStream<DuplexStream>) -> Message {
        tokio::time::timeout(TIMEOUT, client.next())
            .await
            .expect("a message in time")
            .expect("the connection is open")
            .expect("a well-formed message")
    }

    /// A polling request can still hold the lock at the end of an upgrade.
    #[tokio::test]
    async fn serving_waits_for_the_lock_of_a_polling_request() {
        let (engine, socket) = (engine(), socket());
        let (server, mut client) = ws_pair().await;

        let polling = socket.internal_rx.lock().await;
        let serving = tokio::spawn(serve(engine, socket.clone(), server));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!serving.is_finished(), "serving should wait for the lock");

        drop(polling);
        socket.emit(Str::from("hello")).unwrap();
        assert_eq!(next_text(&mut client).await, Message::text("4hello"));
    }

    /// A client that stops reading blocks writes: after the ping timeout
    /// the session is closed and serving ends.
    #[tokio::test]
    async fn a_client_that_does_not_read_does_not_keep_the_task() {
        let config = EngineIoConfig::builder()
            .ping_timeout(Duration::from_millis(100))
            .build();
        let engine = Arc::new(EngineIo::new(Arc::new(StubHandler), config));
        let socket = engine.create_session(
            ProtocolVersion::V4,
            TransportType::Websocket,
            Request::<()>::default().into_parts().0,
            false,
        );
        let (server, _client_never_reads) = ws_pair().await;
        let serving = tokio::spawn(serve(engine.clone(), socket.clone(), server));

        socket.emit(Str::from("x".repeat(64 * 1024))).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!serving.is_finished(), "the write should be waiting");
        tokio::time::timeout(TIMEOUT, serving)
            .await
            .expect("serving should stop")
            .unwrap();
        assert!(engine.get_socket(socket.id).is_none(), "session closed");
    }

    /// Every open connection keeps one `serve` future: it must stay small
    /// (1,208 bytes in a debug build of the workspace when written, 1,280
    /// with write pacing; holding a packet buffer by value across an await
    /// made it 1,504).
    #[tokio::test]
    async fn the_connection_task_stays_small() {
        let (server, _client) = ws_pair().await;
        let serving = serve(engine(), socket(), server);
        let size = std::mem::size_of_val(&serving);
        assert!(size <= 1_280, "serve's future is {size} bytes");
    }

    #[tokio::test]
    async fn serving_waiting_for_the_lock_stops_with_the_session() {
        let (engine, socket) = (engine(), socket());
        let (server, _client) = ws_pair().await;

        let _polling = socket.internal_rx.lock().await;
        let serving = tokio::spawn(serve(engine, socket.clone(), server));
        tokio::time::sleep(Duration::from_millis(20)).await;

        socket.cancellation_token.cancel();
        tokio::time::timeout(TIMEOUT, serving)
            .await
            .expect("serving should stop")
            .unwrap();
    }

    /// One task reads and writes: pongs reach the heartbeat and queued
    /// packets reach the client while the client keeps sending, and the
    /// client's close ends the session.
    #[tokio::test]
    async fn one_task_serves_both_directions_until_the_client_closes() {
        let (engine, socket) = (engine(), socket());
        let (server, mut client) = ws_pair().await;
        let serving = tokio::spawn(serve(engine, socket.clone(), server));

        let heard_before = socket.heartbeat_last_heard();
        tokio::time::sleep(Duration::from_millis(5)).await;
        for i in 0..50 {
            client.send(Message::text("3")).await.unwrap();
            socket.emit(Str::from(format!("m{i}"))).unwrap();
            assert_eq!(
                next_text(&mut client).await,
                Message::text(format!("4m{i}"))
            );
        }
        assert!(
            socket.heartbeat_last_heard() > heard_before,
            "pongs were seen"
        );

        client.send(Message::text("1")).await.unwrap();
        tokio::time::timeout(TIMEOUT, serving)
            .await
            .expect("serving should end when the client closes")
            .unwrap();
    }

    /// Counts the writes that reach the connection.
    struct CountingStream {
        inner: DuplexStream,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncRead for CountingStream {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountingStream {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let written = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
            if written.is_ready() {
                self.writes
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            written
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// With a write interval, a quiet socket's event goes out at once and
    /// events that follow it within the interval go out together, in one
    /// write, when it has passed; an answer (an ack) goes at once, taking
    /// what is held with it.
    #[tokio::test]
    async fn events_that_come_within_the_write_interval_share_one_write() {
        const INTERVAL: Duration = Duration::from_millis(150);
        let config = EngineIoConfig::builder()
            .ws_write_interval(INTERVAL)
            .build();
        let engine = Arc::new(EngineIo::new(Arc::new(StubHandler), config));
        let socket = engine.create_session(
            ProtocolVersion::V4,
            TransportType::Websocket,
            Request::<()>::default().into_parts().0,
            false,
        );
        let (server, client) = tokio::io::duplex(1024);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = CountingStream {
            inner: server,
            writes: writes.clone(),
        };
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let writes = move || writes.load(std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(serve(engine, socket.clone(), server));
        tokio::time::sleep(Duration::from_millis(20)).await;

        // socket.io events ("2...") are paced.
        let first = tokio::time::Instant::now();
        socket.emit(Str::from("2a")).unwrap();
        assert_eq!(next_text(&mut client).await, Message::text("42a"));
        assert!(
            first.elapsed() < INTERVAL / 2,
            "a quiet socket is written at once"
        );
        assert_eq!(writes(), 1);

        for text in ["2b", "2c", "2d"] {
            socket.emit(Str::from(text)).unwrap();
        }
        assert_eq!(next_text(&mut client).await, Message::text("42b"));
        assert!(
            first.elapsed() >= INTERVAL - Duration::from_millis(10),
            "held until the interval passed, not {:?}",
            first.elapsed()
        );
        assert_eq!(next_text(&mut client).await, Message::text("42c"));
        assert_eq!(next_text(&mut client).await, Message::text("42d"));
        assert_eq!(writes(), 2, "the three events went in one write");

        // An ack ("3...") does not wait: it goes with what is held.
        let busy = tokio::time::Instant::now();
        socket.emit(Str::from("2e")).unwrap();
        socket.emit(Str::from("31[]")).unwrap();
        assert_eq!(next_text(&mut client).await, Message::text("42e"));
        assert_eq!(next_text(&mut client).await, Message::text("431[]"));
        assert!(
            busy.elapsed() < INTERVAL / 2,
            "an answer is written at once"
        );
        assert!(writes() <= 4, "{} writes", writes());

        tokio::time::sleep(INTERVAL + Duration::from_millis(20)).await;
        let before = writes();
        let quiet = tokio::time::Instant::now();
        socket.emit(Str::from("2f")).unwrap();
        assert_eq!(next_text(&mut client).await, Message::text("42f"));
        assert!(
            quiet.elapsed() < INTERVAL / 2,
            "quiet again: written at once"
        );
        assert_eq!(writes(), before + 1);
    }

    /// A session closed from this side still writes what it queued (the
    /// `Close` packet) before the websocket closes.
    #[tokio::test]
    async fn queued_packets_are_written_before_a_cancelled_session_closes() {
        let (engine, socket) = (engine(), socket());
        let (server, mut client) = ws_pair().await;
        let serving = tokio::spawn(serve(engine, socket.clone(), server));
        tokio::time::sleep(Duration::from_millis(20)).await;

        socket.emit(Str::from("last words")).unwrap();
        socket.close(DisconnectReason::ClosingServer);
        socket.cancellation_token.cancel();
        assert_eq!(next_text(&mut client).await, Message::text("4last words"));
        assert_eq!(next_text(&mut client).await, Message::text("1"));
        assert!(matches!(next_text(&mut client).await, Message::Close(_)));
        tokio::time::timeout(TIMEOUT, serving)
            .await
            .expect("serving should stop")
            .unwrap();
    }
}
