//! Service-mesh detection: a sidecar is a proxy that shares a network
//! namespace (a pod) with an application, and the application's requests
//! go through it.
//!
//! **Invariant:** a pod is reported only from proof: a request observed at
//! both ends and linked by `tcp_seq` (the same bytes on the same
//! connection), between two processes of the same network namespace, one
//! a proxy and the other not, in a namespace that is not the host's
//! (`Config::host_net_ns`). The proxy calling the application is the
//! sidecar's inbound path, the application calling the proxy its outbound
//! path. At most `MAX_PODS` pods and `MAX_MEMBERS` members per list are
//! kept (more are counted in [`MeshReport::dropped`]).

use crate::proxy::ProxyKind;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

const MAX_PODS: usize = 4096;
const MAX_MEMBERS: usize = 32;

/// A process of a pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MeshMember {
    pub service: String,
    pub pid: u32,
    /// The proxy kind of a sidecar (`None` for an application).
    pub proxy: Option<ProxyKind>,
}

/// One pod whose traffic goes through a sidecar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshPod {
    /// Inode of the pod's network namespace.
    pub net_ns: u64,
    /// `k8s.pod.uid` of its processes, when their cgroups name a pod.
    pub pod_uid: Option<String>,
    /// The mesh: `istio` (Envoy beside pilot-agent), `linkerd`, or the
    /// sidecar's own kind (`envoy`, `nginx`, `haproxy`, ...).
    pub mesh: String,
    pub sidecars: Vec<MeshMember>,
    pub apps: Vec<MeshMember>,
    /// Requests a sidecar passed to an application of the pod (observed
    /// at both ends).
    pub inbound: u64,
    /// Requests an application of the pod sent through a sidecar.
    pub outbound: u64,
}

impl MeshPod {
    /// `k8s.pod.uid` if known, else `netns:<inode>`.
    pub fn name(&self) -> String {
        pod_name(self.net_ns, self.pod_uid.as_deref())
    }
}

/// A pod's name: its `k8s.pod.uid` if known, else `netns:<inode>`.
pub fn pod_name(net_ns: u64, pod_uid: Option<&str>) -> String {
    match pod_uid {
        Some(u) => u.to_owned(),
        None => format!("netns:{net_ns}"),
    }
}

/// Every pod found so far, by network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshReport {
    pub pods: Vec<MeshPod>,
    /// Pods or members not kept (the bounds were reached).
    pub dropped: u64,
}

impl MeshReport {
    /// No pod found and none dropped.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.dropped == 0
    }

    /// One line per pod: `<pod>: <mesh> sidecar <services> for <apps>
    /// (<n> in, <m> out)`.
    pub fn lines(&self) -> Vec<String> {
        self.pods
            .iter()
            .map(|p| {
                let names = |m: &[MeshMember]| {
                    m.iter()
                        .map(|x| x.service.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "{}: {} sidecar {} for {} ({} requests in, {} out)",
                    p.name(),
                    p.mesh,
                    names(&p.sidecars),
                    names(&p.apps),
                    p.inbound,
                    p.outbound
                )
            })
            .collect()
    }
}

/// One end of a request, as the mesh sees it.
pub(crate) struct End<'a> {
    pub pid: u32,
    pub net_ns: Option<u64>,
    pub proxy: Option<ProxyKind>,
    pub service: &'a str,
    pub pod_uid: Option<&'a str>,
}

#[derive(Default)]
pub(crate) struct MeshTracker {
    pods: HashMap<u64, MeshPod>,
    dropped: u64,
}

fn add_member(list: &mut Vec<MeshMember>, e: &End<'_>, dropped: &mut u64) {
    if list
        .iter()
        .any(|m| m.pid == e.pid && m.service == e.service)
    {
        return;
    }
    if list.len() >= MAX_MEMBERS {
        *dropped += 1;
        return;
    }
    list.push(MeshMember {
        service: e.service.to_owned(),
        pid: e.pid,
        proxy: e.proxy,
    });
    list.sort();
}

impl MeshTracker {
    /// A request observed at both ends, linked by `tcp_seq`: `client`
    /// called `server`. `host_ns`: the host's network namespace.
    pub(crate) fn observe(&mut self, client: &End<'_>, server: &End<'_>, host_ns: Option<u64>) {
        let (Some(ns), Some(other)) = (client.net_ns, server.net_ns) else {
            return;
        };
        if ns != other || Some(ns) == host_ns {
            return;
        }
        let (sidecar, app, inbound) = match (client.proxy, server.proxy) {
            (Some(_), None) => (client, server, true),
            (None, Some(_)) => (server, client, false),
            _ => return,
        };
        if !self.pods.contains_key(&ns) && self.pods.len() >= MAX_PODS {
            self.dropped += 1;
            return;
        }
        let pod = self.pods.entry(ns).or_insert_with(|| MeshPod {
            net_ns: ns,
            pod_uid: None,
            mesh: String::new(),
            sidecars: Vec::new(),
            apps: Vec::new(),
            inbound: 0,
            outbound: 0,
        });
        if pod.pod_uid.is_none() {
            pod.pod_uid = app.pod_uid.or(sidecar.pod_uid).map(str::to_owned);
        }
        add_member(&mut pod.sidecars, sidecar, &mut self.dropped);
        add_member(&mut pod.apps, app, &mut self.dropped);
        if inbound {
            pod.inbound += 1;
        } else {
            pod.outbound += 1;
        }
        // istio or linkerd if any sidecar says so, else the first one's kind.
        let kinds = || pod.sidecars.iter().filter_map(|m| m.proxy);
        pod.mesh = kinds()
            .map(ProxyKind::mesh)
            .find(|m| *m == "istio" || *m == "linkerd")
            .or_else(|| kinds().next().map(ProxyKind::mesh))
            .unwrap_or("")
            .to_owned();
    }

    pub(crate) fn report(&self) -> MeshReport {
        let mut pods: Vec<MeshPod> = self.pods.values().cloned().collect();
        pods.sort_by_key(|p| p.net_ns);
        MeshReport {
            pods,
            dropped: self.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(pid: u32, ns: u64, proxy: Option<ProxyKind>, service: &str) -> End<'_> {
        End {
            pid,
            net_ns: Some(ns),
            proxy,
            service,
            pod_uid: None,
        }
    }

    #[test]
    fn a_sidecar_in_both_directions() {
        let mut m = MeshTracker::default();
        let ngx = || end(1, 7, Some(ProxyKind::Nginx), "nginx");
        let app = || end(2, 7, None, "orders");
        m.observe(&ngx(), &app(), Some(1)); // inbound
        m.observe(&app(), &ngx(), Some(1)); // outbound
        m.observe(&app(), &ngx(), Some(1));
        // Another namespace, the host's, or two apps: no pod.
        m.observe(
            &end(3, 8, None, "a"),
            &end(4, 9, Some(ProxyKind::Envoy), "e"),
            Some(1),
        );
        m.observe(
            &end(3, 1, None, "a"),
            &end(4, 1, Some(ProxyKind::Envoy), "e"),
            Some(1),
        );
        m.observe(&end(3, 7, None, "a"), &end(4, 7, None, "b"), Some(1));
        let r = m.report();
        assert_eq!(r.pods.len(), 1, "{r:?}");
        let p = &r.pods[0];
        assert_eq!((p.net_ns, p.inbound, p.outbound), (7, 1, 2));
        assert_eq!(p.mesh, "nginx");
        assert_eq!(p.sidecars.len(), 1);
        assert_eq!(p.apps[0].service, "orders");
        assert_eq!(
            r.lines(),
            vec!["netns:7: nginx sidecar nginx for orders (1 requests in, 2 out)".to_owned()]
        );
    }

    #[test]
    fn istio_wins_over_its_envoy() {
        let mut m = MeshTracker::default();
        m.observe(
            &end(1, 7, Some(ProxyKind::Envoy), "envoy"),
            &end(2, 7, None, "orders"),
            None,
        );
        assert_eq!(m.report().pods[0].mesh, "envoy");
        m.observe(
            &end(3, 7, Some(ProxyKind::PilotAgent), "pilot-agent"),
            &end(2, 7, None, "orders"),
            None,
        );
        assert_eq!(m.report().pods[0].mesh, "istio");
    }
}
