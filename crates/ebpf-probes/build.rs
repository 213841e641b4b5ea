//! Compiles the eBPF programs in src/bpf/ with clang, one call per source,
//! into OUT_DIR, for the architecture of the Rust target (the probes read
//! syscall registers and numbers, which differ per architecture);
//! src/loader.rs embeds the objects.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// eBPF C sources, each compiled to `<name>.o` in OUT_DIR.
const SOURCES: &[&str] = &["capture.bpf.c", "check.bpf.c"];
/// Headers the sources include (for rerun-if-changed).
const HEADERS: &[&str] = &[
    "zt_vmlinux.h",
    "zt_arch.h",
    "zt_events.h",
    "tls_state.bpf.h",
    "tls.bpf.h",
    "pyctx.bpf.h",
    "go.bpf.h",
    "zt_filter.h",
    "filter.bpf.h",
];

const INSTALL_HINT: &str =
    "install them with: apt-get install -y clang llvm libbpf-dev (Debian/Ubuntu packages; run apt-get update first on a fresh machine)";

/// The `__TARGET_ARCH_*` name libbpf's headers (bpf_tracing.h) and
/// src/bpf/zt_arch.h use for a Rust target architecture.
fn bpf_arch(target_arch: &str) -> Option<&'static str> {
    Some(match target_arch {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv",
        "powerpc64" => "powerpc",
        "s390x" => "s390",
        "mips" | "mips64" => "mips",
        "loongarch64" => "loongarch",
        _ => return None,
    })
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let bpf_dir = manifest.join("src/bpf");
    let clang = env::var("ZT_CLANG").unwrap_or_else(|_| "clang".to_owned());
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");
    let arch = bpf_arch(&target_arch).unwrap_or_else(|| {
        fail(&format!(
            "no eBPF target architecture is known for the Rust target architecture `{target_arch}`"
        ))
    });
    println!("cargo:rerun-if-env-changed=ZT_CLANG");

    for h in HEADERS {
        println!("cargo:rerun-if-changed={}", bpf_dir.join(h).display());
    }

    match Command::new(&clang).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => fail(&format!(
            "`{clang}` was not found: building the eBPF programs needs clang and the libbpf headers; {INSTALL_HINT}"
        )),
    }
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists()
        && env::var_os("ZT_LIBBPF_INCLUDE").is_none()
    {
        fail(&format!(
            "the libbpf headers (bpf/bpf_helpers.h) were not found: {INSTALL_HINT} (or set ZT_LIBBPF_INCLUDE)"
        ));
    }
    println!("cargo:rerun-if-env-changed=ZT_LIBBPF_INCLUDE");

    for src in SOURCES {
        let path = bpf_dir.join(src);
        println!("cargo:rerun-if-changed={}", path.display());
        let obj = out.join(src.replace(".bpf.c", ".bpf.o"));
        let mut cmd = Command::new(&clang);
        cmd.args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg(format!("-D__TARGET_ARCH_{arch}"))
            .arg("-I")
            .arg(&bpf_dir);
        if let Some(inc) = env::var_os("ZT_LIBBPF_INCLUDE") {
            cmd.arg("-I").arg(inc);
        }
        cmd.arg("-c").arg(&path).arg("-o").arg(&obj);
        let output = cmd
            .output()
            .unwrap_or_else(|e| fail(&format!("running {clang}: {e}")));
        if !output.status.success() {
            fail(&format!(
                "clang failed to compile {}:\n{}\n(if headers are missing: {INSTALL_HINT})",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    panic!("ebpf-probes build failed: {msg}");
}
