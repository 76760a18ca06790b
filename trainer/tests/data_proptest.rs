//! The trainer's data readers (MNIST IDX, CIFAR-10 binary batches, image folders), fed
//! random and mutated bytes, return an error and never panic.

use proptest::prelude::*;

#[path = "../../tests/common/mutate.rs"]
mod mutate;
use mutate::{cases, mutate, mutation};

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(128), ..ProptestConfig::default() })]

    #[test]
    fn data_readers_never_panic((flips, cut, tail) in mutation(), random in prop::collection::vec(any::<u8>(), 0..64)) {
        let dir = tempfile::tempdir().unwrap();
        // IDX images + labels.
        let mut imgs = vec![0u8, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 8];
        imgs.extend([100u8; 128]);
        let labels = vec![0u8, 0, 8, 1, 0, 0, 0, 2, 0, 1];
        let idx = dir.path().join("idx");
        std::fs::create_dir_all(&idx).unwrap();
        std::fs::write(idx.join("train-images-idx3-ubyte"), mutate(&imgs, &flips, cut, &tail)).unwrap();
        std::fs::write(idx.join("train-labels-idx1-ubyte"), mutate(&labels, &flips, 1.0, &[])).unwrap();
        let _ = ddpm_trainer::data::load(&idx.join("train-images-idx3-ubyte"), 1, (8, 8), true);
        // CIFAR-10: records of 1 label byte + 3072 pixels.
        let cifar = dir.path().join("cifar");
        std::fs::create_dir_all(&cifar).unwrap();
        let mut rec = vec![3u8];
        rec.extend(vec![50u8; 3072]);
        std::fs::write(cifar.join("data_batch_1.bin"), mutate(&rec, &flips, cut, &tail)).unwrap();
        let _ = ddpm_trainer::data::load(&cifar, 3, (32, 32), true);
        // An image folder with one mutated and one random file.
        let folder = dir.path().join("images/class_a");
        std::fs::create_dir_all(&folder).unwrap();
        let img = image::GrayImage::from_pixel(8, 8, image::Luma([90u8]));
        let png = folder.join("ok.png");
        img.save(&png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        std::fs::write(folder.join("mutated.png"), mutate(&bytes, &flips, cut, &tail)).unwrap();
        std::fs::write(folder.join("random.jpg"), &random).unwrap();
        let _ = ddpm_trainer::data::load(&dir.path().join("images"), 1, (8, 8), true);
        let _ = ddpm_trainer::data::load(&dir.path().join("images"), 1, (8, 8), false);
    }
}
