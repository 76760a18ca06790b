//! Plumbing shared by the project's three command-line tools (runtime, exporter, trainer):
//! one-line usage errors with exit 2, logging to stderr, a quiet end on a closed pipe.

use std::io::IsTerminal;
use std::process::ExitCode;

/// Parses the command line; on bad usage prints one line and returns exit code 2 (0 for
/// --help and --version, which clap prints in full).
pub fn parse<P: clap::Parser>() -> Result<P, ExitCode> {
    // Like other Unix tools, end quietly when the reader of stdout goes away (`| head`).
    // SAFETY: setting a signal disposition to its default at start-up, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match P::try_parse() {
        Ok(p) => Ok(p),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = e.render().to_string();
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:"))
                .collect();
            eprintln!("{}", line.join(" "));
            Err(ExitCode::from(2))
        }
    }
}

/// While it is alive, SIGPIPE is ignored, so that a write to a socket whose peer has gone fails
/// with EPIPE instead of ending the process. [`parse`] gives SIGPIPE its default action (a
/// quiet end on `| head`), and a network client writes with writev(2), which, unlike std's
/// send(2), does not ask the kernel to hold the signal back: without this guard a server killed
/// mid-request ended the client silently (no message, killed by signal 13) instead of letting
/// its retries reconnect. Hold it while talking to a server; dropped, the action it replaced
/// is restored, so a closed stdout ends the tool quietly again.
pub struct IgnoreSigpipe {
    previous: libc::sighandler_t,
}

impl IgnoreSigpipe {
    pub fn new() -> Self {
        // SAFETY: signal(2) with SIG_IGN installs no handler; the previous action is kept to
        // be put back on drop.
        let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        Self { previous }
    }
}

impl Default for IgnoreSigpipe {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IgnoreSigpipe {
    fn drop(&mut self) {
        if self.previous != libc::SIG_ERR {
            // SAFETY: puts back the action signal(2) returned in `new`.
            unsafe {
                libc::signal(libc::SIGPIPE, self.previous);
            }
        }
    }
}

/// The whole `main` of a tool: parses the command line ([`parse`]), sets up logging
/// ([`init_logging`]) and runs `run`; an error is printed as one line, `error: ...`, and
/// exits with `exit_code(&error)` (2 for bad input, 1 otherwise, by the project's rule).
pub fn main<P: clap::Parser, E: std::fmt::Display>(
    default_level: &str,
    with_time: bool,
    run: impl FnOnce(P) -> Result<ExitCode, E>,
    exit_code: impl FnOnce(&E) -> u8,
) -> ExitCode {
    let cli = match parse::<P>() {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(default_level, with_time);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Logs to stderr at `default_level` unless RUST_LOG says otherwise; colours only on a
/// terminal; timestamps only when `with_time`.
pub fn init_logging(default_level: &str, with_time: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    if with_time {
        builder.init();
    } else {
        builder.without_time().init();
    }
}

/// An error message as one line: whitespace runs (ONNX Runtime's messages span lines)
/// collapsed, at most 1,000 characters.
pub fn one_line(message: &str) -> String {
    let mut line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > 1000 {
        let cut = (0..=1000).rev().find(|&i| line.is_char_boundary(i)).unwrap_or(0);
        line.truncate(cut);
        line.push_str(" ...");
    }
    line
}

/// A clap parser for one of the project's named enums: its names are the possible values
/// (shown in --help), its `FromStr` the conversion.
pub fn named<T: std::str::FromStr + Clone + Send + Sync + 'static>(
    names: &'static [&'static str],
) -> impl clap::builder::TypedValueParser<Value = T>
where
    T::Err: std::fmt::Display,
{
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(names).try_map(|s| s.parse::<T>().map_err(|e| e.to_string()))
}
