//! One AF_XDP socket with its own UMEM: the frame area, the fill and
//! completion rings (frames handed to / returned by the kernel) and the
//! rx and tx rings, all shared memory mapped from the socket.
//!
//! Frame accounting: there are exactly as many frames as slots in each
//! ring, and every frame is in one place at a time (fill ring, rx ring, the
//! worker's hands, tx ring, completion ring), so a producer never finds its
//! ring full.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Frames per socket (and slots per ring): a power of two.
pub(crate) const FRAMES: u32 = 2048;
/// Bytes per frame (one page, the aligned-mode maximum that always works).
pub(crate) const FRAME_SIZE: u32 = 4096;

fn os_err(what: &'static str) -> impl FnOnce(io::Error) -> (&'static str, io::Error) {
    move |e| (what, e)
}

/// An error with the step that failed.
pub(crate) type StepError = (&'static str, io::Error);

/// An anonymous mapping, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize, fd: Option<(i32, libc::off_t)>) -> io::Result<Self> {
        let (flags, fd, off) = match fd {
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0),
            Some((fd, off)) => (libc::MAP_SHARED, fd, off),
        };
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL); it
        // aliases no Rust object.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_POPULATE,
                fd,
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr: p.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and nothing
        // refers to the mapping after its owner is dropped.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// A single-producer / single-consumer ring shared with the kernel. We are
/// the producer of the fill and tx rings and the consumer of the rx and
/// completion rings; the other end is the kernel.
struct Ring<T> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    /// Our copy of our own index, and the last seen index of the other end.
    cached_prod: u32,
    cached_cons: u32,
    _map: Mapping,
}

impl<T: Copy> Ring<T> {
    /// Map ring `pgoff` of socket `fd` with the kernel's offsets `off`.
    fn map(fd: i32, pgoff: u64, off: &libc::xdp_ring_offset) -> io::Result<Self> {
        let len = off.desc as usize + FRAMES as usize * mem::size_of::<T>();
        let map = Mapping::new(len, Some((fd, pgoff as libc::off_t)))?;
        // SAFETY: the kernel placed the producer, consumer and flags words
        // (u32, 4-aligned) and the descriptor array at these offsets inside
        // the mapping of `len` bytes; AtomicU32 has u32's layout.
        let ring = unsafe {
            Ring {
                producer: map.ptr.add(off.producer as usize).cast(),
                consumer: map.ptr.add(off.consumer as usize).cast(),
                flags: map.ptr.add(off.flags as usize).cast(),
                descs: map.ptr.add(off.desc as usize).cast(),
                mask: FRAMES - 1,
                cached_prod: (*map.ptr.add(off.producer as usize).cast::<AtomicU32>())
                    .load(Ordering::Relaxed),
                cached_cons: (*map.ptr.add(off.consumer as usize).cast::<AtomicU32>())
                    .load(Ordering::Relaxed),
                _map: map,
            }
        };
        Ok(ring)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping (see `map`).
        unsafe { &*self.producer }
    }
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }

    // Producer side.

    /// Free slots (refreshing the consumer index only when needed).
    fn free(&mut self, want: u32) -> u32 {
        let free = FRAMES - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        // Acquire: the kernel is done with the slots it consumed.
        self.cached_cons = self.consumer().load(Ordering::Acquire);
        FRAMES - self.cached_prod.wrapping_sub(self.cached_cons)
    }
    /// Write the next slot; the caller checked `free`.
    fn push(&mut self, v: T) {
        let i = (self.cached_prod & self.mask) as usize;
        // SAFETY: `i` < FRAMES, inside the descriptor array; the slot is
        // ours until `submit` publishes it.
        unsafe { self.descs.add(i).write_volatile(v) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }
    /// Publish the pushed slots (Release: their contents first).
    fn submit(&self) {
        self.producer().store(self.cached_prod, Ordering::Release);
    }
    /// Pushed slots the kernel has not consumed yet.
    fn outstanding(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.consumer().load(Ordering::Acquire))
    }
    fn needs_wakeup(&self) -> bool {
        // SAFETY: points into our live mapping.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // Consumer side.

    /// Filled slots ready to read (Acquire: their contents are visible).
    fn available(&mut self) -> u32 {
        self.cached_prod = self.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }
    /// The `k`-th unread slot (k < `available`).
    fn peek(&self, k: u32) -> T {
        let i = (self.cached_cons.wrapping_add(k) & self.mask) as usize;
        // SAFETY: `i` < FRAMES; the kernel published this slot and will not
        // touch it until we `release` it.
        unsafe { self.descs.add(i).read_volatile() }
    }
    /// Give `n` read slots back (Release: we are done reading them).
    fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.consumer().store(self.cached_cons, Ordering::Release);
    }
}

/// How the socket ended up bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BindMode {
    /// The driver DMAs into the UMEM.
    ZeroCopy,
    /// The kernel copies each packet (veth, generic XDP).
    Copy,
}

/// An AF_XDP socket bound to one queue, with its UMEM and rings.
pub(crate) struct Xsk {
    // Field order is drop order: rings and the frame area are unmapped
    // before the socket closes.
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    umem: Mapping,
    fd: OwnedFd,
    /// Zero-copy or copy mode.
    pub(crate) mode: BindMode,
}

// SAFETY: the raw pointers point into mappings owned by the `Xsk` itself;
// moving it to another thread moves that ownership along, and only `&mut
// self` methods touch the rings.
unsafe impl Send for Xsk {}

fn setsockopt<T>(fd: i32, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a live value of the exact size we pass.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            ptr::from_ref(v).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Xsk {
    /// Create a socket with a fresh UMEM and bind it to `queue` of
    /// `ifindex`, zero-copy when the driver can, else copy mode.
    pub(crate) fn open(ifindex: u32, queue: u32) -> Result<Xsk, StepError> {
        match Self::open_with(ifindex, queue, libc::XDP_ZEROCOPY) {
            Ok(x) => Ok(x),
            Err(("bind", _)) => Self::open_with(ifindex, queue, libc::XDP_COPY),
            Err(e) => Err(e),
        }
    }

    fn open_with(ifindex: u32, queue: u32, copy_flag: u16) -> Result<Xsk, StepError> {
        // SAFETY: plain socket(2); the fd is new and owned below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(("AF_XDP socket", io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len = FRAMES as usize * FRAME_SIZE as usize;
        let umem = Mapping::new(len, None).map_err(os_err("UMEM area"))?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr as u64,
            len: len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &reg).map_err(os_err("UMEM register"))?;
        let n = FRAMES as libc::c_int;
        for (opt, what) in [
            (libc::XDP_UMEM_FILL_RING, "fill ring"),
            (libc::XDP_UMEM_COMPLETION_RING, "completion ring"),
            (libc::XDP_RX_RING, "rx ring"),
            (libc::XDP_TX_RING, "tx ring"),
        ] {
            setsockopt(raw, opt, &n).map_err(os_err(what))?;
        }
        // SAFETY: all-zero is a valid xdp_mmap_offsets (plain integers).
        let mut off: libc::xdp_mmap_offsets = unsafe { mem::zeroed() };
        let mut optlen = mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` and `optlen` are live and sized as passed.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                ptr::from_mut(&mut off).cast(),
                &mut optlen,
            )
        };
        if rc != 0 || optlen as usize != mem::size_of::<libc::xdp_mmap_offsets>() {
            return Err(("ring offsets", io::Error::last_os_error()));
        }
        let mut fill = Ring::<u64>::map(raw, libc::XDP_UMEM_PGOFF_FILL_RING, &off.fr)
            .map_err(os_err("fill ring mmap"))?;
        let comp = Ring::<u64>::map(raw, libc::XDP_UMEM_PGOFF_COMPLETION_RING, &off.cr)
            .map_err(os_err("completion ring mmap"))?;
        let rx = Ring::<libc::xdp_desc>::map(raw, libc::XDP_PGOFF_RX_RING as u64, &off.rx)
            .map_err(os_err("rx ring mmap"))?;
        let tx = Ring::<libc::xdp_desc>::map(raw, libc::XDP_PGOFF_TX_RING as u64, &off.tx)
            .map_err(os_err("tx ring mmap"))?;
        // Every frame starts in the fill ring.
        let free = fill.free(FRAMES);
        debug_assert_eq!(free, FRAMES);
        for i in 0..FRAMES {
            fill.push(u64::from(i) * u64::from(FRAME_SIZE));
        }
        fill.submit();
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: copy_flag | libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a live sockaddr_xdp of the size passed.
        let rc = unsafe {
            libc::bind(
                raw,
                ptr::from_ref(&sa).cast(),
                mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(("bind", io::Error::last_os_error()));
        }
        Ok(Xsk {
            fill,
            comp,
            rx,
            tx,
            umem,
            fd,
            mode: if copy_flag == libc::XDP_ZEROCOPY {
                BindMode::ZeroCopy
            } else {
                BindMode::Copy
            },
        })
    }

    /// The socket's fd (for the XSKMAP).
    pub(crate) fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Move sent frames from the completion ring back to the fill ring.
    pub(crate) fn recycle(&mut self) -> u32 {
        let n = self.comp.available();
        if n == 0 {
            return 0;
        }
        let free = self.fill.free(n);
        let n = n.min(free);
        for k in 0..n {
            let addr = self.comp.peek(k);
            self.fill.push(frame_base(addr));
        }
        self.comp.release(n);
        self.fill.submit();
        n
    }

    /// Received descriptors ready to read, at most `max`.
    pub(crate) fn rx_ready(&mut self, max: u32) -> u32 {
        self.rx.available().min(max)
    }

    /// The `k`-th ready packet: its UMEM address and length.
    pub(crate) fn rx_desc(&self, k: u32) -> (u64, usize) {
        let d = self.rx.peek(k);
        (d.addr, d.len as usize)
    }

    /// Release the first `n` ready rx descriptors.
    pub(crate) fn rx_release(&mut self, n: u32) {
        self.rx.release(n);
    }

    /// The frame holding UMEM address `addr`: from `addr` to its frame's
    /// end. Checked against the area, so a bad address from the kernel
    /// cannot reach outside it.
    pub(crate) fn frame_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let start = usize::try_from(addr).ok()?;
        let end = usize::try_from(frame_base(addr) + u64::from(FRAME_SIZE)).ok()?;
        if end > self.umem.len {
            return None;
        }
        // SAFETY: [start, end) lies inside the UMEM mapping; the frame is
        // ours (received and not yet given back), so the kernel does not
        // write it, and `&mut self` keeps a second slice from existing.
        Some(unsafe { std::slice::from_raw_parts_mut(self.umem.ptr.add(start), end - start) })
    }

    /// Queue frame `addr` (`len` bytes) for sending; false when the tx ring
    /// has no room (then the caller gives the frame back with `refill`).
    pub(crate) fn tx_push(&mut self, addr: u64, len: usize) -> bool {
        if self.tx.free(1) == 0 {
            return false;
        }
        self.tx.push(libc::xdp_desc {
            addr,
            len: len as u32,
            options: 0,
        });
        true
    }

    /// Give frame `addr` back to the kernel for receiving (not sent).
    pub(crate) fn refill(&mut self, addr: u64) {
        if self.fill.free(1) > 0 {
            self.fill.push(frame_base(addr));
        }
    }

    /// Publish the tx and fill rings' new slots.
    pub(crate) fn submit(&mut self) {
        self.fill.submit();
        self.tx.submit();
    }

    /// Replies on the tx ring the kernel has not taken yet.
    pub(crate) fn tx_outstanding(&self) -> u32 {
        self.tx.outstanding()
    }

    /// Kick the kernel to send what the tx ring holds, when it asks for it
    /// (copy mode always does). Bounded: the kernel sends a limited batch
    /// per call.
    pub(crate) fn kick(&mut self) {
        for _ in 0..8 {
            if self.tx.outstanding() == 0 || !self.tx.needs_wakeup() {
                return;
            }
            // SAFETY: a zero-length sendto without buffers or address is
            // the documented AF_XDP tx kick.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    ptr::null(),
                    0,
                )
            };
            if rc >= 0 {
                continue;
            }
            match io::Error::last_os_error().raw_os_error() {
                // Busy or out of buffers: completions will free room.
                Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {
                    self.recycle();
                }
                _ => return,
            }
        }
    }

    /// Wait up to `timeout_ms` for received packets. poll(2) on an AF_XDP
    /// socket also sends what the tx ring holds (copy mode) or wakes the
    /// driver (zero-copy), so replies never wait for the next packet.
    pub(crate) fn wait(&self, timeout_ms: i32) {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        unsafe {
            libc::poll(&mut p, 1, timeout_ms);
        }
    }

    /// Kernel-side drop counters (ring full, fill ring empty, ...).
    pub(crate) fn kernel_stats(&self) -> Option<libc::xdp_statistics> {
        // SAFETY: all-zero is a valid xdp_statistics.
        let mut s: libc::xdp_statistics = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `s` and `len` are live and sized as passed.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                ptr::from_mut(&mut s).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(s)
    }
}

/// The start of the frame holding `addr` (aligned chunk mode).
fn frame_base(addr: u64) -> u64 {
    addr & !(u64::from(FRAME_SIZE) - 1)
}
