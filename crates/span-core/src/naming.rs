//! Names: services from processes, low-cardinality routes from paths.

use crate::event::ProcessInfo;

const INTERPRETERS: &[&str] = &[
    "python", "python2", "python3", "node", "nodejs", "ruby", "perl", "php", "bash", "sh", "dash",
    "java", "deno", "bun",
];

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
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

/// `service.name` for a process: `OTEL_SERVICE_NAME` when set; for an
/// interpreter, its script (`python3 /srv/gateway.py` -> `gateway`,
/// `python -m app.main` -> `app.main`, `java -jar orders.jar` -> `orders`);
/// otherwise the executable's name.
pub fn service_name(p: &ProcessInfo) -> String {
    if let Some(s) = p.service_name.as_deref().filter(|s| !s.trim().is_empty()) {
        return s.trim().to_owned();
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
                        return m.clone();
                    }
                }
                "-jar" => {
                    if let Some(j) = it.next() {
                        return strip_ext(basename(j)).to_owned();
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
                        return strip_ext(b).to_owned();
                    }
                }
            }
        }
    }
    let name = basename(exe);
    if !name.is_empty() {
        return name.to_owned();
    }
    if !p.comm.is_empty() {
        return p.comm.clone();
    }
    format!("pid-{}", p.pid)
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
