//! Proxies and sidecars: which processes forward requests, how that was
//! found, and which service mesh a pod's sidecar belongs to.
//!
//! **Invariant:** a process is a proxy by its name ([`proxy_by_name`]: the
//! executable, `comm` or argv[0] is one of [`PROXY_NAMES`]) or by its
//! behaviour (it answered nearly every inbound request by sending the same
//! request on an outbound connection, counted by the `forward` linking
//! rule); nothing else marks one. Pure functions of their arguments.

use crate::event::ProcessInfo;
use serde::{Deserialize, Serialize};

/// What kind of proxy a process is (`zt.proxy.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyKind {
    Envoy,
    /// Istio's agent (it runs Envoy and proxies health probes).
    PilotAgent,
    /// Istio's sidecar, as older images name the process.
    IstioProxy,
    Linkerd2Proxy,
    Nginx,
    Haproxy,
    Traefik,
    Caddy,
    /// A process of another name seen forwarding every request it gets.
    Forwarder,
}

/// Executable names that are proxies.
pub const PROXY_NAMES: &[(&str, ProxyKind)] = &[
    ("envoy", ProxyKind::Envoy),
    ("pilot-agent", ProxyKind::PilotAgent),
    ("istio-proxy", ProxyKind::IstioProxy),
    ("linkerd2-proxy", ProxyKind::Linkerd2Proxy),
    ("nginx", ProxyKind::Nginx),
    ("haproxy", ProxyKind::Haproxy),
    ("traefik", ProxyKind::Traefik),
    ("caddy", ProxyKind::Caddy),
];

impl ProxyKind {
    /// The `zt.proxy.kind` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyKind::Envoy => "envoy",
            ProxyKind::PilotAgent => "pilot-agent",
            ProxyKind::IstioProxy => "istio-proxy",
            ProxyKind::Linkerd2Proxy => "linkerd2-proxy",
            ProxyKind::Nginx => "nginx",
            ProxyKind::Haproxy => "haproxy",
            ProxyKind::Traefik => "traefik",
            ProxyKind::Caddy => "caddy",
            ProxyKind::Forwarder => "forwarder",
        }
    }

    /// The mesh a sidecar of this kind belongs to: `istio` (Envoy run by
    /// pilot-agent), `linkerd`, else the proxy itself (`envoy`, `nginx`,
    /// ...: a hand-made mesh).
    pub fn mesh(self) -> &'static str {
        match self {
            ProxyKind::PilotAgent | ProxyKind::IstioProxy => "istio",
            ProxyKind::Linkerd2Proxy => "linkerd",
            k => k.as_str(),
        }
    }
}

/// How a process was found to be a proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    /// Its executable is a known proxy.
    Name,
    /// It forwards (nearly) every request it gets.
    Behaviour,
}

impl Detection {
    pub fn as_str(self) -> &'static str {
        match self {
            Detection::Name => "name",
            Detection::Behaviour => "behaviour",
        }
    }
}

/// A proxy process: its kind and how it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProxyInfo {
    pub kind: ProxyKind,
    pub detected_by: Detection,
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The proxy a process is by its name: the executable's file name, else
/// `comm`, else argv[0] (`nginx: worker process` counts as `nginx`).
pub fn proxy_by_name(p: &ProcessInfo) -> Option<ProxyKind> {
    let argv0 = p.args.first().map(String::as_str).unwrap_or("");
    let argv0 = basename(argv0.split([':', ' ']).next().unwrap_or(""));
    let names = [basename(&p.exe), p.comm.as_str(), argv0];
    names.into_iter().filter(|n| !n.is_empty()).find_map(|n| {
        PROXY_NAMES
            .iter()
            .find(|(name, _)| *name == n)
            .map(|(_, k)| *k)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(exe: &str, comm: &str, args: &[&str]) -> ProcessInfo {
        ProcessInfo {
            exe: exe.into(),
            comm: comm.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn by_name() {
        for (exe, comm, args, want) in [
            (
                "/usr/sbin/nginx",
                "nginx",
                &["nginx: worker process"][..],
                Some(ProxyKind::Nginx),
            ),
            (
                "",
                "",
                &["nginx: master process nginx -c x"][..],
                Some(ProxyKind::Nginx),
            ),
            (
                "/usr/sbin/haproxy",
                "haproxy",
                &[][..],
                Some(ProxyKind::Haproxy),
            ),
            (
                "/usr/local/bin/envoy",
                "envoy",
                &[][..],
                Some(ProxyKind::Envoy),
            ),
            (
                "/usr/local/bin/pilot-agent",
                "pilot-agent",
                &[][..],
                Some(ProxyKind::PilotAgent),
            ),
            ("", "istio-proxy", &[][..], Some(ProxyKind::IstioProxy)),
            (
                "/usr/lib/linkerd/linkerd2-proxy",
                "linkerd2-proxy",
                &[][..],
                Some(ProxyKind::Linkerd2Proxy),
            ),
            ("/traefik", "traefik", &[][..], Some(ProxyKind::Traefik)),
            (
                "/usr/bin/caddy",
                "caddy",
                &["caddy", "run"][..],
                Some(ProxyKind::Caddy),
            ),
            (
                "/usr/bin/python3",
                "python3",
                &["python3", "nginx.py"][..],
                None,
            ),
            ("/usr/bin/nginx-exporter", "nginx-exporter", &[][..], None),
        ] {
            assert_eq!(
                proxy_by_name(&p(exe, comm, args)),
                want,
                "{exe} {comm} {args:?}"
            );
        }
    }

    #[test]
    fn meshes() {
        assert_eq!(ProxyKind::PilotAgent.mesh(), "istio");
        assert_eq!(ProxyKind::Linkerd2Proxy.mesh(), "linkerd");
        assert_eq!(ProxyKind::Nginx.mesh(), "nginx");
        assert_eq!(
            serde_json::to_string(&ProxyKind::Linkerd2Proxy).unwrap(),
            "\"linkerd2-proxy\""
        );
    }
}
