//! The model readers, fed random and mutated bytes, return an error and never panic:
//! UNet2DModel config JSON and safetensors files (headers included).

use ddpm_models::weights::{read_safetensors, write_safetensors};
use ddpm_models::{UNetConfig, Weight, Weights};
use proptest::prelude::*;

#[path = "../../tests/common/mutate.rs"]
mod mutate;
use mutate::{cases, mutate, mutation};

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn unet_config_reader_never_panics(random in ".{0,64}", (flips, cut, tail) in mutation()) {
        let _ = UNetConfig::from_json_str(&random, "random");
        let seed = UNetConfig::digits().to_json().to_string();
        let bytes = mutate(seed.as_bytes(), &flips, cut, &tail);
        let _ = UNetConfig::from_json_str(&String::from_utf8_lossy(&bytes), "mutated");
    }

    #[test]
    fn safetensors_reader_never_panics(random in prop::collection::vec(any::<u8>(), 0..128), (flips, cut, tail) in mutation()) {
        // One scratch folder and seed for the whole run: a case costs the reader's work.
        static DIR: std::sync::OnceLock<(tempfile::TempDir, Vec<u8>)> = std::sync::OnceLock::new();
        let (dir, seed) = DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let seed_path = dir.path().join("seed.safetensors");
            let mut w = Weights::new();
            w.insert("a.weight".into(), Weight { shape: vec![2, 3], data: vec![0.5; 6] });
            w.insert("b.bias".into(), Weight { shape: vec![4], data: vec![1.0; 4] });
            write_safetensors(&seed_path, &w).unwrap();
            let seed = std::fs::read(&seed_path).unwrap();
            (dir, seed)
        });
        for bytes in [random.clone(), mutate(seed, &flips, cut, &tail)] {
            let p = dir.path().join("x.safetensors");
            std::fs::write(&p, &bytes).unwrap();
            if let Ok(got) = read_safetensors(&p) {
                for t in got.values() {
                    prop_assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
                }
            }
        }
    }
}
