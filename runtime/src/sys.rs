//! Facts about the machine: the CPU features that decide precisions, and (re-exported
//! from `ddpm-io`) cores, memory, the CPU's name and the cache folder.

pub use ddpm_io::machine::{available_memory, cache_dir, cpu_model, logical_cpus, physical_cores, total_memory};

/// The CPU features that decide which precisions and kernels this machine can run.
///
/// Detected once per process: through cpuid and the OS's register-state support (std's
/// `is_x86_feature_detected!`) for the AVX families, and through the kernel's flags in
/// /proc/cpuinfo for AMX (the kernel lists AMX only when it enables the tile state).
/// `DDPM_RS_CPU_MASK` (a comma list of the names below, or `avx512` for every AVX-512
/// feature and `amx` for every AMX one) hides features, so that the tests can take the
/// branches of a CPU that lacks them; a masked feature is reported as masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuFeatures {
    pub avx2: bool,
    pub fma: bool,
    pub avx512f: bool,
    pub avx512_bf16: bool,
    pub avx512_vnni: bool,
    pub avx_vnni: bool,
    pub amx_bf16: bool,
    pub amx_int8: bool,
    /// Features present on the CPU but hidden by `DDPM_RS_CPU_MASK`.
    pub masked: Vec<&'static str>,
}

/// The feature names used in messages, `runtime info` and `DDPM_RS_CPU_MASK` (as the Linux
/// kernel spells them in /proc/cpuinfo).
pub const CPU_FEATURE_NAMES: [&str; 8] = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8"];

impl CpuFeatures {
    /// The features of this machine (cached), less those masked by `DDPM_RS_CPU_MASK`.
    pub fn get() -> &'static CpuFeatures {
        static FEATURES: std::sync::OnceLock<CpuFeatures> = std::sync::OnceLock::new();
        FEATURES.get_or_init(|| Self::detect(std::env::var("DDPM_RS_CPU_MASK").ok().as_deref()))
    }

    fn detect(mask: Option<&str>) -> CpuFeatures {
        let flags = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines().find(|l| l.starts_with("flags")).map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            })
            .unwrap_or_default();
        let kernel = |name: &str| flags.iter().any(|f| f == name);
        let mut found = [false; 8];
        #[cfg(target_arch = "x86_64")]
        {
            found[0] = std::arch::is_x86_feature_detected!("avx2");
            found[1] = std::arch::is_x86_feature_detected!("fma");
            found[2] = std::arch::is_x86_feature_detected!("avx512f");
            found[3] = std::arch::is_x86_feature_detected!("avx512bf16");
            found[4] = std::arch::is_x86_feature_detected!("avx512vnni");
            found[5] = std::arch::is_x86_feature_detected!("avxvnni");
        }
        found[6] = kernel("amx_bf16") && kernel("amx_tile");
        found[7] = kernel("amx_int8") && kernel("amx_tile");
        let mask: Vec<&str> = mask.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let hidden = |name: &str| {
            mask.iter().any(|m| {
                *m == name || *m == "all" || (*m == "avx512" && name.starts_with("avx512")) || (*m == "amx" && name.starts_with("amx"))
            })
        };
        let mut masked = Vec::new();
        for (i, name) in CPU_FEATURE_NAMES.iter().enumerate() {
            if found[i] && hidden(name) {
                found[i] = false;
                masked.push(*name);
            }
        }
        // AVX-512 sub-features need the foundation.
        if !found[2] {
            for i in [3, 4] {
                if found[i] {
                    found[i] = false;
                    masked.push(CPU_FEATURE_NAMES[i]);
                }
            }
        }
        CpuFeatures {
            avx2: found[0],
            fma: found[1],
            avx512f: found[2],
            avx512_bf16: found[3],
            avx512_vnni: found[4],
            avx_vnni: found[5],
            amx_bf16: found[6],
            amx_int8: found[7],
            masked,
        }
    }

    fn flags(&self) -> [bool; 8] {
        [self.avx2, self.fma, self.avx512f, self.avx512_bf16, self.avx512_vnni, self.avx_vnni, self.amx_bf16, self.amx_int8]
    }

    /// The names of the features present (and not masked).
    pub fn present(&self) -> Vec<&'static str> {
        CPU_FEATURE_NAMES.iter().zip(self.flags()).filter(|(_, on)| *on).map(|(n, _)| *n).collect()
    }

    /// The names of the features absent (or masked).
    pub fn absent(&self) -> Vec<&'static str> {
        CPU_FEATURE_NAMES.iter().zip(self.flags()).filter(|(_, on)| !*on).map(|(n, _)| *n).collect()
    }

    /// Whether the CPU computes in bfloat16 natively (AVX512-BF16 or AMX-BF16): the condition
    /// for a bf16 model to run in reduced precision rather than be emulated or ignored.
    pub fn has_bf16(&self) -> bool {
        self.avx512_bf16 || self.amx_bf16
    }

    /// One line: "has avx2, fma; lacks avx512f, ...", with masked features said so.
    pub fn summary(&self) -> String {
        let has = self.present();
        let mut s = format!("has {}", if has.is_empty() { "none of them".to_string() } else { has.join(", ") });
        if !self.masked.is_empty() {
            s.push_str(&format!(" (masked by DDPM_RS_CPU_MASK: {})", self.masked.join(", ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_hides_features_and_says_so() {
        let all = CpuFeatures::detect(None);
        let masked = CpuFeatures::detect(Some("avx512,amx"));
        assert!(!masked.avx512f && !masked.avx512_bf16 && !masked.avx512_vnni && !masked.amx_bf16 && !masked.amx_int8);
        assert!(!masked.has_bf16());
        assert_eq!(masked.avx2, all.avx2, "avx2 is not masked by avx512,amx");
        let hidden_expected: Vec<&str> =
            ["avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8"].into_iter().filter(|n| all.present().contains(n)).collect();
        let mut got = masked.masked.clone();
        got.sort();
        let mut want = hidden_expected.clone();
        want.sort();
        assert_eq!(got, want);
        eprintln!("this CPU: {}; masked: {}", all.summary(), masked.summary());
    }

    #[test]
    fn present_and_absent_partition_the_names() {
        let f = CpuFeatures::detect(None);
        assert_eq!(f.present().len() + f.absent().len(), CPU_FEATURE_NAMES.len());
    }
}
