//! Facts about the machine.

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

