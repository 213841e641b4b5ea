//! Options are validated at startup, before anything is attached, with one
//! clear message per problem and a non-zero exit; the configuration file,
//! the environment and the command line layer as documented. No root needed.

mod common;

use common::*;
use std::process::{Command, Output};

fn zt(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(zt_trace_bin())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .expect("zt-trace")
}

fn fails_with(args: &[&str], needle: &str) {
    let out = zt(args, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} was accepted:\n{err}");
    assert!(err.contains(needle), "{args:?}: {needle:?} not in:\n{err}");
    assert!(
        !err.contains("attaching the eBPF probes") && !err.contains("tracing"),
        "{args:?} got as far as attaching:\n{err}"
    );
}

#[test]
fn every_bad_option_is_refused_with_its_own_message() {
    for (args, needle) in [
        (
            &["--protocol", "xyz"][..],
            "protocol (--protocol): unknown OTLP protocol \"xyz\"",
        ),
        (
            &["--compression", "lzma"],
            "compression (--compression): unknown compression \"lzma\"",
        ),
        (
            &["--exporter", "otlp-http=http://127.0.0.1:99999/v1/traces"],
            "the port must be a number from 1 to 65535",
        ),
        (
            &["--exporter", "carrier-pigeon"],
            "unknown exporter \"carrier-pigeon\"",
        ),
        (
            &["--capture-bytes", "0"],
            "capture_bytes (--capture-bytes) is 0",
        ),
        (
            &["dashboard", "--interval", "0"],
            "interval_s (--interval) is 0: it must be from 0.1 to 3600 seconds",
        ),
        (&["dashboard", "--slow-ms", "0"], "slow_ms (--slow-ms) is 0"),
        (
            &["top", "--n-plus-one", "1"],
            "n_plus_one_min_calls (--n-plus-one) is 1",
        ),
        (
            &["dashboard", "--from", "/nonexistent/events.zrec"],
            "from (--from): /nonexistent/events.zrec is not a file",
        ),
        (
            &["demo", "--interval", "0.01"],
            "interval_s (--interval) is 0.01",
        ),
        (&["demo", "--requests", "0"], "requests (--requests) is 0"),
        (
            &["dashboard", "--sample", "2"],
            "ratio (--sample) is 2: it must be a number from 0.0 to 1.0",
        ),
        (&["top", "--port", "0"], "ports (--port): 0 is not a port"),
        (
            &["--capture-bytes", "100000"],
            "capture_bytes (--capture-bytes) is 100000",
        ),
        (
            &["--request-timeout-s", "0"],
            "request_timeout_s (--request-timeout-s) is 0",
        ),
        (
            &["--trace-linger-ms", "0"],
            "trace_linger_ms (--trace-linger-ms) is 0",
        ),
        (&["--export-queue", "0"], "queue (--export-queue) is 0"),
        (
            &["--export-shutdown-timeout-ms", "0"],
            "shutdown_timeout_ms (--export-shutdown-timeout-ms) is 0",
        ),
        (
            &["--ring-buffer-mib", "3"],
            "ring_buffer_mib (--ring-buffer-mib) is 3",
        ),
        (
            &["--batch-delay-ms", "1001"],
            "batch_delay_ms (--batch-delay-ms) is 1001",
        ),
        (&["--header", "no-equals"], "headers (--header)"),
        (&["--duration=-5"], "duration_s (--duration) is -5"),
        (&["--duration", "0"], "duration_s (--duration) is 0"),
        (&["--pid", "0"], "0 is not a process id"),
        (
            &["--record", "/nonexistent/dir/x.zrec"],
            "record (--record)",
        ),
        (&["run", "--protocol", "xyz"], "unknown OTLP protocol"),
        (
            &["record", "/tmp/x.zrec", "--capture-bytes", "0"],
            "capture_bytes",
        ),
        (
            &["replay", "/nonexistent.zrec", "--trace-linger-ms", "0"],
            "trace_linger_ms",
        ),
        (
            &["--service-name", "orders"],
            "service_names (--service-name): service name rule \"orders\": expected CONDITIONS:NAME",
        ),
        (
            &["--service-name", "exe=/usr/bin/java,port=80800:orders"],
            "port=80800 is not a port (1-65535)",
        ),
        (
            &["--service-name", "flavour=mint:x"],
            "unknown condition \"flavour\"",
        ),
        (
            &["--service-name", "exe=/usr/bin/java:"],
            "the service name after ':' is empty",
        ),
        (
            &["replay", "/nonexistent.zrec", "--service-name", "port=x:y"],
            "port=x is not a port",
        ),
        (
            &["--metrics-listen", "99999"],
            "listen (--metrics-listen): \"99999\": the port must be a number from 0 to 65535",
        ),
        (
            &["--metrics-listen", "nohost.invalid:9"],
            "listen (--metrics-listen)",
        ),
        (
            &["--export-metrics"],
            "export (--export-metrics) needs an OTLP exporter",
        ),
        (
            &["--export-metrics", "--exporter", "zipkin"],
            "export (--export-metrics) needs an OTLP exporter",
        ),
        (
            &["--metrics-export-interval-s", "0"],
            "export_interval_s (--metrics-export-interval-s) is 0",
        ),
        (
            &["--graph-window-minutes", "0"],
            "window_minutes (--graph-window-minutes) is 0",
        ),
        (
            &["--graph-max-nodes", "0"],
            "max_nodes (--graph-max-nodes) is 0",
        ),
        (
            &["--metrics-max-series", "0"],
            "max_red_series (--metrics-max-series) is 0",
        ),
        (&["--graph", "/nonexistent/dir/g.json"], "graph (--graph)"),
        (
            &["graph", "--graph-max-edges", "0"],
            "max_edges (--graph-max-edges) is 0",
        ),
        (
            &["graph", "--duration", "0"],
            "duration_s (--duration) is 0",
        ),
        (
            &[
                "replay",
                "/nonexistent.zrec",
                "--graph",
                "/nonexistent/dir/g.json",
            ],
            "graph (--graph)",
        ),
        (
            &["--redact-query-param", ""],
            "redact_query_params (--redact-query-param) \"\": the name is empty",
        ),
        (
            &["--redact-query-param", "a&b"],
            "a parameter name cannot hold",
        ),
        (
            &["--keep-query", "--redact-query-param", "sid"],
            "keep_query (--keep-query) keeps every query value",
        ),
        // In-kernel filters.
        (&["--exclude-pid", "0"], "exclude_pids (--exclude-pid): 0 is not a process id"),
        (&["--port", "0"], "ports (--port): 0 is not a port"),
        (&["--exclude-port", "0"], "exclude_ports (--exclude-port): 0 is not a port"),
        (
            &["--comm", "a-name-longer-than-fifteen"],
            "is longer than the 15 bytes the kernel keeps",
        ),
        (&["--exe", "/nonexistent/bin"], "executable /nonexistent/bin"),
        (&["--cgroup", "/nonexistent/cg"], "cgroup /nonexistent/cg"),
        // Sampling and output filters.
        (
            &["--sample", "1.5"],
            "ratio (--sample) is 1.5: it must be a number from 0.0 to 1.0",
        ),
        (&["--sample=-0.1"], "ratio (--sample) is -0.1"),
        (&["--sample", "NaN"], "ratio (--sample) is NaN"),
        (
            &["--sample-service", "gateway=2"],
            "service_ratios (--sample-service): service gateway: sampling ratio 2 is not a number from 0.0 to 1.0",
        ),
        (
            &["--sample-service", "gateway"],
            "service_ratios (--sample-service): \"gateway\" is not NAME=RATIO",
        ),
        (
            &["--sample-service", "a=0.1", "--sample-service", "a=0.2"],
            "service a is given twice",
        ),
        (
            &["--sample-algorithm", "coin"],
            "algorithm (--sample-algorithm): unknown sampling algorithm \"coin\"",
        ),
        (
            &["--keep-slower-than", "0"],
            "keep_slower_than_ms (--keep-slower-than) is 0",
        ),
        (
            &["--keep-match", "http.route"],
            "keep_match (--keep-match): \"http.route\" is not KEY=GLOB",
        ),
        (
            &["--keep-match", "http.route=/api/[v1"],
            "keep_match (--keep-match): glob \"/api/[v1\": `[` without its closing `]`",
        ),
        (
            &["--ignore-route", "/health[z-a]"],
            "ignore_routes (--ignore-route): glob \"/health[z-a]\": range z-a runs backwards",
        ),
        (
            &["--only-service", ""],
            "only_services (--only-service): an empty service name",
        ),
        (
            &["--max-held-traces", "0"],
            "max_held_traces (--max-held-traces) is 0",
        ),
        (
            &["--decision-wait-ms", "700000"],
            "decision_wait_ms (--decision-wait-ms) is 700000",
        ),
        (
            &["replay", "/nonexistent.zrec", "--sample", "7"],
            "ratio (--sample) is 7",
        ),
    ] {
        fails_with(args, needle);
    }
    // Several problems: all of them, one line each.
    let out = zt(
        &[
            "--protocol",
            "xyz",
            "--compression",
            "lzma",
            "--export-queue",
            "0",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.matches("\n  ").count(), 3, "{err}");
    // clap's own checks (not a number) also fail.
    fails_with(&["--capture-bytes", "lots"], "invalid value 'lots'");
}

#[test]
fn configuration_file_environment_and_options_layer() {
    let dir = tempdir("cli-opts");
    let file = dir.join("zt.toml");
    std::fs::write(
        &file,
        "[capture]\ncapture_bytes = 1024\n[assemble]\ntrace_linger_ms = 500\nrequest_timeout_s = 9\n[export]\nheaders = [\"api-key=s3cret\"]\n",
    )
    .unwrap();
    let out = zt(
        &[
            "--config",
            file.to_str().unwrap(),
            "--print-config",
            "--request-timeout-s",
            "7",
        ],
        &[
            ("ZT_ASSEMBLE_TRACE_LINGER_MS", "300"),
            ("ZT_CAPTURE_TLS", "false"),
            ("ZT_GRAPH_MAX_EDGES", "77"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("capture_bytes = 1024"), "file: {text}");
    assert!(
        text.contains("trace_linger_ms = 300"),
        "environment over file: {text}"
    );
    assert!(
        text.contains("request_timeout_s = 7"),
        "option over file: {text}"
    );
    assert!(text.contains("tls = false"), "{text}");
    assert!(text.contains("max_edges = 77"), "{text}");
    assert!(
        text.contains("api-key=REDACTED") && !text.contains("s3cret"),
        "{text}"
    );

    // Unknown keys are errors, with the file and line.
    std::fs::write(&file, "[capture]\ncapture_bytez = 1\n").unwrap();
    fails_with(
        &["--config", file.to_str().unwrap()],
        "line 2: unknown field `capture_bytez`",
    );
    let out = zt(&["--print-config"], &[("ZT_EXPORT_QUEU", "5")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ZT_EXPORT_QUEU"));
    // Values in the file are validated like options.
    std::fs::write(&file, "[export]\nprotocol = \"xyz\"\n").unwrap();
    fails_with(
        &["--config", file.to_str().unwrap()],
        "unknown OTLP protocol \"xyz\"",
    );
    std::fs::write(&file, "[sampling]\nratio = 1.2\n").unwrap();
    fails_with(
        &["--config", file.to_str().unwrap()],
        "ratio (--sample) is 1.2",
    );
    std::fs::write(&file, "[sampling]\nratio = \"half\"\n").unwrap();
    fails_with(&["--config", file.to_str().unwrap()], "line 2");
    std::fs::write(&file, "[sampling]\nkeep_errrors = true\n").unwrap();
    fails_with(
        &["--config", file.to_str().unwrap()],
        "line 2: unknown field `keep_errrors`",
    );
    std::fs::write(&file, "[filter]\nignore_routes = [\"/x[\"]\n").unwrap();
    fails_with(
        &["--config", file.to_str().unwrap()],
        "ignore_routes (--ignore-route): glob \"/x[\"",
    );
    std::fs::write(&file, "[sampling\nratio = 0.5\n").unwrap();
    fails_with(&["--config", file.to_str().unwrap()], "configuration file");
    let out = zt(&["--duration", "1"], &[("ZT_SAMPLING_RATIO", "2")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ratio (--sample) is 2"));
    let out = zt(&["--print-config"], &[("ZT_SAMPLING_RATIOO", "0.5")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ZT_SAMPLING_RATIOO"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn service_name_rules_from_the_file_the_environment_and_options() {
    let dir = tempdir("cli-rules");
    let file = dir.join("zt.toml");
    std::fs::write(
        &file,
        "[assemble]\nservice_names = [\"exe=/usr/bin/java,port=8080:orders\"]\nkeep_command_line = true\n",
    )
    .unwrap();
    let print = |args: &[&str], env: &[(&str, &str)]| {
        let mut a = vec!["--config", file.to_str().unwrap(), "--print-config"];
        a.extend_from_slice(args);
        let out = zt(&a, env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = print(&[], &[]);
    assert!(
        text.contains(r#"service_names = ["exe=/usr/bin/java,port=8080:orders"]"#),
        "{text}"
    );
    assert!(text.contains("keep_command_line = true"), "{text}");
    // The environment separates rules (which hold commas) with ';'.
    let text = print(
        &[],
        &[(
            "ZT_ASSEMBLE_SERVICE_NAMES",
            "exe=python3,port=81:a;unit=web:b",
        )],
    );
    assert!(
        text.contains(r#""exe=python3,port=81:a""#) && text.contains(r#""unit=web:b""#),
        "{text}"
    );
    // Options over both, repeatable.
    let text = print(
        &[
            "--service-name",
            "comm=x:c1",
            "--service-name",
            "pod=abc:c2",
        ],
        &[("ZT_ASSEMBLE_SERVICE_NAMES", "unit=web:b")],
    );
    assert!(
        text.contains(r#"service_names = ["#)
            && text.contains("comm=x:c1")
            && text.contains("pod=abc:c2")
            && !text.contains("unit=web"),
        "{text}"
    );
    // A bad rule in the file is refused like an option.
    std::fs::write(&file, "[assemble]\nservice_names = [\"nope\"]\n").unwrap();
    fails_with(
        &["--config", file.to_str().unwrap()],
        "service_names (--service-name)",
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_example_configuration_is_the_defaults() {
    let example = repo_root().join("zt-trace.toml");
    let with = zt(
        &["--config", example.to_str().unwrap(), "--print-config"],
        &[],
    );
    let without = zt(&["--print-config"], &[]);
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert_eq!(with.stdout, without.stdout);
}

#[test]
fn proxies_collapse_in_the_graph_unless_told_not_to() {
    let print = |args: &[&str], env: &[(&str, &str)]| {
        let mut a = vec!["--print-config"];
        a.extend_from_slice(args);
        let out = zt(&a, env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(print(&[], &[]).contains("collapse_proxies = true"));
    assert!(print(&["--no-collapse-proxies"], &[]).contains("collapse_proxies = false"));
    assert!(
        print(&[], &[("ZT_GRAPH_COLLAPSE_PROXIES", "false")]).contains("collapse_proxies = false")
    );
    let out = zt(
        &["--print-config"],
        &[("ZT_GRAPH_COLLAPSE_PROXIES", "maybe")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ZT_GRAPH_COLLAPSE_PROXIES"));
}

#[test]
fn query_redaction_options() {
    let out = zt(
        &[
            "--print-config",
            "--redact-query-param",
            "sessionid",
            "--redact-query-param",
            "X-Api-Token",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("redact_query_params = [\n    \"sessionid\",\n    \"X-Api-Token\",\n]"),
        "{text}"
    );
    assert!(text.contains("keep_query = false"), "{text}");
    let out = zt(&["--print-config", "--keep-query"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("keep_query = true"));
    // The help names every parameter redacted by default.
    let help = zt(&["run", "--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let words: std::collections::HashSet<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .collect();
    for name in span_core::semconv::url::DEFAULT_REDACTED_QUERY_PARAMS {
        assert!(words.contains(name), "{name} not in --help:\n{help}");
    }
}

#[test]
fn sampling_and_filter_options_layer_and_print() {
    let dir = tempdir("cli-sampling");
    let file = dir.join("zt.toml");
    std::fs::write(
        &file,
        "[sampling]\nratio = 0.5\nkeep_errors = true\nkeep_match = [\"http.route=/checkout*\"]\n[filter]\nonly_services = [\"shop\"]\n",
    )
    .unwrap();
    let out = zt(
        &[
            "--config",
            file.to_str().unwrap(),
            "--print-config",
            "--sample-service",
            "gateway=0.01",
            "--ignore-route",
            "/health*",
            "--min-duration",
            "5",
            "--no-parent-based",
        ],
        &[
            ("ZT_SAMPLING_RATIO", "0.25"),
            ("ZT_SAMPLING_KEEP_SLOWER_THAN_MS", "500"),
            ("ZT_SAMPLING_ALGORITHM", "threshold"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "ratio = 0.25",
        "keep_errors = true",
        "keep_slower_than_ms = 500",
        "algorithm = \"threshold\"",
        "parent_based = false",
        "\"http.route=/checkout*\"",
        "service_ratios = [\"gateway=0.01\"]",
        "ignore_routes = [\"/health*\"]",
        "only_services = [\"shop\"]",
        "min_duration_ms = 5",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    // Keep rules with nothing sampled: a warning, not an error.
    let log = repo_root().join("tests/golden/http_topology.zrec");
    let out = Command::new(zt_trace_bin())
        .args([
            "replay",
            log.to_str().unwrap(),
            "--output",
            "none",
            "--keep-errors",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("WARN") && err.contains("the sampling ratio is 1.0"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The recorded topology (tests/golden/http_topology.zrec: 20 requests,
/// the errors of tests/topology/service.py at n % 10 == 3 and 7) replayed
/// through the command line's stage chain.
#[test]
fn replay_samples_the_output_and_counts_every_trace() {
    let log = repo_root().join("tests/golden/http_topology.zrec");
    let replay = |args: &[&str]| {
        let mut all = vec!["replay", log.to_str().unwrap(), "--output", "json"];
        all.extend_from_slice(args);
        let out = zt(&all, &[]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{all:?}: {err}");
        (parse_spans(&String::from_utf8_lossy(&out.stdout)), err)
    };
    let (all, err) = replay(&[]);
    let total = by_trace(&all).len();
    assert_eq!(total, 20);
    assert!(
        !err.contains("sampling:"),
        "sampling is off by default: {err}"
    );
    assert!(all.iter().all(|s| attr(s, "zt.sampling.reason").is_none()));

    let (none, err) = replay(&["--sample", "0"]);
    assert!(none.is_empty());
    let spans = all.len();
    assert!(
        err.contains(&format!(
            "spans {spans} started, {spans} emitted in 20 traces"
        )),
        "statistics count every trace: {err}"
    );
    assert!(
        err.contains("sampling: kept 0 traces, dropped 20 (ratio 20)"),
        "{err}"
    );

    let (kept, err) = replay(&["--sample", "0", "--keep-errors"]);
    let traces = by_trace(&kept);
    let errors: Vec<_> = by_trace(&all)
        .into_iter()
        .filter(|(_, ss)| ss.iter().any(|s| s["status_code"] == "ERROR"))
        .collect();
    assert!(!errors.is_empty());
    assert_eq!(traces.len(), errors.len(), "{err}");
    for (id, spans) in &errors {
        let got = &traces[id];
        assert_eq!(got.len(), spans.len(), "error trace {id} kept whole");
        let root = got
            .iter()
            .find(|s| s["parent_span_id"].as_str() == Some(""))
            .unwrap();
        assert_eq!(attr_str(root, "zt.sampling.reason"), "error");
    }

    // Output filters: only traces the users service takes part in that
    // went past auth (401s stop at auth).
    let (users, err) = replay(&["--only-service", "users", "--min-duration", "1"]);
    let n = by_trace(&users).len();
    assert!(n > 0 && n < total, "{n}: {err}");
    assert!(err.contains("output filter dropped"), "{err}");
    let (gone, _) = replay(&["--ignore-route", "/api/users/*"]);
    assert!(gone.is_empty(), "every root is a GET /api/users/<n>");
}
