//! As root: service identity from cgroups. Python services are started in
//! cgroups the test makes under the cgroup2 mount, named like a docker
//! scope, a Kubernetes pod's container (systemd driver) and systemd units,
//! without OTEL_SERVICE_NAME (except one), and traced by the real binary:
//! - the docker scope gives `container.id`, the pod `k8s.pod.uid` and
//!   `container.id`; their names stay the script's (ids are not names);
//! - `system.slice/orders.service` names its service `orders`;
//! - a `--service-name` rule overrides the unit, OTEL_SERVICE_NAME and
//!   OTEL_RESOURCE_ATTRIBUTES override it too (with `service.namespace`
//!   and `deployment.environment` kept);
//! - `process.command_line` is absent without `--keep-command-line`.
//!
//! The cgroups are removed when the test ends (also when it fails).

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::process::{Command, Stdio};

const CONTAINER: &str = "5c1e0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7";
const POD_CONTAINER: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0";
const POD_UID: &str = "0d5e9a3c-7b1f-4c2e-8a6d-3f9b1e7c5a20";

/// service.py as "profile" (a leaf answering /profile/<n>) in cgroup `cg`,
/// without OTEL_SERVICE_NAME unless `env` sets it.
fn leaf_in(cg: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/topology/service.py"))
        .arg("profile")
        .arg(port.to_string())
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    TestCgroups::start_in(&mut cmd, cg);
    let p = Proc {
        name: format!("profile:{port}"),
        child: cmd.spawn().expect("python3"),
    };
    wait_port(port, "profile");
    p
}

#[test]
fn services_in_container_pod_and_unit_cgroups_are_named_from_them() {
    if !require_root("services_in_container_pod_and_unit_cgroups_are_named_from_them") {
        return;
    }
    let cgroup2 = zt_trace::ebpf_probes::cgroup2_mount().expect("a cgroup2 mount");
    let dir = tempdir("identity");
    // The cgroups first: removed last, after the processes in them.
    let mut cgs = TestCgroups::new(&cgroup2, "ident");
    let docker = cgs.make(&format!("system.slice/docker-{CONTAINER}.scope"));
    let pod = cgs.make(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{POD_CONTAINER}.scope",
        POD_UID.replace('-', "_")
    ));
    let orders = cgs.make("system.slice/orders.service");
    let billing = cgs.make("system.slice/billing.service");
    let envs = cgs.make("system.slice/env.service");
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let _s = [
        leaf_in(&docker, ports[0], &[]),
        leaf_in(&pod, ports[1], &[]),
        leaf_in(&orders, ports[2], &[]),
        leaf_in(&billing, ports[3], &[]),
        leaf_in(
            &envs,
            ports[4],
            &[
                ("OTEL_SERVICE_NAME", "checkout"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.namespace=shop,deployment.environment=staging",
                ),
            ],
        ),
    ];
    // Each process is in its cgroup, as /proc says.
    let pid_cg = std::fs::read_to_string(format!("/proc/{}/cgroup", _s[2].pid())).unwrap();
    assert!(pid_cg.contains("/system.slice/orders.service"), "{pid_cg}");

    let rule = format!("unit=billing,port={}:billing-api", ports[3]);
    let tracer = Tracer::start(&dir, &["run", "--output", "json", "--service-name", &rule]);
    for (i, port) in ports.iter().enumerate() {
        for k in 0..3 {
            let st = Command::new("curl")
                .args(["-s", "-o", "/dev/null"])
                .arg(format!("http://127.0.0.1:{port}/profile/{k}?rid=id{i}x{k}"))
                .status()
                .expect("curl");
            assert!(st.success());
        }
    }
    let (out, _) = tracer.stop();
    let spans = parse_spans(&out);
    // The SERVER span of each service, by the port it served.
    let by_port: HashMap<u16, &Value> = spans
        .iter()
        .filter(|s| s["kind"] == "SERVER" && rid_of(s).is_some_and(|r| r.starts_with("id")))
        .map(|s| (attr(s, "server.port").unwrap().as_u64().unwrap() as u16, s))
        .collect();
    let res = |i: usize| -> &Value {
        &by_port
            .get(&ports[i])
            .unwrap_or_else(|| panic!("no span of service {i} in:\n{out}"))["resource"]
    };
    let s = |v: &Value, k: &str| v[k].as_str().map(str::to_owned);

    // Docker scope: the container id; the name is the script's.
    assert_eq!(s(res(0), "service.name").as_deref(), Some("service"));
    assert_eq!(s(res(0), "container.id").as_deref(), Some(CONTAINER));
    assert_eq!(s(res(0), "k8s.pod.uid"), None);
    // A pod's container: both ids.
    assert_eq!(s(res(1), "service.name").as_deref(), Some("service"));
    assert_eq!(s(res(1), "container.id").as_deref(), Some(POD_CONTAINER));
    assert_eq!(s(res(1), "k8s.pod.uid").as_deref(), Some(POD_UID));
    // A systemd unit names its service.
    assert_eq!(s(res(2), "service.name").as_deref(), Some("orders"));
    assert_eq!(s(res(2), "container.id"), None);
    // A rule (unit and port) over the unit.
    assert_eq!(s(res(3), "service.name").as_deref(), Some("billing-api"));
    // The environment over the unit, with its resource attributes.
    assert_eq!(s(res(4), "service.name").as_deref(), Some("checkout"));
    assert_eq!(s(res(4), "service.namespace").as_deref(), Some("shop"));
    assert_eq!(
        s(res(4), "deployment.environment").as_deref(),
        Some("staging")
    );
    for i in 0..5 {
        assert_eq!(
            s(res(i), "process.command_line"),
            None,
            "the command line only with --keep-command-line"
        );
    }
}
