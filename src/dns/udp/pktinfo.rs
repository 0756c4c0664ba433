//! Addresses and control messages: the client's address from the kernel's
//! `sockaddr`, the query's destination from `IP_PKTINFO` /
//! `IPV6_PKTINFO`, and the pktinfo a reply is sent with.

use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ptr;

use libc::c_int;

/// Control message space per datagram; must hold one `in6_pktinfo` cmsg.
pub(super) const CMSG_BUF_SIZE: usize = 64;

// SAFETY: CMSG_SPACE is plain arithmetic on its argument.
const _: () = assert!(
    unsafe { libc::CMSG_SPACE(mem::size_of::<libc::in6_pktinfo>() as u32) } as usize
        <= CMSG_BUF_SIZE
);
const _: () = assert!(mem::align_of::<libc::cmsghdr>() <= 8);

/// Control message buffer, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(super) struct CmsgBuf(pub(super) [u8; CMSG_BUF_SIZE]);

/// The destination of a query, as `IP_PKTINFO` / `IPV6_PKTINFO` reported it.
#[derive(Clone, Copy)]
pub(super) enum PktInfo {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

/// Convert a kernel-filled socket address; IPv4-mapped IPv6 becomes IPv4.
pub(super) fn sockaddr_to_std(
    ss: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    match c_int::from(ss.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family is AF_INET and the kernel wrote a full
            // sockaddr_in; sockaddr_storage is aligned for every sockaddr.
            let sin = unsafe { &*ptr::from_ref(ss).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for AF_INET6 and sockaddr_in6.
            let sin6 = unsafe { &*ptr::from_ref(ss).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

/// Find the `IP_PKTINFO` / `IPV6_PKTINFO` control message of a received
/// datagram.
pub(super) fn read_pktinfo(msg: &libc::msghdr) -> Option<PktInfo> {
    // SAFETY: `msg` was filled in by recvmmsg: msg_control points to our
    // buffer and msg_controllen is the length the kernel wrote, which is what
    // the CMSG_* helpers walk. Payloads are read unaligned after a length
    // check.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let level = (*c).cmsg_level;
            let kind = (*c).cmsg_type;
            let len = (*c).cmsg_len as usize;
            let data = libc::CMSG_DATA(c);
            if level == libc::IPPROTO_IP
                && kind == libc::IP_PKTINFO
                && len >= libc::CMSG_LEN(mem::size_of::<libc::in_pktinfo>() as u32) as usize
            {
                return Some(PktInfo::V4(ptr::read_unaligned(data.cast())));
            }
            if level == libc::IPPROTO_IPV6
                && kind == libc::IPV6_PKTINFO
                && len >= libc::CMSG_LEN(mem::size_of::<libc::in6_pktinfo>() as u32) as usize
            {
                return Some(PktInfo::V6(ptr::read_unaligned(data.cast())));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// The pktinfo to send a reply with, so that it leaves from the query's
/// destination address.
///
/// The interface index is kept only for link-local addresses, where it is
/// needed; otherwise it is cleared so the routing table picks the way out.
/// Forcing the arrival interface misroutes replies when routing is
/// asymmetric, e.g. an anycast address configured on `lo` and reached through
/// one interface while the route back uses another (gdnsd does the same for
/// IPv6).
fn reply_pktinfo(info: PktInfo) -> PktInfo {
    match info {
        PktInfo::V4(received) => {
            // On receive, ipi_spec_dst is the local address the packet was
            // sent to (the header destination for unicast, an address of the
            // interface for broadcast); on send, it is the source address.
            let dst = Ipv4Addr::from(received.ipi_spec_dst.s_addr.to_ne_bytes());
            PktInfo::V4(libc::in_pktinfo {
                ipi_ifindex: if dst.is_link_local() {
                    received.ipi_ifindex
                } else {
                    0
                },
                ipi_spec_dst: received.ipi_spec_dst,
                ipi_addr: libc::in_addr { s_addr: 0 },
            })
        }
        PktInfo::V6(received) => {
            let dst = Ipv6Addr::from(received.ipi6_addr.s6_addr);
            PktInfo::V6(libc::in6_pktinfo {
                ipi6_addr: received.ipi6_addr,
                ipi6_ifindex: if dst.is_unicast_link_local() {
                    received.ipi6_ifindex
                } else {
                    0
                },
            })
        }
    }
}

/// Write the reply's pktinfo control message into `buf`; returns the
/// control length to send.
///
/// # Safety
///
/// `buf` must point to a writable [`CmsgBuf`].
pub(super) unsafe fn write_reply_pktinfo(buf: *mut CmsgBuf, info: PktInfo) -> usize {
    let c = buf.cast::<libc::cmsghdr>();
    // SAFETY: CmsgBuf is aligned for cmsghdr and large enough for a cmsghdr
    // followed by an in6_pktinfo (checked at compile time above); the
    // payload is written unaligned.
    unsafe {
        match reply_pktinfo(info) {
            PktInfo::V4(pi) => {
                let size = mem::size_of::<libc::in_pktinfo>() as u32;
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size) as _;
                ptr::write_unaligned(libc::CMSG_DATA(c).cast(), pi);
                libc::CMSG_SPACE(size) as usize
            }
            PktInfo::V6(pi) => {
                let size = mem::size_of::<libc::in6_pktinfo>() as u32;
                (*c).cmsg_level = libc::IPPROTO_IPV6;
                (*c).cmsg_type = libc::IPV6_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size) as _;
                ptr::write_unaligned(libc::CMSG_DATA(c).cast(), pi);
                libc::CMSG_SPACE(size) as usize
            }
        }
    }
}
