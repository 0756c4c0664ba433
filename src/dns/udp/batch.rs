//! One worker's preallocated batch: receive headers armed once, replies
//! prepared in place, one `sendmmsg` per batch.

use std::io;
use std::mem;
use std::os::fd::RawFd;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use super::pktinfo::{CMSG_BUF_SIZE, CmsgBuf, read_pktinfo, sockaddr_to_std, write_reply_pktinfo};
use super::{BATCH, OUT_CAPACITY, RECV_BUF_SIZE, UdpStats};
use crate::dns::transport::{Handler, Transport};

/// Preallocated state for one worker, reused for every batch.
///
/// The `mmsghdr`s hold raw pointers into the other vectors' heap buffers.
/// Those are never resized after [`Batch::new`] (and moving a `Vec` does not
/// move its buffer), so the receive headers are pointed at their buffers once,
/// in `new`; before each `recvmmsg` only the headers the previous call filled
/// get their lengths and flags reset, so a batch of one datagram costs one
/// header's worth of work, not [`BATCH`]. Rust code only reads `names`,
/// `bufs` and `recv_cmsgs` (the kernel writes them), and reaches the headers
/// through `as_mut_ptr`, which never invalidates the stored raw pointers.
pub(super) struct Batch {
    pub(super) recv_hdrs: Vec<libc::mmsghdr>,
    pub(super) recv_iovs: Vec<libc::iovec>,
    pub(super) names: Vec<libc::sockaddr_storage>,
    pub(super) recv_cmsgs: Vec<CmsgBuf>,
    /// `BATCH` receive buffers of `RECV_BUF_SIZE` bytes, back to back.
    pub(super) bufs: Vec<u8>,
    /// One response buffer per received datagram.
    pub(super) outs: Vec<Vec<u8>>,
    pub(super) send_hdrs: Vec<libc::mmsghdr>,
    pub(super) send_iovs: Vec<libc::iovec>,
    pub(super) send_cmsgs: Vec<CmsgBuf>,
    /// Number of replies prepared in `send_hdrs`.
    pub(super) pending: usize,
    /// Receive headers `0..rearm` may have been changed by the kernel since
    /// they were last armed.
    pub(super) rearm: usize,
}

impl Batch {
    pub(super) fn new() -> Self {
        // SAFETY: these are plain C structs for which all-zero bytes are a
        // valid value (null pointers, zero lengths, AF_UNSPEC).
        let (hdr, iov, name) = unsafe {
            (
                mem::zeroed::<libc::mmsghdr>(),
                mem::zeroed::<libc::iovec>(),
                mem::zeroed::<libc::sockaddr_storage>(),
            )
        };
        let mut batch = Batch {
            recv_hdrs: vec![hdr; BATCH],
            recv_iovs: vec![iov; BATCH],
            names: vec![name; BATCH],
            recv_cmsgs: vec![CmsgBuf([0; CMSG_BUF_SIZE]); BATCH],
            bufs: vec![0; BATCH * RECV_BUF_SIZE],
            outs: (0..BATCH)
                .map(|_| Vec::with_capacity(OUT_CAPACITY))
                .collect(),
            send_hdrs: vec![hdr; BATCH],
            send_iovs: vec![iov; BATCH],
            send_cmsgs: vec![CmsgBuf([0; CMSG_BUF_SIZE]); BATCH],
            pending: 0,
            rearm: 0,
        };
        batch.arm_all();
        batch
    }

    /// Point every receive header at its buffers, and every send header at
    /// its iovec (the per-reply fields are written by [`Batch::process`]).
    fn arm_all(&mut self) {
        let hdrs = self.recv_hdrs.as_mut_ptr();
        let iovs = self.recv_iovs.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        let cmsgs = self.recv_cmsgs.as_mut_ptr();
        let bufs = self.bufs.as_mut_ptr();
        let send_hdrs = self.send_hdrs.as_mut_ptr();
        let send_iovs = self.send_iovs.as_mut_ptr();
        for i in 0..BATCH {
            // SAFETY: every vector has BATCH elements (bufs has BATCH
            // buffers), so all offsets are in bounds; we only write plain
            // values through pointers derived from `as_mut_ptr`.
            unsafe {
                *iovs.add(i) = libc::iovec {
                    iov_base: bufs.add(i * RECV_BUF_SIZE).cast(),
                    iov_len: RECV_BUF_SIZE,
                };
                let h = &mut *hdrs.add(i);
                h.msg_len = 0;
                h.msg_hdr.msg_name = names.add(i).cast();
                h.msg_hdr.msg_iov = iovs.add(i);
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = cmsgs.add(i).cast();
                let s = &mut *send_hdrs.add(i);
                s.msg_hdr.msg_iov = send_iovs.add(i);
                s.msg_hdr.msg_iovlen = 1;
                s.msg_hdr.msg_flags = 0;
            }
        }
        self.rearm = BATCH;
        self.rearm_recv();
    }

    /// Reset what `recvmmsg` changes (name and control lengths, flags) in
    /// the headers it may have filled since the last call.
    pub(super) fn rearm_recv(&mut self) {
        let hdrs = self.recv_hdrs.as_mut_ptr();
        for i in 0..self.rearm.min(BATCH) {
            // SAFETY: i < BATCH = the vector's length; plain writes.
            unsafe {
                let h = &mut (*hdrs.add(i)).msg_hdr;
                h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as _;
                h.msg_controllen = CMSG_BUF_SIZE as _;
                h.msg_flags = 0;
            }
        }
        self.rearm = 0;
    }

    /// Block (up to the socket's `SO_RCVTIMEO`) for at least one datagram and
    /// take up to `BATCH` that are queued. Returns how many arrived.
    pub(super) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.rearm_recv();
        let hdrs = self.recv_hdrs.as_mut_ptr();
        // SAFETY: `hdrs` points to BATCH armed headers whose buffers live in
        // `self` and stay put for the duration of the call.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                hdrs,
                BATCH as _,
                libc::MSG_WAITFORONE as _,
                ptr::null_mut(),
            )
        };
        if rc < 0 {
            // Nothing was received, but re-arm everything to be safe.
            self.rearm = BATCH;
            Err(io::Error::last_os_error())
        } else {
            // The kernel fills headers 0..rc; one more in case it touched
            // the header of a message that failed after those.
            self.rearm = (rc as usize + 1).min(BATCH);
            Ok(rc as usize)
        }
    }

    /// Run the handler over the first `n` received datagrams and prepare the
    /// replies in `send_hdrs`.
    pub(super) fn process(&mut self, n: usize, handler: &dyn Handler, stats: &mut UdpStats) {
        self.pending = 0;
        stats.received += n as u64;
        let send_hdrs = self.send_hdrs.as_mut_ptr();
        let send_iovs = self.send_iovs.as_mut_ptr();
        let send_cmsgs = self.send_cmsgs.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        for i in 0..n.min(BATCH) {
            let hdr = &self.recv_hdrs[i];
            let len = (hdr.msg_len as usize).min(RECV_BUF_SIZE);
            if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                stats.dropped_truncated += 1;
                continue;
            }
            let namelen = hdr.msg_hdr.msg_namelen;
            let Some(client) = sockaddr_to_std(&self.names[i], namelen) else {
                stats.dropped_invalid += 1;
                continue;
            };
            if client.port() == 0 {
                stats.dropped_invalid += 1;
                continue;
            }
            let pktinfo = read_pktinfo(&hdr.msg_hdr);

            let query = &self.bufs[i * RECV_BUF_SIZE..i * RECV_BUF_SIZE + len];
            let out = &mut self.outs[i];
            out.clear();
            let answered = panic::catch_unwind(AssertUnwindSafe(|| {
                handler.handle(query, client, Transport::Udp, out)
            }))
            .unwrap_or_else(|_| {
                tracing::error!(%client, "DNS handler panicked on a UDP query; dropped");
                false
            });
            if !answered || out.is_empty() {
                stats.dropped_by_handler += 1;
                continue;
            }

            let k = self.pending;
            self.pending += 1;
            // SAFETY: k < n <= BATCH, so all offsets are in bounds. The
            // reply's iovec points into `out`, which is not touched again
            // until the next batch; the name is the client's address as
            // received; the control buffer is ours and aligned for cmsghdr.
            unsafe {
                *send_iovs.add(k) = libc::iovec {
                    iov_base: out.as_mut_ptr().cast(),
                    iov_len: out.len(),
                };
                let controllen = match pktinfo {
                    Some(info) => write_reply_pktinfo(send_cmsgs.add(k), info),
                    None => 0,
                };
                // msg_iov, msg_iovlen and msg_flags were set once by
                // `arm_all` (sendmmsg only writes msg_len).
                let h = &mut *send_hdrs.add(k);
                h.msg_hdr.msg_name = names.add(i).cast();
                h.msg_hdr.msg_namelen = namelen;
                h.msg_hdr.msg_control = if controllen == 0 {
                    ptr::null_mut()
                } else {
                    send_cmsgs.add(k).cast()
                };
                h.msg_hdr.msg_controllen = controllen as _;
            }
        }
    }

    /// Send the replies prepared by [`Batch::process`], resending the rest
    /// after a partial send and skipping any message the kernel refuses.
    pub(super) fn send(&mut self, fd: RawFd, stats: &mut UdpStats) {
        let hdrs = self.send_hdrs.as_mut_ptr();
        let total = self.pending;
        let mut done = 0;
        while done < total {
            // SAFETY: headers done..total were prepared by `process` and
            // point at buffers that are alive and unchanged.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.add(done),
                    (total - done) as _,
                    libc::MSG_DONTWAIT as _,
                )
            };
            if rc > 0 {
                done += rc as usize;
                stats.sent += rc as u64;
                continue;
            }
            let err = io::Error::last_os_error();
            if rc < 0 && err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // The error belongs to the first unsent message: skip it.
            stats.send_errors += 1;
            tracing::debug!(error = %err, "UDP reply not sent");
            done += 1;
        }
        self.pending = 0;
    }
}
