//! The readers of image sets, fed random and mutated bytes, return an error and never
//! panic: .npy, IDX (plain and gzip), PNG files and folders. Mutations of a valid file
//! (bytes overwritten, a cut, a splice) reach deeper than random bytes.

use std::io::Write;
use std::path::Path;

use ddpm_io::npy::{read_npy, write_npy};
use proptest::prelude::*;

#[path = "../../tests/common/mutate.rs"]
mod mutate;
use mutate::{cases, mutate, mutation};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

fn valid_npy(dir: &Path) -> Vec<u8> {
    let p = dir.join("seed.npy");
    write_npy(&p, &[0.5; 2 * 64], &[2, 1, 8, 8]).unwrap();
    std::fs::read(p).unwrap()
}

/// One scratch folder for the whole run (a case overwrites its files), so that a case costs
/// the reader's work, not a folder's creation.
fn scratch() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn valid_idx() -> Vec<u8> {
    let mut b = vec![0u8, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4];
    b.extend([9u8; 32]);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn valid_png() -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 4, 4);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(&[128; 16]).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn npy_reader_never_panics(random in prop::collection::vec(any::<u8>(), 0..256), (flips, cut, tail) in mutation()) {
        static SEED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let seed = SEED.get_or_init(|| valid_npy(scratch()));
        for bytes in [random, mutate(seed, &flips, cut, &tail)] {
            let p = write(scratch(), "x.npy", &bytes);
            if let Ok((data, shape)) = read_npy(&p) {
                prop_assert_eq!(data.len(), shape.iter().product::<usize>());
            }
        }
    }

    #[test]
    fn idx_and_png_readers_never_panic(random in prop::collection::vec(any::<u8>(), 0..128), (flips, cut, tail) in mutation()) {
        let dir = scratch();
        for (name, seed) in [("a-images-idx3-ubyte", valid_idx()), ("b-images-idx3-ubyte.gz", gzip(&valid_idx()))] {
            for bytes in [random.clone(), mutate(&seed, &flips, cut, &tail)] {
                let p = write(dir, name, &bytes);
                if let Ok((data, shape)) = ddpm_eval::load_images(&p) {
                    prop_assert_eq!(data.len(), shape.iter().product::<usize>());
                }
            }
        }
        let pngs = dir.join("pngs");
        std::fs::create_dir_all(&pngs).unwrap();
        write(&pngs, "0.png", &valid_png());
        write(&pngs, "1.png", &mutate(&valid_png(), &flips, cut, &tail));
        let _ = ddpm_eval::load_images(&pngs);
        let _ = ddpm_io::png::read_png(&write(dir, "r.png", &random));
    }
}
