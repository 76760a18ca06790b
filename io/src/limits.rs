//! What a request may ask of the machine, checked before anything is allocated: memory,
//! threads, and the size of files read whole. Shared by the three tools, so that a model,
//! config or flag that asks for more than the machine can give is refused with the numbers
//! instead of aborting in an allocation.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// 0: not set by the caller (the default applies).
static MEMORY_LIMIT: AtomicU64 = AtomicU64::new(0);

/// Sets the memory limit of this process (the CLIs' `--max-memory`).
pub fn set_memory_limit(bytes: u64) {
    MEMORY_LIMIT.store(bytes, Ordering::Relaxed);
}

/// Parses a size such as `8G`, `512M`, `1.5GiB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => f64::NAN,
    };
    let v: f64 = num.parse().unwrap_or(f64::NAN) * mult;
    if !v.is_finite() || v < 1.0 || v > u64::MAX as f64 {
        return Err(Error::InvalidArgument(format!(
            "memory size: found \"{text}\", expected a positive size such as 8G, 512M or a number of bytes"
        )));
    }
    Ok(v as u64)
}

/// The soft address-space limit of this process (RLIMIT_AS), if any.
fn address_space_limit() -> Option<u64> {
    // /proc/self/limits: "Max address space   unlimited   unlimited   bytes"
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The memory a request may use, in bytes, and where that number comes from: the caller's
/// limit (`--max-memory`), else `DDPM_RS_MAX_MEMORY`, else 80% of the machine's memory (half
/// of the address-space limit, when the process has a smaller one: the libraries reserve
/// address space of their own).
pub fn memory_limit() -> (u64, String) {
    let set = MEMORY_LIMIT.load(Ordering::Relaxed);
    if set > 0 {
        return (set, "--max-memory".into());
    }
    if let Some(v) = std::env::var("DDPM_RS_MAX_MEMORY").ok().and_then(|v| parse_size(&v).ok()) {
        return (v, "DDPM_RS_MAX_MEMORY".into());
    }
    let total = crate::machine::total_memory().unwrap_or(8 << 30);
    let machine = total / 10 * 8;
    match address_space_limit() {
        Some(a) if a / 2 < machine => (a / 2, format!("half the process's address-space limit of {}", human(a))),
        _ => (machine, format!("80% of this machine's {}", human(total))),
    }
}

/// A byte count for messages: "1.50 GiB".
pub fn human(bytes: impl Into<u128>) -> String {
    let b = bytes.into() as f64;
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Refuses a request whose memory need exceeds the limit. `what` says what needs it, and
/// how the number was computed ("--n 1000000000000 samples of 1x28x28 float32").
pub fn check_memory(what: &str, bytes: u128) -> Result<()> {
    let (limit, source) = memory_limit();
    if bytes > limit as u128 {
        return Err(Error::TooLarge(format!(
            "{what} needs {} of memory, more than the limit of {} ({source}; raise it with --max-memory or DDPM_RS_MAX_MEMORY)",
            human(bytes),
            human(limit)
        )));
    }
    Ok(())
}

/// Bytes of `n` values of `size` bytes each, computed without overflow.
pub fn bytes_of(counts: &[usize], size: usize) -> u128 {
    counts.iter().fold(size as u128, |acc, &c| acc.saturating_mul(c as u128))
}

/// The most threads a `--threads` may ask for: 4 per logical CPU (at least 64).
pub fn max_threads() -> usize {
    (crate::machine::logical_cpus() * 4).max(64)
}

/// Refuses 0 threads or more than [`max_threads`].
pub fn check_threads(flag: &str, n: usize) -> Result<()> {
    if n == 0 || n > max_threads() {
        return Err(Error::InvalidArgument(format!(
            "{flag} {n}: expected 1 to {} (this machine has {} logical CPUs)",
            max_threads(),
            crate::machine::logical_cpus()
        )));
    }
    Ok(())
}

/// The largest config file read (JSON configs are a few KB; trained_betas of 100,000 steps
/// fit easily).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn huge_requests_are_refused_with_numbers() {
        let e = check_memory("a test of 10^15 floats", bytes_of(&[1_000_000_000, 1_000_000], 4)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("a test of 10^15 floats") && msg.contains("PiB") && msg.contains("limit"), "{msg}");
        assert!(check_memory("a small request", 1024).is_ok());
    }
}
