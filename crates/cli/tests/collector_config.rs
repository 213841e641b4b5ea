//! The OpenTelemetry Collector recipe for fleet-wide tail sampling
//! (docs/otel-collector/, README "Sampling across hosts") parses as YAML
//! (PyYAML, installed by scripts/install-deps.sh) and holds together as a
//! collector configuration: every component a pipeline names is defined,
//! the first tier routes by trace id, the second tail-samples on the rules
//! zt-trace's own tail sampling has.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

fn load(name: &str) -> Value {
    let path = repo_root().join("docs/otel-collector").join(name);
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{} is not valid YAML: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every receiver, processor and exporter a pipeline names is defined, and
/// every pipeline has a receiver and an exporter.
fn pipelines_hold_together(cfg: &Value, what: &str) {
    let pipelines = cfg["service"]["pipelines"].as_object().unwrap();
    assert!(!pipelines.is_empty(), "{what}: no pipeline");
    for (name, p) in pipelines {
        for (kind, section) in [
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ] {
            let used = p[kind].as_array().cloned().unwrap_or_default();
            if kind != "processors" {
                assert!(!used.is_empty(), "{what}: pipeline {name} has no {kind}");
            }
            for c in used {
                let c = c.as_str().unwrap();
                assert!(
                    cfg[section].get(c).is_some(),
                    "{what}: pipeline {name} uses {kind} {c}, which is not defined"
                );
            }
        }
    }
}

#[test]
fn the_collector_recipe_parses_and_holds_together() {
    let lb = load("loadbalancer.yaml");
    pipelines_hold_together(&lb, "loadbalancer.yaml");
    let exp = &lb["exporters"]["loadbalancing"];
    assert_eq!(exp["routing_key"], "traceID");
    assert!(exp["protocol"]["otlp"].is_object());
    assert!(exp["resolver"]["static"]["hostnames"]
        .as_array()
        .is_some_and(|h| !h.is_empty()));
    assert!(lb["receivers"]["otlp"]["protocols"]["grpc"].is_object());

    let ts = load("tail-sampling.yaml");
    pipelines_hold_together(&ts, "tail-sampling.yaml");
    let tail = &ts["processors"]["tail_sampling"];
    assert!(tail["decision_wait"].as_str().is_some());
    let policies = tail["policies"].as_array().unwrap();
    let kinds: Vec<&str> = policies
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    for want in [
        "status_code",
        "latency",
        "string_attribute",
        "probabilistic",
    ] {
        assert!(kinds.contains(&want), "no {want} policy: {kinds:?}");
    }
    for p in policies {
        let kind = p["type"].as_str().unwrap();
        assert!(
            p[kind].is_object(),
            "policy {} has no {kind} section",
            p["name"]
        );
    }
    let procs = &ts["service"]["pipelines"]["traces"]["processors"];
    assert_eq!(procs[0], "tail_sampling", "tail sampling runs first");
}
