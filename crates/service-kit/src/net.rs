//! Listening sockets tuned for many connections.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Connection bursts overflow tokio's default backlog of 128 (seen: p99
/// connect of 1 s); the kernel caps this at `net.core.somaxconn` anyway.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listener with a large accept backlog and `SO_REUSEADDR`, so a
/// restarted service can take its port back at once. Port 0 picks a free one.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Binds on 127.0.0.1 with a free port (tests).
pub fn bind_loopback() -> std::io::Result<TcpListener> {
    bind(SocketAddr::from(([127, 0, 0, 1], 0)))
}
