//! Names: services from processes (the identity chain, cgroup paths, user
//! rules), low-cardinality routes from paths.
//!
//! **Service identity**, first that applies:
//! 1. a user rule ([`ServiceRule`], `--service-name 'exe=/usr/bin/java,port=8080:orders'`);
//! 2. `OTEL_SERVICE_NAME`, or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`;
//! 3. the systemd unit of the process's cgroup (`system.slice/orders.service`
//!    gives `orders`) — a container's or pod's cgroup gives `container.id` and
//!    `k8s.pod.uid` ([`parse_cgroup`]), not a name (ids are not names);
//! 4. the script an interpreter runs, else the executable.
//!
//! Everything here is a pure function of its arguments, so every spelling
//! is unit-tested.

use crate::event::ProcessInfo;
use std::fmt;

const INTERPRETERS: &[&str] = &[
    "python", "python2", "python3", "node", "nodejs", "ruby", "perl", "php", "bash", "sh", "dash",
    "java", "deno", "bun",
];

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Where a service name came from (the identity chain above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameSource {
    /// A user rule (`--service-name`).
    Rule,
    /// `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`.
    Environment,
    /// The systemd unit of the process's cgroup.
    SystemdUnit,
    /// The script an interpreter runs.
    Script,
    /// The executable (or `comm`, or the pid when nothing else is known).
    Executable,
}

/// The container engine a cgroup path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerEngine {
    Docker,
    Containerd,
    CriO,
    Podman,
    /// A bare container id under a Kubernetes pod (the cgroupfs driver):
    /// docker or containerd, the path does not say.
    Unknown,
}

/// What a cgroup (v2) path says about the process: its container, its
/// Kubernetes pod, its systemd unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupIdentity {
    /// `container.id`: 64 lower-case hex digits.
    pub container_id: Option<String>,
    pub engine: Option<ContainerEngine>,
    /// `k8s.pod.uid`, dashed (`kubepods-...-pod<uid with _>.slice` is
    /// spelled back with `-`).
    pub pod_uid: Option<String>,
    /// The systemd service the process runs in (`orders` for
    /// `orders.service`), unless it is the container manager holding a
    /// container or pod found below it.
    pub systemd_unit: Option<String>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A pod uid as Kubernetes writes it in cgroup names: a UUID
/// (8-4-4-4-12 hex), or the 32 hex digits of a static pod's config hash.
fn pod_uid(s: &str) -> Option<String> {
    let dashed = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    (dashed || is_hex(s, 32)).then(|| s.to_ascii_lowercase())
}

/// A container id in one cgroup path component, and its engine:
/// `docker-<id>.scope` (docker, systemd driver), `cri-containerd-<id>.scope`
/// (containerd), `crio-<id>.scope` or `crio-<id>` (CRI-O),
/// `libpod-<id>.scope` or `libpod-<id>` (podman); `<id>` alone is a
/// container under `docker/` or a Kubernetes pod (cgroupfs driver). The
/// monitors' cgroups (`crio-conmon-`, `libpod-conmon-`) are not containers.
fn container_of(component: &str, parent: Option<&str>) -> Option<(String, ContainerEngine)> {
    let stem = component.strip_suffix(".scope").unwrap_or(component);
    for (prefix, engine) in [
        ("docker-", ContainerEngine::Docker),
        ("cri-containerd-", ContainerEngine::Containerd),
        ("crio-", ContainerEngine::CriO),
        ("libpod-", ContainerEngine::Podman),
    ] {
        if let Some(id) = stem.strip_prefix(prefix) {
            return is_hex(id, 64).then(|| (id.to_ascii_lowercase(), engine));
        }
    }
    if is_hex(component, 64) {
        let engine = match parent {
            Some("docker") => ContainerEngine::Docker,
            Some(p) if p.starts_with("pod") => ContainerEngine::Unknown,
            _ => return None,
        };
        return Some((component.to_ascii_lowercase(), engine));
    }
    None
}

/// The pod uid in one component: `pod<uid>` (cgroupfs driver, under a
/// `kubepods` component) or `kubepods[-<qos>]-pod<uid_with_underscores>.slice`
/// (systemd driver).
fn pod_of(component: &str, under_kubepods: bool) -> Option<String> {
    if let Some(stem) = component.strip_suffix(".slice") {
        if stem.starts_with("kubepods") {
            let (_, uid) = stem.rsplit_once("-pod")?;
            return pod_uid(&uid.replace('_', "-"));
        }
        return None;
    }
    if under_kubepods {
        return component.strip_prefix("pod").and_then(pod_uid);
    }
    None
}

/// Parse a cgroup v2 path (`/proc/<pid>/cgroup`'s `0::` line) into what it
/// says about the process. Any prefix is allowed (nested hierarchies, a
/// cgroup namespace); the innermost container and pod win. See
/// [`CgroupIdentity`].
pub fn parse_cgroup(path: &str) -> CgroupIdentity {
    let mut out = CgroupIdentity::default();
    let mut under_kubepods = false;
    let mut unit: Option<(usize, String)> = None;
    let mut deepest_workload = None;
    let mut parent: Option<&str> = None;
    for (i, c) in path.split('/').filter(|c| !c.is_empty()).enumerate() {
        if c == "kubepods" || c.starts_with("kubepods.") || c.starts_with("kubepods-") {
            under_kubepods = true;
        }
        if let Some(uid) = pod_of(c, under_kubepods) {
            out.pod_uid = Some(uid);
            deepest_workload = Some(i);
        } else if let Some((id, engine)) = container_of(c, parent) {
            out.container_id = Some(id);
            out.engine = Some(engine);
            deepest_workload = Some(i);
        } else if let Some(u) = c.strip_suffix(".service") {
            // user@1000.service is a user's systemd instance, not a service.
            let is_user_manager = u
                .strip_prefix("user@")
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
            if !u.is_empty() && !is_user_manager {
                unit = Some((i, u.to_owned()));
            }
        }
        parent = Some(c);
    }
    // A unit above a container or pod is the engine holding it
    // (containerd.service, a kubelet slice), not the process's service.
    out.systemd_unit = unit
        .filter(|(i, _)| deepest_workload.is_none_or(|w| *i > w))
        .map(|(_, u)| u);
    out
}

/// Most `OTEL_RESOURCE_ATTRIBUTES` pairs kept per process.
pub const MAX_RESOURCE_ATTRIBUTES: usize = 32;
/// Longest key and value kept (longer pairs are dropped).
const MAX_ATTR_KEY: usize = 128;
const MAX_ATTR_VALUE: usize = 256;

/// `OTEL_RESOURCE_ATTRIBUTES` (`key1=value1,key2=value2`, values
/// percent-encoded, as the OpenTelemetry SDKs read it): `service.name`
/// apart, the other pairs in order. Malformed pairs (no `=`, an empty key,
/// a bad escape), overlong ones and those past
/// [`MAX_RESOURCE_ATTRIBUTES`] are dropped.
pub fn parse_resource_attributes(s: &str) -> (Option<String>, Vec<(String, String)>) {
    let mut name = None;
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in s.split(',') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        let k = k.trim();
        let Some(v) = percent_decode(v.trim()) else {
            continue;
        };
        if k.is_empty() || k.len() > MAX_ATTR_KEY || v.len() > MAX_ATTR_VALUE {
            continue;
        }
        if k == "service.name" {
            if !v.is_empty() {
                name = Some(v);
            }
            continue;
        }
        if let Some(slot) = out.iter_mut().find(|(x, _)| x == k) {
            slot.1 = v;
        } else if out.len() < MAX_RESOURCE_ATTRIBUTES {
            out.push((k.to_owned(), v));
        }
    }
    (name, out)
}

fn percent_decode(v: &str) -> Option<String> {
    if !v.contains('%') {
        return Some(v.to_owned());
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why a `--service-name` rule was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError(String);

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuleError {}

/// One condition of a [`ServiceRule`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Matcher {
    /// `exe=PATH` (the executable's path) or `exe=NAME` (its file name).
    Exe(String),
    /// `comm=NAME`: the kernel's name of the process.
    Comm(String),
    /// `cmdline=TEXT`: the command line (arguments joined by spaces)
    /// contains TEXT.
    Cmdline(String),
    /// `port=N`: the process accepted connections on local port N.
    Port(u16),
    /// `cgroup=TEXT`: the cgroup path contains TEXT.
    Cgroup(String),
    /// `container=ID`: the container id starts with ID.
    Container(String),
    /// `pod=UID`: the Kubernetes pod uid.
    Pod(String),
    /// `unit=NAME`: the systemd unit (without `.service`).
    Unit(String),
}

/// A user's naming rule: `KEY=VALUE[,KEY=VALUE...]:NAME`. Every condition
/// must hold (keys: `exe`, `comm`, `cmdline`, `port`, `cgroup`,
/// `container`, `pod`, `unit`); the first rule that matches names the
/// service, over everything else in the identity chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRule {
    matchers: Vec<Matcher>,
    name: String,
}

impl ServiceRule {
    /// Parse `exe=/usr/bin/java,port=8080:orders`.
    pub fn parse(text: &str) -> Result<ServiceRule, RuleError> {
        let err = |why: String| Err(RuleError(format!("service name rule {text:?}: {why}")));
        let Some((conds, name)) = text.rsplit_once(':') else {
            return err("expected CONDITIONS:NAME, e.g. exe=/usr/bin/java,port=8080:orders".into());
        };
        let name = name.trim();
        if name.is_empty() {
            return err("the service name after ':' is empty".into());
        }
        if name.chars().any(char::is_control) {
            return err("the service name has control characters".into());
        }
        let mut matchers = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        for cond in conds.split(',') {
            let cond = cond.trim();
            let Some((k, v)) = cond.split_once('=') else {
                return err(format!("condition {cond:?} is not KEY=VALUE"));
            };
            let (k, v) = (k.trim(), v.trim());
            if v.is_empty() {
                return err(format!("{k}= has no value"));
            }
            if keys.contains(&k) {
                return err(format!("{k}= is given twice"));
            }
            keys.push(k);
            matchers.push(match k {
                "exe" => Matcher::Exe(v.to_owned()),
                "comm" => Matcher::Comm(v.to_owned()),
                "cmdline" => Matcher::Cmdline(v.to_owned()),
                "port" => match v.parse::<u16>() {
                    Ok(p) if p > 0 => Matcher::Port(p),
                    _ => return err(format!("port={v} is not a port (1-65535)")),
                },
                "cgroup" => Matcher::Cgroup(v.to_owned()),
                "container" => {
                    if !v.bytes().all(|b| b.is_ascii_hexdigit()) || v.len() > 64 {
                        return err(format!("container={v} is not a container id (hex digits)"));
                    }
                    Matcher::Container(v.to_ascii_lowercase())
                }
                "pod" => Matcher::Pod(v.to_ascii_lowercase()),
                "unit" => Matcher::Unit(v.trim_end_matches(".service").to_owned()),
                _ => {
                    return err(format!(
                        "unknown condition {k:?} (known: exe, comm, cmdline, port, cgroup, container, pod, unit)"
                    ))
                }
            });
        }
        Ok(ServiceRule {
            matchers,
            name: name.to_owned(),
        })
    }

    /// The name this rule gives.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the rule needs the ports a process serves (it can only
    /// match once one is seen).
    pub fn needs_ports(&self) -> bool {
        self.matchers.iter().any(|m| matches!(m, Matcher::Port(_)))
    }

    /// Whether the process matches every condition; `ports`: the local
    /// ports it was seen accepting connections on.
    pub fn matches(&self, p: &ProcessInfo, cg: &CgroupIdentity, ports: &[u16]) -> bool {
        self.matchers.iter().all(|m| match m {
            Matcher::Exe(e) if e.contains('/') => p.exe == *e,
            Matcher::Exe(e) => basename(&p.exe) == e,
            Matcher::Comm(c) => p.comm == *c,
            Matcher::Cmdline(t) => p.args.join(" ").contains(t.as_str()),
            Matcher::Port(port) => ports.contains(port),
            Matcher::Cgroup(t) => p.cgroup.as_deref().is_some_and(|c| c.contains(t.as_str())),
            Matcher::Container(id) => cg
                .container_id
                .as_deref()
                .is_some_and(|c| c.starts_with(id.as_str())),
            Matcher::Pod(uid) => cg.pod_uid.as_deref() == Some(uid.as_str()),
            Matcher::Unit(u) => cg.systemd_unit.as_deref() == Some(u.as_str()),
        })
    }
}

fn is_interpreter(exe: &str) -> bool {
    let b = basename(exe);
    // python3.11, python3-dbg, ...
    let stem = b.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.' || c == '-');
    INTERPRETERS.contains(&b) || INTERPRETERS.contains(&stem)
}

fn strip_ext(name: &str) -> &str {
    for ext in [
        ".py", ".js", ".mjs", ".cjs", ".ts", ".rb", ".pl", ".php", ".sh", ".jar",
    ] {
        if let Some(s) = name.strip_suffix(ext) {
            return s;
        }
    }
    name
}

/// `service.name` for a process, without user rules (see
/// [`service_identity`]).
pub fn service_name(p: &ProcessInfo) -> String {
    let cg = p.cgroup.as_deref().map(parse_cgroup).unwrap_or_default();
    service_identity(p, &cg, &[], &[]).0
}

/// `service.name` for a process and where it came from, by the identity
/// chain (module docs): the first of `rules` that matches; else
/// `OTEL_SERVICE_NAME`; else `cg`'s systemd unit; for an interpreter, its
/// script (`python3 /srv/gateway.py` -> `gateway`, `python -m app.main` ->
/// `app.main`, `java -jar orders.jar` -> `orders`); otherwise the
/// executable's name. `ports`: local ports the process accepted
/// connections on (for `port=` rules).
pub fn service_identity(
    p: &ProcessInfo,
    cg: &CgroupIdentity,
    rules: &[ServiceRule],
    ports: &[u16],
) -> (String, NameSource) {
    if let Some(r) = rules.iter().find(|r| r.matches(p, cg, ports)) {
        return (r.name.clone(), NameSource::Rule);
    }
    if let Some(s) = p.service_name.as_deref().filter(|s| !s.trim().is_empty()) {
        return (s.trim().to_owned(), NameSource::Environment);
    }
    if let Some(u) = &cg.systemd_unit {
        return (u.clone(), NameSource::SystemdUnit);
    }
    let exe = if !p.exe.is_empty() {
        p.exe.as_str()
    } else {
        p.args.first().map(String::as_str).unwrap_or("")
    };
    let argv0 = p.args.first().map(String::as_str).unwrap_or("");
    if is_interpreter(exe) || is_interpreter(argv0) {
        let mut it = p.args.iter().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "-m" => {
                    if let Some(m) = it.next() {
                        return (m.clone(), NameSource::Script);
                    }
                }
                "-jar" => {
                    if let Some(j) = it.next() {
                        return (strip_ext(basename(j)).to_owned(), NameSource::Script);
                    }
                }
                "-c" | "-e" | "--eval" => break,
                // options that take a value
                "-W" | "-X" | "--require" | "-r" | "-cp" | "-classpath" => {
                    it.next();
                }
                s if s.starts_with('-') => {}
                s => {
                    let b = basename(s);
                    if !b.is_empty() {
                        return (strip_ext(b).to_owned(), NameSource::Script);
                    }
                }
            }
        }
    }
    let name = basename(exe);
    if !name.is_empty() {
        return (name.to_owned(), NameSource::Executable);
    }
    if !p.comm.is_empty() {
        return (p.comm.clone(), NameSource::Executable);
    }
    (format!("pid-{}", p.pid), NameSource::Executable)
}

/// Low-cardinality template of a URL path: segments that look like ids
/// (numbers, UUIDs, long hex or mixed tokens) become `{id}`. The query is
/// dropped. `/users/42/orders?x=1` -> `/users/{id}/orders`.
pub fn route_template(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() || path == "*" {
        return if path.is_empty() {
            "/".into()
        } else {
            "*".into()
        };
    }
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_id_segment(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    out
}

fn is_id_segment(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    let digits = seg.bytes().filter(u8::is_ascii_digit).count();
    if digits == seg.len() {
        return true; // 42
    }
    let hexish = seg.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if hexish && seg.len() >= 16 && digits > 0 {
        return true; // uuid, sha
    }
    // long tokens mixing letters and digits (base64 ids, request ids)
    seg.len() >= 12
        && digits >= 2
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_(exe: &str, args: &[&str]) -> ProcessInfo {
        ProcessInfo {
            pid: 7,
            exe: exe.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            comm: "comm".into(),
            ..Default::default()
        }
    }

    #[test]
    fn service_names() {
        assert_eq!(
            service_name(&proc_(
                "/usr/bin/python3.11",
                &["python3", "-u", "/srv/gateway.py", "--port", "1"]
            )),
            "gateway"
        );
        assert_eq!(
            service_name(&proc_("/usr/bin/python3", &["python3", "-m", "app.main"])),
            "app.main"
        );
        assert_eq!(
            service_name(&proc_(
                "/usr/bin/java",
                &["java", "-Xmx1g", "-jar", "/o/orders.jar"]
            )),
            "orders"
        );
        assert_eq!(
            service_name(&proc_("/usr/sbin/nginx", &["nginx: worker process"])),
            "nginx"
        );
        assert_eq!(
            service_name(&proc_("/usr/bin/node", &["node", "server.js"])),
            "server"
        );
        assert_eq!(
            service_name(&proc_("/usr/bin/python3", &["python3", "-c", "print(1)"])),
            "python3"
        );
        let mut p = proc_("/usr/bin/python3", &["python3", "x.py"]);
        p.service_name = Some("checkout".into());
        assert_eq!(service_name(&p), "checkout");
        assert_eq!(
            service_name(&ProcessInfo {
                pid: 3,
                ..Default::default()
            }),
            "pid-3"
        );
    }

    const ID: &str = "3f2b8c1e0a4b4c2d9e8f1a2b3c4d5e6f3f2b8c1e0a4b4c2d9e8f1a2b3c4d5e6f";
    const UID: &str = "8e5a3c7d-1b2f-4e6a-9c0d-2f4b6a8c0e1d";

    fn cg(path: &str) -> CgroupIdentity {
        parse_cgroup(path)
    }

    #[test]
    fn docker_cgroups() {
        for path in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            // Nested under a prefix (a test's own cgroup, a cgroup namespace).
            format!("/zt-test-1/system.slice/docker-{ID}.scope"),
        ] {
            let c = cg(&path);
            assert_eq!(c.container_id.as_deref(), Some(ID), "{path}");
            assert_eq!(c.engine, Some(ContainerEngine::Docker), "{path}");
            assert_eq!(c.pod_uid, None, "{path}");
            assert_eq!(c.systemd_unit, None, "{path}");
        }
        // Not 64 hex digits: not a container.
        assert_eq!(cg("/system.slice/docker-abc.scope").container_id, None);
        assert_eq!(cg(&format!("/foo/{ID}")).container_id, None);
    }

    #[test]
    fn podman_and_crio_and_containerd_cgroups() {
        let c = cg(&format!("/machine.slice/libpod-{ID}.scope"));
        assert_eq!(c.container_id.as_deref(), Some(ID));
        assert_eq!(c.engine, Some(ContainerEngine::Podman));
        let c = cg(&format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
        ));
        assert_eq!(c.container_id.as_deref(), Some(ID));
        assert_eq!(c.engine, Some(ContainerEngine::Podman));
        assert_eq!(c.systemd_unit, None, "user@1000.service is no service");
        let c = cg(&format!("/libpod_parent/libpod-{ID}"));
        assert_eq!(c.engine, Some(ContainerEngine::Podman));
        // The container monitor is not the container.
        assert_eq!(
            cg(&format!("/machine.slice/libpod-conmon-{ID}.scope")).container_id,
            None
        );
        assert_eq!(
            cg(&format!("/system.slice/crio-conmon-{ID}.scope")).container_id,
            None
        );
        let c = cg(&format!(
            "/system.slice/containerd.service/cri-containerd-{ID}.scope"
        ));
        assert_eq!(c.engine, Some(ContainerEngine::Containerd));
        assert_eq!(
            c.systemd_unit, None,
            "the engine's unit above the container is not the service"
        );
    }

    #[test]
    fn kubernetes_cgroups_systemd_and_cgroupfs_drivers() {
        let underscored = UID.replace('-', "_");
        // systemd driver, containerd and CRI-O, each QoS class.
        for (path, engine) in [
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{underscored}.slice/cri-containerd-{ID}.scope"),
                ContainerEngine::Containerd,
            ),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{underscored}.slice/crio-{ID}.scope"),
                ContainerEngine::CriO,
            ),
            (
                format!("/kubepods.slice/kubepods-pod{underscored}.slice/docker-{ID}.scope"),
                ContainerEngine::Docker,
            ),
            // cgroupfs driver: the id alone under the pod.
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                ContainerEngine::Unknown,
            ),
            (format!("/kubepods/pod{UID}/{ID}"), ContainerEngine::Unknown),
            (
                format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
                ContainerEngine::CriO,
            ),
        ] {
            let c = cg(&path);
            assert_eq!(c.pod_uid.as_deref(), Some(UID), "{path}");
            assert_eq!(c.container_id.as_deref(), Some(ID), "{path}");
            assert_eq!(c.engine, Some(engine), "{path}");
            assert_eq!(c.systemd_unit, None, "{path}");
        }
        // The pod's own cgroup (its pause process, or a sandbox).
        let c = cg(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{underscored}.slice"
        ));
        assert_eq!(c.pod_uid.as_deref(), Some(UID));
        assert_eq!(c.container_id, None);
        // A static pod's uid is a 32-hex config hash.
        let hash = "6a5f0c8e2b4d4f1a9c3e7b5d1f0a2c4e";
        assert_eq!(
            cg(&format!("/kubepods/burstable/pod{hash}/{ID}"))
                .pod_uid
                .as_deref(),
            Some(hash)
        );
        // "pod..." outside kubepods is not a pod.
        assert_eq!(cg(&format!("/system.slice/pod{UID}")).pod_uid, None);
        // A malformed uid is not one.
        assert_eq!(
            cg("/kubepods.slice/kubepods-podnot_a_uid.slice").pod_uid,
            None
        );
    }

    #[test]
    fn systemd_units() {
        assert_eq!(
            cg("/system.slice/orders.service").systemd_unit.as_deref(),
            Some("orders")
        );
        assert_eq!(
            cg("/zt-test/system.slice/orders.service")
                .systemd_unit
                .as_deref(),
            Some("orders")
        );
        assert_eq!(
            cg("/user.slice/user-1000.slice/user@1000.service/app.slice/billing.service")
                .systemd_unit
                .as_deref(),
            Some("billing")
        );
        assert_eq!(
            cg("/system.slice/getty@tty1.service")
                .systemd_unit
                .as_deref(),
            Some("getty@tty1")
        );
        for none in [
            "/",
            "",
            "/user.slice/user-1000.slice/session-3.scope",
            "/user.slice/user-1000.slice/user@1000.service/init.scope",
            "/system.slice/.service",
        ] {
            assert_eq!(cg(none), CgroupIdentity::default(), "{none:?}");
        }
        // A unit inside a container (systemd as the container's init).
        let c = cg(&format!(
            "/system.slice/docker-{ID}.scope/system.slice/orders.service"
        ));
        assert_eq!(c.container_id.as_deref(), Some(ID));
        assert_eq!(c.systemd_unit.as_deref(), Some("orders"));
    }

    #[test]
    fn identity_chain_order() {
        let mut p = proc_("/usr/bin/python3", &["python3", "/srv/billing.py"]);
        p.cgroup = Some("/system.slice/orders.service".into());
        let c = parse_cgroup(p.cgroup.as_deref().unwrap());
        // The unit beats the script.
        assert_eq!(
            service_identity(&p, &c, &[], &[]),
            ("orders".into(), NameSource::SystemdUnit)
        );
        // The environment beats the unit.
        p.service_name = Some("checkout".into());
        assert_eq!(
            service_identity(&p, &c, &[], &[]),
            ("checkout".into(), NameSource::Environment)
        );
        // A rule beats everything; a port rule needs the port.
        let rules = [ServiceRule::parse("exe=python3,port=8080:orders-api").unwrap()];
        assert_eq!(
            service_identity(&p, &c, &rules, &[]).1,
            NameSource::Environment
        );
        assert_eq!(
            service_identity(&p, &c, &rules, &[9000, 8080]),
            ("orders-api".into(), NameSource::Rule)
        );
        // A container alone names nothing: the script does.
        let mut q = proc_("/usr/bin/python3", &["python3", "/srv/billing.py"]);
        q.cgroup = Some(format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(service_name(&q), "billing");
    }

    #[test]
    fn rules_parse_and_match() {
        let r = ServiceRule::parse("exe=/usr/bin/java,port=8080:orders").unwrap();
        assert_eq!(r.name(), "orders");
        assert!(r.needs_ports());
        let p = proc_("/usr/bin/java", &["java", "-jar", "x.jar"]);
        let none = CgroupIdentity::default();
        assert!(r.matches(&p, &none, &[8080]));
        assert!(!r.matches(&p, &none, &[8081]));
        let mut q = p.clone();
        q.exe = "/opt/java/bin/java".into();
        assert!(!r.matches(&q, &none, &[8080]), "a path must be equal");
        assert!(ServiceRule::parse("exe=java:j")
            .unwrap()
            .matches(&q, &none, &[]));
        let mut k = proc_("/usr/bin/python3", &["python3", "app.py", "--shard=3"]);
        k.comm = "python3".into();
        k.cgroup = Some(format!("/kubepods/pod{UID}/{ID}"));
        let kc = parse_cgroup(k.cgroup.as_deref().unwrap());
        for (rule, want) in [
            ("cmdline=--shard=3:s3", true),
            ("cmdline=--shard=4:s4", false),
            ("comm=python3:py", true),
            (&*format!("container={}:c", &ID[..12]), true),
            ("container=ffff:c", false),
            (&*format!("pod={UID}:p"), true),
            ("cgroup=kubepods:k", true),
            ("unit=orders:u", false),
        ] {
            assert_eq!(
                ServiceRule::parse(rule).unwrap().matches(&k, &kc, &[]),
                want,
                "{rule}"
            );
        }
        for bad in [
            "orders",
            "exe=/usr/bin/java:",
            "exe=/usr/bin/java,port=0:x",
            "port=70000:x",
            "port=http:x",
            "exe=:x",
            "exe=a,exe=b:x",
            "flavour=mint:x",
            "container=xyz:x",
            "novalue:x",
            "exe=a:bad\u{1}name",
        ] {
            let e = ServiceRule::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn resource_attributes_from_the_environment() {
        let (name, attrs) = parse_resource_attributes(
            "service.namespace=shop, deployment.environment=prod,service.name=cart,team=a%2Cb,bad,=x,k=%zz",
        );
        assert_eq!(name.as_deref(), Some("cart"));
        assert_eq!(
            attrs,
            vec![
                ("service.namespace".into(), "shop".into()),
                ("deployment.environment".into(), "prod".into()),
                ("team".into(), "a,b".into()),
            ]
        );
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            parse_resource_attributes(&many.join(",")).1.len(),
            MAX_RESOURCE_ATTRIBUTES
        );
        let long = format!("k={}", "v".repeat(1000));
        assert!(parse_resource_attributes(&long).1.is_empty());
        assert_eq!(parse_resource_attributes(""), (None, vec![]));
    }

    #[test]
    fn routes() {
        assert_eq!(route_template("/users/42/orders?x=1"), "/users/{id}/orders");
        assert_eq!(
            route_template("/u/3f2b8c1e-0a4b-4c2d-9e8f-1a2b3c4d5e6f"),
            "/u/{id}"
        );
        assert_eq!(route_template("/validate?rid=abc"), "/validate");
        assert_eq!(route_template("/api/v1/items"), "/api/v1/items");
        assert_eq!(route_template("/t/tok_a1b2c3d4e5f6"), "/t/{id}");
        assert_eq!(route_template(""), "/");
        assert_eq!(route_template("*"), "*");
    }
}
