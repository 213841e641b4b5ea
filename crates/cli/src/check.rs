//! `zt-trace check`: what this host allows and what zt-trace will do on it.
//! The probing is `ebpf_probes::check` (real attempts); this renders it as
//! text or JSON and fails when tracing cannot work.

use anyhow::{bail, Result};
use zt_trace::ebpf_probes::check::{check_host, HostReport, Verdict};

pub fn check(json: bool) -> Result<()> {
    let report = check_host();
    if json {
        println!("{}", serde_json::to_string_pretty(&to_json(&report))?);
    } else {
        print!("{}", to_text(&report));
    }
    if !report.can_trace() {
        let failed: Vec<&str> = report
            .items
            .iter()
            .filter(|i| i.required && !matches!(i.verdict, Verdict::Ok | Verdict::Warn))
            .map(|i| i.title)
            .collect();
        bail!("tracing cannot work on this host ({})", failed.join(", "));
    }
    Ok(())
}

fn label(v: Verdict, required: bool) -> &'static str {
    match (v, required) {
        (Verdict::Ok, _) => "ok",
        (Verdict::Warn, _) => "warn",
        (Verdict::Fail, true) => "FAIL",
        (Verdict::Fail, false) => "no",
        (Verdict::Skipped, _) => "skip",
    }
}

/// What zt-trace will do on a host with this report.
fn plan(r: &HostReport) -> Vec<String> {
    let ok = |k: &str| r.get(k).is_some_and(|i| i.verdict == Verdict::Ok);
    let mut p = Vec::new();
    if !r.can_trace() {
        p.push("nothing: tracing cannot start (see the failures above)".to_owned());
        return p;
    }
    p.push(
        "capture socket reads, writes, connects, accepts and closes with syscall tracepoints, events through one ring buffer"
            .to_owned(),
    );
    if r.get("tracefs").is_some_and(|i| i.verdict == Verdict::Warn) {
        p.push("mount tracefs at /sys/kernel/tracing at start".to_owned());
    }
    if ok("hook.uprobe") {
        if ok("openssl") {
            p.push("attach OpenSSL uprobes for HTTPS plaintext (and to binaries carrying OpenSSL when they run)".to_owned());
        }
        if ok("cpython") {
            p.push(
                "attach CPython Context.run uprobes to link Python thread pools and asyncio tasks"
                    .to_owned(),
            );
        }
        p.push("attach goroutine uprobes to Go executables when they run".to_owned());
        if !ok("hook.uprobe_multi") {
            p.push("attach uprobes as perf events (no uprobe_multi links here): a stop takes ~60 ms per probed function".to_owned());
        }
    } else {
        p.push("no uprobes: no HTTPS plaintext, Python contexts or goroutines".to_owned());
    }
    for pod in &r.pods {
        p.push(format!(
            "treat {} as a sidecar of {} in {}: link requests across it and report the pod as a mesh once its traffic goes through it",
            names(&pod.sidecars),
            names(&pod.apps),
            pod.name()
        ));
    }
    let unused: Vec<&str> = ["hook.kprobe", "hook.fentry"]
        .into_iter()
        .filter(|k| !ok(k))
        .filter_map(|k| r.get(k).map(|i| i.title))
        .collect();
    if !unused.is_empty() {
        p.push(format!(
            "not use {} (unavailable here; zt-trace does not need them)",
            unused.join(" or ")
        ));
    }
    p
}

fn names(m: &[zt_trace::span_core::mesh::MeshMember]) -> String {
    m.iter()
        .map(|x| x.service.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn to_text(r: &HostReport) -> String {
    let mut o = String::from("zt-trace check: what this host allows\n\n");
    for i in &r.items {
        o.push_str(&format!(
            "  {:<5} {:<22} {}{}\n",
            label(i.verdict, i.required),
            i.title,
            i.detail,
            if i.required { "" } else { "  (optional)" }
        ));
        if i.verdict != Verdict::Ok {
            o.push_str(&format!("        {:<22} → {}\n", "", i.effect));
            if let Some(f) = &i.fix {
                o.push_str(&format!("        {:<22}   what to do: {f}\n", ""));
            }
        }
    }
    o.push_str("\nWhat zt-trace will do here:\n");
    for line in plan(r) {
        o.push_str(&format!("  - {line}\n"));
    }
    o.push_str(&format!(
        "\nVerdict: {}\n",
        if r.can_trace() {
            "tracing works on this host"
        } else {
            "tracing cannot work on this host"
        }
    ));
    o
}

pub fn to_json(r: &HostReport) -> serde_json::Value {
    serde_json::json!({
        "can_trace": r.can_trace(),
        "checks": r.items.iter().map(|i| serde_json::json!({
            "key": i.key,
            "title": i.title,
            "verdict": i.verdict.as_str(),
            "required": i.required,
            "detail": i.detail,
            "effect": i.effect,
            "fix": i.fix,
        })).collect::<Vec<_>>(),
        "pods": r.pods.iter().map(|p| {
            let members = |m: &[zt_trace::span_core::mesh::MeshMember]| {
                m.iter()
                    .map(|x| serde_json::json!({
                        "service": x.service,
                        "pid": x.pid,
                        "proxy": x.proxy.map(|k| k.as_str()),
                    }))
                    .collect::<Vec<_>>()
            };
            serde_json::json!({
                "pod": p.name(),
                "net_ns": p.net_ns,
                "k8s.pod.uid": p.pod_uid,
                "sidecars": members(&p.sidecars),
                "apps": members(&p.apps),
            })
        }).collect::<Vec<_>>(),
        "plan": plan(r),
    })
}
