//! The README's Rust examples, compiled and run as doctests (`cargo test -p ddpm-rs --doc`)
//! from the repository root, as a newcomer runs them: an example that stops working fails
//! `make test`.
#![doc = include_str!("../README.md")]
