//! Shared by the root tests: whether eBPF programs can be loaded here.

/// Root: true. Otherwise a failure under ZT_REQUIRE_BPF=1 (CI), else a
/// skip message and false.
pub fn require_bpf() -> bool {
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if std::env::var("ZT_REQUIRE_BPF").as_deref() == Ok("1") {
            panic!("ZT_REQUIRE_BPF=1 but not running as root");
        }
        eprintln!(
            "SKIP: needs root to load eBPF programs (set ZT_REQUIRE_BPF=1 to make this a failure)"
        );
        return false;
    }
    true
}

/// Tell a child script waiting on its stdin to go on.
#[allow(dead_code)] // not every test file has a child to tell
pub fn say_go(child: &mut std::process::Child) {
    use std::io::Write;
    let stdin = child.stdin.as_mut().expect("child stdin is piped");
    stdin.write_all(b"go\n").expect("child reads its stdin");
}
