//! Link the `fdslot` executable as a self-contained static PIE: no C start files, no libc.
fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static-pie", "-Wl,--build-id=none", "-Wl,-z,norelro"] {
        println!("cargo:rustc-link-arg-bin=fdslot={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
