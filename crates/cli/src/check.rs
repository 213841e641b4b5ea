//! `zt-trace check`.

pub fn check(_json: bool) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
