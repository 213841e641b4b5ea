//! Load and attach the probes, print what is attached and the load time,
//! detach. Run as root: `cargo run --release --example load_probes`.

fn main() -> anyhow::Result<()> {
    let t = std::time::Instant::now();
    let probes = zt_trace::ebpf_probes::Probes::builder().load()?;
    let elapsed = t.elapsed();
    for a in probes.attached() {
        println!("{a}");
    }
    eprintln!(
        "{} probes attached in {:.2?}",
        probes.attached().len(),
        elapsed
    );
    Ok(())
}
