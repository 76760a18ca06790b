#![cfg(feature = "cli")]
//! SIGPIPE's action is process-wide: this test has a binary of its own.

use std::io::{ErrorKind, IoSlice, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use ddpm_io::cli::IgnoreSigpipe;

fn sigpipe_action() -> libc::sighandler_t {
    // SAFETY: sigaction(2) with a null new action only reads the current one.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old), 0);
        old.sa_sigaction
    }
}

/// The action the tools run with (`ddpm_io::cli::parse`): SIGPIPE ends the process.
fn default_sigpipe_action() {
    // SAFETY: default action, no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// writev(2), as a network client writes, to a peer that has closed its end.
fn writev_to_a_closed_peer() -> std::io::Result<usize> {
    let (mut ours, theirs) = UnixStream::pair()?;
    drop(theirs);
    ours.write_vectored(&[IoSlice::new(b"header"), IoSlice::new(b"body")])
}

#[test]
fn a_writev_to_a_peer_that_has_gone_fails_with_epipe_while_the_guard_is_held() {
    default_sigpipe_action();
    let guard = IgnoreSigpipe::new();
    let err = writev_to_a_closed_peer().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    drop(guard);
    assert_eq!(sigpipe_action(), libc::SIG_DFL, "the guard did not put the default action back");
}

/// Set in the child's environment only, so that `--ignored` alone does not kill the harness.
const CHILD: &str = "DDPM_RS_SIGPIPE_CHILD";

/// Run only as a child of the test below: the same write without the guard.
#[test]
#[ignore = "run by without_the_guard_the_same_writev_kills_the_process, in a process of its own"]
fn unguarded_writev_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    default_sigpipe_action();
    let result = writev_to_a_closed_peer();
    // Reached only if the signal did not end the process.
    panic!("the unguarded writev returned {result:?} instead of raising SIGPIPE");
}

#[test]
fn without_the_guard_the_same_writev_kills_the_process() {
    // The control of the test above: what the guard prevents does happen without it.
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "unguarded_writev_child", "--ignored", "--test-threads", "1"])
        .env(CHILD, "1")
        .output()
        .unwrap()
        .status;
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "child ended with {status:?}");
}
