//! Binding the worker sockets: `SO_REUSEPORT`, `IPV6_V6ONLY`, pktinfo on
//! wildcard addresses, large buffers.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;

use libc::c_int;
use socket2::{Domain, Protocol, Socket, Type};

/// Requested `SO_RCVBUF` / `SO_SNDBUF`; the kernel clamps it to
/// `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER_SIZE: usize = 4 << 20;

/// Bind `sockets` UDP sockets to `addr`, all with `SO_REUSEPORT` so that one
/// worker thread can own each (see [`spawn_udp`]).
///
/// IPv6 sockets get `IPV6_V6ONLY` (so `[::]:53` and `0.0.0.0:53` can both be
/// bound); wildcard-address sockets get `IP_PKTINFO` / `IPV6_RECVPKTINFO` so
/// replies leave from the query's destination address (a socket bound to one
/// address replies from it without them), and all get a large `SO_RCVBUF` /
/// `SO_SNDBUF` (best effort). If `addr` has port 0, the first socket picks
/// the port and the others bind to that same port.
///
/// Note that `SO_REUSEPORT` lets any other process of the same user bind the
/// same address and receive a share of the queries.
pub fn bind_udp(addr: SocketAddr, sockets: usize) -> io::Result<Vec<UdpSocket>> {
    if sockets == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bind_udp: at least one socket is required",
        ));
    }
    let first = bind_one(addr)?;
    let mut addr = addr;
    addr.set_port(first.local_addr()?.port());
    let mut all = Vec::with_capacity(sockets);
    all.push(first);
    for _ in 1..sockets {
        all.push(bind_one(addr)?);
    }
    Ok(all)
}

fn bind_one(addr: SocketAddr) -> io::Result<UdpSocket> {
    let with_context = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("UDP socket {addr}: {what}: {e}"))
    };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| with_context("socket", e))?;
    let fd = socket.as_raw_fd();
    set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
        .map_err(|e| with_context("SO_REUSEPORT", e))?;
    // Only a wildcard socket needs the destination of each query: one bound
    // to a single address replies from it anyway, and skipping the control
    // messages saves kernel work on every packet.
    let wildcard = addr.ip().is_unspecified();
    if addr.is_ipv6() {
        socket
            .set_only_v6(true)
            .map_err(|e| with_context("IPV6_V6ONLY", e))?;
        if wildcard {
            set_int_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
                .map_err(|e| with_context("IPV6_RECVPKTINFO", e))?;
        }
    } else if wildcard {
        set_int_opt(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
            .map_err(|e| with_context("IP_PKTINFO", e))?;
    }
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER_SIZE) {
        tracing::debug!(%addr, error = %e, "could not set SO_RCVBUF");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER_SIZE) {
        tracing::debug!(%addr, error = %e, "could not set SO_SNDBUF");
    }
    socket
        .bind(&addr.into())
        .map_err(|e| with_context("bind", e))?;
    Ok(socket.into())
}

fn set_int_opt(fd: RawFd, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and we pass its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            ptr::from_ref(&value).cast(),
            mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
