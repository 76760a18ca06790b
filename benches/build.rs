//! Records libtorch's folder as an rpath of this crate's test binaries, so they run with
//! no LD_LIBRARY_PATH. (Binaries of other crates do the same in their own build.rs.)
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
