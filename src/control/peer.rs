//! Who is at the other end of a Unix socket (`SO_PEERCRED`).

use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixStream;

/// The user id of the process that connected `stream`.
pub fn uid(stream: &UnixStream) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given, and
    // the descriptor is open for the call's length.
    let done = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// This process's effective user id.
pub fn own_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Whether a peer of `peer` may run admin commands in a server running
/// as `server`: the same user, or root.
pub fn allowed(peer: u32, server: u32) -> bool {
    peer == server || peer == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_user_and_root_are_allowed_no_one_else() {
        assert!(allowed(1000, 1000));
        assert!(allowed(0, 1000));
        assert!(!allowed(65534, 1000));
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(uid(&a).unwrap(), own_uid());
    }
}
