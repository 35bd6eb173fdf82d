//! The machine's limits that bound the connection cap: open files and
//! threads (pids). Read and raised at the binary's start-up only, never in
//! the library code the tests share.

use crate::config::DEFAULT_MAX_CONNECTIONS;

/// File descriptors kept back from connections: the store's files, the
/// log, the listener, outbound webhooks, with room to spare.
const FD_HEADROOM: u64 = 64;

/// Raises the soft limit on open files to the hard limit: services are
/// often started with a soft limit of 1,024 and a far higher hard one.
/// A failure leaves the limit as it was (the cap then follows it).
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                eprintln!(
                    "authd: could not raise the open-file limit; connections are capped below it"
                );
            }
        }
    }
}

/// The default connection cap: the smallest of 1,024, the open-file limit
/// less headroom for the store and `db_pool_size` database connections,
/// and half the pids limit (each connection has a thread of its own).
pub fn default_max_connections(db_pool_size: u32) -> usize {
    let mut cap = DEFAULT_MAX_CONNECTIONS as u64;
    if let Some(files) = soft_limit(libc::RLIMIT_NOFILE) {
        cap = cap.min(files.saturating_sub(FD_HEADROOM + u64::from(db_pool_size)));
    }
    if let Some(pids) = pids_limit() {
        cap = cap.min(pids / 2);
    }
    usize::try_from(cap)
        .unwrap_or(DEFAULT_MAX_CONNECTIONS)
        .max(1)
}

/// The soft value of a resource limit, `None` when unlimited.
fn soft_limit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct given.
    let ok = unsafe { libc::getrlimit(resource, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The tightest limit on this process's threads: the cgroup's `pids.max`
/// (systemd's TasksMax), and `RLIMIT_NPROC` unless running as root (which
/// ignores it).
fn pids_limit() -> Option<u64> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let nproc = if root {
        None
    } else {
        soft_limit(libc::RLIMIT_NPROC)
    };
    [nproc, cgroup_pids_max()].into_iter().flatten().min()
}

/// `pids.max` of this process's cgroup (v2), if it sets one.
fn cgroup_pids_max() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroups.lines().find_map(|line| line.strip_prefix("0::"))?;
    let max = std::fs::read_to_string(format!(
        "/sys/fs/cgroup{}/pids.max",
        path.trim_end_matches('/')
    ))
    .ok()?;
    max.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_cap_is_positive_and_at_most_1024() {
        let cap = super::default_max_connections(16);
        assert!((1..=1024).contains(&cap), "{cap}");
    }
}
