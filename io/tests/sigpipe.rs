#![cfg(feature = "cli")]
//! SIGPIPE's action is process-wide: this test has a binary of its own.

use std::io::{ErrorKind, IoSlice, Write};
use std::os::unix::net::UnixStream;

use ddpm_io::cli::IgnoreSigpipe;

fn sigpipe_action() -> libc::sighandler_t {
    // SAFETY: sigaction(2) with a null new action only reads the current one.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old), 0);
        old.sa_sigaction
    }
}

#[test]
fn a_writev_to_a_peer_that_has_gone_fails_with_epipe_while_the_guard_is_held() {
    // The action the tools run with (`ddpm_io::cli::parse`): SIGPIPE ends the process.
    // SAFETY: default action, no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let guard = IgnoreSigpipe::new();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    drop(theirs);
    // writev(2), as a network client writes; without the guard this process would be
    // killed here by SIGPIPE.
    let err = ours.write_vectored(&[IoSlice::new(b"header"), IoSlice::new(b"body")]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    drop(guard);
    assert_eq!(sigpipe_action(), libc::SIG_DFL, "the guard did not put the default action back");
}
