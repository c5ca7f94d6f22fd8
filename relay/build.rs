//! Compiles the XDP program (`xdp/relay.bpf.c`) with clang into an object the relay embeds.
//!
//! Without clang the relay still builds: the object is then absent and `xdp-offload` is refused
//! at start with that reason (the relay falls back to user space), so a plain `cargo build`
//! needs no BPF toolchain. `.ci/install` installs clang and libbpf-dev, so CI always builds it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "xdp/relay.bpf.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("relay.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    // The kernel's uapi headers (asm/types.h) live under the multiarch include directory.
    let multiarch = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror", &multiarch, "-c", source, "-o"])
        .arg(&object)
        .output();
    let generated = match result {
        Ok(o) if o.status.success() => {
            format!("pub const OBJECT: Result<&[u8], &str> = Ok(include_bytes!({:?}) as &[u8]);\n", object.display())
        }
        Ok(o) => {
            // A compile error in our own C is a bug to see, not to hide: fail the build.
            panic!("{clang} could not compile {source}:\n{}", String::from_utf8_lossy(&o.stderr));
        }
        Err(e) => {
            println!(
                "cargo:warning=XDP offload not built: {clang} not found ({e}); install clang and libbpf-dev (.ci/install) to build it"
            );
            format!(
                "pub const OBJECT: Result<&[u8], &str> = Err(\"this relay was built without its XDP program ({clang} was not found at build time)\");\n"
            )
        }
    };
    std::fs::write(out.join("xdp_object.rs"), generated).expect("writing OUT_DIR/xdp_object.rs");
}
