//! Where threads run: the DNS plane (UDP workers, the TCP loop) at
//! normal priority, the control plane (prober, API, cluster exchange, file
//! watch, webhooks, anycast) on a runtime of its own at a lower priority,
//! and config compiles (every reload) on control threads as `SCHED_BATCH`.
//! With `server.dns_cpus` the two planes are also pinned to disjoint CPUs.
//!
//! Linux applies nice values, policies and affinities per thread, so each
//! thread sets its own when it starts (a plain syscall on its thread id).

use std::io;

use anyhow::Context;
use tracing::{info, warn};

use crate::snapshot::DnsCpus;

/// Nice value of control-plane threads: under contention a nice-10 thread
/// gets about a tenth of a nice-0 DNS thread's share (weights 110 vs 1024),
/// which still covers the prober at 10,000 endpoints (about 5 % of a core),
/// so probes do not fall behind while DNS answers first.
pub(crate) const CONTROL_NICE: i32 = 10;

/// Thread-name prefix of the control plane's runtime (workers and blocking
/// pool).
pub(crate) const CONTROL_THREAD: &str = "steerdns-ctl";

/// Thread name of a SIGHUP reload.
pub(crate) const RELOAD_THREAD: &str = "steerdns-reload";

/// Thread name of the DNS runtime's workers.
pub(crate) const DNS_THREAD: &str = "dns-rt";

/// The CPUs of each plane; `None`: not pinned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Placement {
    /// UDP worker `i` runs on `dns[i % dns.len()]`; the TCP loop on all.
    pub(crate) dns: Option<Vec<usize>>,
    /// The control plane's CPUs.
    pub(crate) control: Option<Vec<usize>>,
}

impl Placement {
    /// Decide from `server.dns_cpus`, the CPUs this process may use
    /// (`allowed`, sorted) and the UDP workers per address.
    pub(crate) fn plan(
        setting: &DnsCpus,
        allowed: &[usize],
        workers: usize,
    ) -> anyhow::Result<Self> {
        match setting {
            DnsCpus::Off => Ok(Placement::default()),
            DnsCpus::Auto if allowed.len() < 2 => {
                info!("server.dns_cpus = \"auto\": one usable CPU, nothing pinned");
                Ok(Placement::default())
            }
            DnsCpus::Auto => {
                // Leave at least one CPU to the control plane; with more
                // workers than that, workers share the DNS CPUs in turn.
                let n = workers.clamp(1, allowed.len() - 1);
                Ok(Placement {
                    dns: Some(allowed[..n].to_vec()),
                    control: Some(allowed[n..].to_vec()),
                })
            }
            DnsCpus::List(cpus) => {
                if let Some(bad) = cpus.iter().find(|c| !allowed.contains(c)) {
                    anyhow::bail!(
                        "server.dns_cpus: CPU {bad} is not one this process may run on (allowed: {allowed:?})"
                    );
                }
                let rest: Vec<usize> = allowed
                    .iter()
                    .copied()
                    .filter(|c| !cpus.contains(c))
                    .collect();
                if rest.is_empty() {
                    warn!(
                        "server.dns_cpus lists every usable CPU: the control plane is not pinned (it still runs at a lower priority)"
                    );
                }
                Ok(Placement {
                    dns: Some(cpus.clone()),
                    control: (!rest.is_empty()).then_some(rest),
                })
            }
        }
    }

    /// The CPU of UDP worker `index`, when pinned.
    pub(crate) fn udp_cpu(&self, index: usize) -> Option<usize> {
        self.dns.as_ref().map(|d| d[index % d.len()])
    }

    /// Run the calling thread as a DNS thread (threads it starts inherit it).
    pub(crate) fn enter_dns(&self) {
        if let Some(cpus) = &self.dns {
            log_err("pinning a DNS thread", pin_current(cpus));
        }
    }

    /// Run the calling thread as a control-plane thread.
    pub(crate) fn enter_control(&self) {
        if let Some(cpus) = &self.control {
            log_err("pinning a control thread", pin_current(cpus));
        }
        log_err(
            "lowering a control thread's priority",
            set_current_nice(CONTROL_NICE),
        );
    }
}

fn log_err(what: &str, r: io::Result<()>) {
    if let Err(e) = r {
        warn!("{what}: {e}");
    }
}

/// The CPUs the calling thread may run on, sorted (at start: the
/// process's, as `taskset` or systemd's `CPUAffinity=` set them).
pub(crate) fn allowed_cpus() -> anyhow::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is empty and valid; we pass its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("sched_getaffinity");
    }
    // SAFETY: CPU_ISSET reads a bit of our own set.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pin the calling thread to `cpus`.
pub(crate) fn pin_current(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: as in allowed_cpus; CPU_SET bounds-checks nothing, so the
    // numbers are checked against CPU_SETSIZE first.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {c}"),
            ));
        }
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: 0 is the calling thread; the set is ours and sized.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Set the calling thread's nice value (Linux: per thread, by thread id).
/// Raising it needs no privilege; lowering it below the current value
/// does, so a thread that is already nicer is left as it is.
pub(crate) fn set_current_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: plain syscalls on our own thread id.
    unsafe { *libc::__errno_location() = 0 };
    let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    if now >= nice && std::io::Error::last_os_error().raw_os_error() == Some(0) {
        return Ok(());
    }
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Set the calling thread's policy to `SCHED_BATCH` (`batch`) or back to
/// `SCHED_OTHER`; both keep the nice value and need no privilege.
pub(crate) fn set_current_batch(batch: bool) -> io::Result<()> {
    let policy = if batch {
        libc::SCHED_BATCH
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: 0 is the calling thread; param is a valid sched_param.
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Run `f` (a config compile) on the calling thread as a control thread
/// and `SCHED_BATCH`: a compile never preempts a DNS thread on wake-up and
/// yields to it under contention. Called by every reload (SIGHUP, API,
/// file watch), which all run on control-plane threads.
pub(crate) fn compile<T>(placement: &Placement, f: impl FnOnce() -> T) -> T {
    placement.enter_control();
    log_err("SCHED_BATCH for a compile", set_current_batch(true));
    let r = f();
    log_err("SCHED_OTHER after a compile", set_current_batch(false));
    r
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn plans() {
        let p = |s: &DnsCpus, allowed: &[usize], w| Placement::plan(s, allowed, w).unwrap();
        assert_eq!(p(&DnsCpus::Off, &[0, 1], 1), Placement::default());
        assert_eq!(p(&DnsCpus::Auto, &[3], 1), Placement::default());
        let two = p(&DnsCpus::Auto, &[0, 1], 1);
        assert_eq!((two.dns, two.control), (Some(vec![0]), Some(vec![1])));
        // More workers than CPUs: one CPU still left to the control plane,
        // workers take the DNS CPUs in turn.
        let four = p(&DnsCpus::Auto, &[0, 1, 2, 3], 8);
        assert_eq!(four.dns, Some(vec![0, 1, 2]));
        assert_eq!(four.control, Some(vec![3]));
        assert_eq!((four.udp_cpu(0), four.udp_cpu(4)), (Some(0), Some(1)));
        let list = p(&DnsCpus::List(vec![2]), &[0, 1, 2], 1);
        assert_eq!((list.dns, list.control), (Some(vec![2]), Some(vec![0, 1])));
        let all = p(&DnsCpus::List(vec![0, 1]), &[0, 1], 2);
        assert_eq!((all.dns, all.control), (Some(vec![0, 1]), None));
        let e = Placement::plan(&DnsCpus::List(vec![5]), &[0, 1], 1).unwrap_err();
        assert!(
            e.to_string().contains("server.dns_cpus: CPU 5 is not one"),
            "{e}"
        );
    }

    /// The calling thread's nice value.
    pub(in crate::app) fn nice() -> i32 {
        // SAFETY: plain syscalls on our own thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    fn policy() -> i32 {
        // SAFETY: 0 is the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn a_compile_runs_niced_and_as_batch() {
        // On a thread of its own: the priority stays lowered afterwards.
        // A test run under `nice` starts higher and stays there.
        std::thread::spawn(|| {
            let want = nice().max(CONTROL_NICE);
            let inside = compile(&Placement::default(), || (nice(), policy()));
            assert_eq!(inside, (want, libc::SCHED_BATCH));
            assert_eq!((nice(), policy()), (want, libc::SCHED_OTHER));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pinning_a_thread() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        let last = *allowed.last().unwrap();
        std::thread::spawn(move || {
            pin_current(&[last]).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![last]);
        })
        .join()
        .unwrap();
        assert!(pin_current(&[libc::CPU_SETSIZE as usize]).is_err());
    }
}
