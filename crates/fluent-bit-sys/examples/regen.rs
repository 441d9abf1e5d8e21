//! Regenerates `src/bindings.rs` from `include/flb_proxy_abi.h`.
//! Needs libclang (Debian: `apt-get install libclang-dev`).
//!
//! Run: `cargo run -p fluent-bit-sys --example regen`

#[path = "../tests/support/generate.rs"]
mod generate;

fn main() {
    if let Err(e) = generate::load_libclang() {
        eprintln!("regen: cannot load libclang ({e}); install libclang-dev");
        std::process::exit(2);
    }
    let text = match generate::generate() {
        Ok(text) => text,
        Err(e) => {
            eprintln!("regen: {e}");
            std::process::exit(1);
        }
    };
    let path = generate::bindings_path();
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("regen: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    println!("regen: wrote {}", path.display());
}
