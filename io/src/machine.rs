//! Facts about the machine: cores, memory, the CPU's name, the per-user cache folder.

/// The number of physical cores (ONNX Runtime's default intra-op thread count on CPU).
pub fn physical_cores() -> usize {
    // /proc/cpuinfo lists (physical id, core id) pairs; count the distinct ones.
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return std::thread::available_parallelism().map_or(1, |n| n.get());
    };
    let mut cores = std::collections::BTreeSet::new();
    let (mut phys, mut core) = (None, None);
    for line in info.lines() {
        let mut kv = line.splitn(2, ':').map(str::trim);
        match (kv.next(), kv.next()) {
            (Some("physical id"), Some(v)) => phys = Some(v.to_string()),
            (Some("core id"), Some(v)) => core = Some(v.to_string()),
            (Some(""), None) | (None, _) => {}
            _ => {}
        }
        if line.trim().is_empty() {
            if let (Some(p), Some(c)) = (phys.take(), core.take()) {
                cores.insert((p, c));
            }
        }
    }
    if let (Some(p), Some(c)) = (phys, core) {
        cores.insert((p, c));
    }
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

/// The CPU's model name (`model name` of /proc/cpuinfo), or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The project's per-user cache folder: `$DDPM_RS_CACHE`, else
/// `$XDG_CACHE_HOME/ddpm-rs`, else `~/.cache/ddpm-rs`.
pub fn cache_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(c) = std::env::var_os("DDPM_RS_CACHE").filter(|c| !c.is_empty()) {
        return PathBuf::from(c);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|c| !c.is_empty()) {
        return PathBuf::from(x).join("ddpm-rs");
    }
    std::env::var_os("HOME").map_or_else(|| std::env::temp_dir().join("ddpm-rs"), |h| PathBuf::from(h).join(".cache").join("ddpm-rs"))
}
/// Total memory of the machine in bytes (`MemTotal` of /proc/meminfo), if known.
pub fn total_memory() -> Option<u64> {
    meminfo("MemTotal:")
}

/// Memory available to new allocations in bytes (`MemAvailable` of /proc/meminfo), if known.
pub fn available_memory() -> Option<u64> {
    meminfo("MemAvailable:")
}

fn meminfo(key: &str) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// The logical CPUs this process may run on (cgroup and affinity limits included).
pub fn logical_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
