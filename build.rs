//! Link the `fdslot` executable as a self-contained static PIE: no C start files, no libc.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    // fdslot-probe (the boot test's task program) is linked the same way as fdslot.
    for bin in ["fdslot", "fdslot-probe"] {
        for arg in ["-nostartfiles", "-nostdlib", "-static-pie", "-Wl,--build-id=none", "-Wl,-z,norelro", "-Wl,--no-eh-frame-hdr"] {
            println!("cargo:rustc-link-arg-bin={bin}={arg}");
        }
        println!("cargo:rustc-link-arg-bin={bin}=-Wl,-T,{dir}/linker/fdslot.ld");
    }
    println!("cargo:rerun-if-changed=linker/fdslot.ld");
    for arg in ["-nostartfiles", "-nostdlib", "-static-pie", "-Wl,--build-id=none", "-Wl,-z,norelro", "-Wl,--no-eh-frame-hdr", "-Wl,-e,fdslot_blob_entry"] {
        println!("cargo:rustc-link-arg-bin=fdslot-blob={arg}");
    }
    println!("cargo:rustc-link-arg-bin=fdslot-blob=-Wl,-T,{dir}/linker/blob.ld");
    println!("cargo:rerun-if-changed=linker/blob.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
