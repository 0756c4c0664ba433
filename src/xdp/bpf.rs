//! The few bpf(2) commands the XDP path needs, called through `libc`: create
//! the XSKMAP, load the program, attach it with a BPF link (closing the link
//! fd, also by the process dying, detaches it), put sockets into the map;
//! and the per-CPU counter of frames the program passes, with its read.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::warn;

use super::prog::Insn;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
#[cfg(test)]
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// `XDP_FLAGS_SKB_MODE`: generic XDP, after the kernel built the skb.
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP in the driver.
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Room for every `union bpf_attr` variant we use; the kernel accepts a
/// larger size as long as the tail is zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, at: usize, v: u64) -> &mut Self {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    #[cfg(test)]
    fn read_u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable, zero-tailed buffer of the size we
    // pass; every pointer stored in it (set by the callers) points to memory
    // that outlives this call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn fd_of(rc: libc::c_long) -> OwnedFd {
    // SAFETY: the command returned a new file descriptor that nothing else
    // owns.
    unsafe { OwnedFd::from_raw_fd(rc as i32) }
}

/// A `BPF_MAP_TYPE_XSKMAP` with `entries` slots (one per receive queue).
pub(crate) fn create_xskmap(entries: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, BPF_MAP_TYPE_XSKMAP)
        .u32(4, 4) // key_size
        .u32(8, 4) // value_size
        .u32(12, entries.max(1));
    // map_name at offset 28.
    a.0[28..28 + 12].copy_from_slice(b"steerdns_xsk");
    bpf(BPF_MAP_CREATE, &mut a).map(fd_of)
}

/// A `BPF_MAP_TYPE_PERCPU_ARRAY` with one `u64` slot (key 0): a counter
/// the program increments without atomics, each CPU in its own copy.
pub(crate) fn create_percpu_counter() -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, BPF_MAP_TYPE_PERCPU_ARRAY)
        .u32(4, 4) // key_size
        .u32(8, 8) // value_size
        .u32(12, 1); // max_entries
    a.0[28..28 + 13].copy_from_slice(b"steerdns_pass");
    bpf(BPF_MAP_CREATE, &mut a).map(fd_of)
}

/// How many CPUs a per-CPU map holds a value for: the kernel copies one
/// per *possible* CPU (`/sys/devices/system/cpu/possible`), not per online
/// one.
pub(crate) fn possible_cpus() -> io::Result<usize> {
    let path = "/sys/devices/system/cpu/possible";
    let text = std::fs::read_to_string(path)?;
    count_cpus(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: not a CPU list: {:?}", text.trim()),
        )
    })
}

/// The number of CPUs in a kernel CPU list such as `0-1` or `0,2-3`.
fn count_cpus(list: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in list.trim().split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<usize>().ok()?, hi.parse::<usize>().ok()?),
            None => {
                let c = part.parse::<usize>().ok()?;
                (c, c)
            }
        };
        n = n.checked_add(hi.checked_sub(lo)? + 1)?;
    }
    (n > 0).then_some(n)
}

/// The sum over all CPUs of slot `key` of a per-CPU map of `u64`s
/// (`cpus`: from [`possible_cpus`]). One system call and a buffer of
/// `cpus` values: for the metrics, not a hot path.
pub(crate) fn percpu_sum(map: &OwnedFd, key: u32, cpus: usize) -> io::Result<u64> {
    // Each CPU's value is rounded up to 8 bytes; a u64 already is.
    let mut values = vec![0u64; cpus];
    let mut a = Attr::new();
    a.u32(0, map.as_raw_fd() as u32)
        .u64(8, std::ptr::from_ref(&key) as u64)
        .u64(16, values.as_mut_ptr() as u64);
    bpf(BPF_MAP_LOOKUP_ELEM, &mut a)?;
    Ok(values.iter().fold(0u64, |s, v| s.wrapping_add(*v)))
}

/// The program's count of the frames it passed (slot 0 of a per-CPU
/// array), read with a system call: by the metrics once a second and the
/// stop log, never by the workers.
pub(crate) struct PassCounter {
    map: OwnedFd,
    /// Possible CPUs: the values one lookup returns.
    cpus: usize,
    /// The largest sum read so far, returned when a read fails.
    last: AtomicU64,
    warned: AtomicBool,
}

impl PassCounter {
    pub(crate) fn new(map: OwnedFd, cpus: usize) -> Self {
        PassCounter {
            map,
            cpus,
            last: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// The count now, or the last one read when the read fails.
    pub(crate) fn read(&self) -> u64 {
        match percpu_sum(&self.map, 0, self.cpus) {
            // Each CPU's count only grows, so the sum does too; max() keeps
            // that true for readers racing each other.
            Ok(n) => self.last.fetch_max(n, Ordering::Relaxed).max(n),
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    warn!(error = %e, "xdp: cannot read the pass counter; it stays at its last value");
                }
                self.last.load(Ordering::Relaxed)
            }
        }
    }
}

/// Put socket `xsk` into slot `key` of the XSKMAP.
pub(crate) fn map_set(map: &OwnedFd, key: u32, xsk: i32) -> io::Result<()> {
    let value = xsk as u32;
    let mut a = Attr::new();
    a.u32(0, map.as_raw_fd() as u32)
        .u64(8, std::ptr::from_ref(&key) as u64)
        .u64(16, std::ptr::from_ref(&value) as u64)
        .u64(24, 0); // BPF_ANY
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
}

/// Load an XDP program; on a verifier error the message includes its log.
pub(crate) fn load_xdp(insns: &[Insn]) -> io::Result<OwnedFd> {
    let license = c"Dual MIT/GPL";
    let mut log = vec![0u8; 64 * 1024];
    let load = |log_level: u32, log: &mut [u8]| {
        let mut a = Attr::new();
        a.u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, log_level)
            .u32(28, log.len() as u32)
            .u64(32, log.as_mut_ptr() as u64);
        // prog_name at 48, expected_attach_type at 68.
        a.0[48..48 + 8].copy_from_slice(b"steerdns");
        a.u32(68, BPF_XDP);
        bpf(BPF_PROG_LOAD, &mut a).map(fd_of)
    };
    match load(0, &mut []) {
        Ok(fd) => Ok(fd),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            // Load again with the verifier log, to say why.
            match load(1, &mut log) {
                Ok(fd) => Ok(fd),
                Err(e2) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    let tail: Vec<&str> = text.lines().rev().take(6).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    Err(io::Error::new(
                        e2.kind(),
                        format!("{e2}; verifier: {}", tail.join(" | ")),
                    ))
                }
            }
        }
        Err(e) => Err(e),
    }
}

/// Attach `prog` to interface `ifindex` with a BPF link (`flags`: the XDP
/// mode). The program stays attached while the returned fd is open.
pub(crate) fn link_xdp(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(4, ifindex)
        .u32(8, BPF_XDP)
        .u32(12, flags);
    bpf(BPF_LINK_CREATE, &mut a).map(fd_of)
}

#[cfg(test)]
/// Run `prog` once on `packet` (`BPF_PROG_TEST_RUN`) and return its action.
pub(crate) fn test_run(prog: &OwnedFd, packet: &[u8]) -> io::Result<u32> {
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(8, packet.len() as u32) // data_size_in
        .u64(16, packet.as_ptr() as u64) // data_in
        .u32(32, 1); // repeat
    bpf(BPF_PROG_TEST_RUN, &mut a)?;
    Ok(a.read_u32(4)) // retval
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cpu_lists() {
        assert_eq!(count_cpus("0"), Some(1));
        assert_eq!(count_cpus("0-1\n"), Some(2));
        assert_eq!(count_cpus("0,2-3"), Some(3));
        assert_eq!(count_cpus("0-3,8-11"), Some(8));
        assert_eq!(count_cpus(""), None);
        assert_eq!(count_cpus("3-1"), None);
        assert_eq!(count_cpus("0-x"), None);
        assert!(possible_cpus().unwrap() >= 1);
    }
}
