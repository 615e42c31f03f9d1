//! Running under a service manager: the sd_notify messages (the test plays systemd's
//! `$NOTIFY_SOCKET`) and the shipped systemd unit.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};

use crate::http::LIMIT;
use crate::support::{TempDir, repo_text};

/// The next datagram on `sock`, as text.
fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notify message in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn sd_notify_says_ready_reloading_and_stopping_in_order() {
    let dir = TempDir::new("notify");
    let path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    let config = dir.0.join("anygate.yml");
    std::fs::write(
        &config,
        "server: {listen: \"127.0.0.1:0\", workers: 1}\nroutes: {\"/\": \"OK\"}\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["serve", "-c"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &path)
        .env("ANYGATE__SERVER__ALLOW_ROOT", "true")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || BufReader::new(stderr).lines().for_each(drop));
    let signal = |name: &str| {
        assert!(
            Command::new("kill")
                .args([&format!("-{name}"), &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    // Ready only once it serves: the listener answers by now.
    assert_eq!(next(&sock), "READY=1\nSTATUS=serving\n");
    // A reload that applies.
    std::fs::write(
        &config,
        "server: {listen: \"127.0.0.1:0\", workers: 1}\nroutes: {\"/\": \"OK\", \"/b\": \"OK\"}\n",
    )
    .unwrap();
    signal("HUP");
    assert_eq!(
        next(&sock),
        "RELOADING=1\nSTATUS=reloading the configuration\n"
    );
    assert_eq!(
        next(&sock),
        "READY=1\nSTATUS=serving; configuration reloaded\n"
    );
    // A reload that fails still ends with READY=1: the old configuration serves.
    std::fs::write(&config, "routes: {\"/\": \"NOT A VALID ACTION ((\"}\n").unwrap();
    signal("HUP");
    assert_eq!(
        next(&sock),
        "RELOADING=1\nSTATUS=reloading the configuration\n"
    );
    assert_eq!(
        next(&sock),
        "READY=1\nSTATUS=serving; the reload failed, the previous configuration stays\n"
    );
    signal("TERM");
    assert_eq!(next(&sock), "STOPPING=1\nSTATUS=draining connections\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_systemd_unit_is_type_notify_reloads_by_sighup_and_is_hardened() {
    let unit = repo_text("deploy/anygate.service");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |key: &str| settings.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    for (key, value) in [
        ("Type", "notify"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("MemoryDenyWriteExecute", "yes"),
    ] {
        assert_eq!(get(key), Some(value), "{key}");
    }
    let start = get("ExecStart").expect("ExecStart");
    assert!(
        start.ends_with("anygate serve -c /etc/anygate/anygate.yml"),
        "{start}"
    );
}

/// The metric names `/metrics` can write: every `# TYPE` family, with a histogram's
/// `_bucket`, `_sum` and `_count` series.
fn exposed_names() -> std::collections::BTreeSet<String> {
    let mut text = String::new();
    anygate_obs::metrics::render(
        &mut text,
        false,
        &anygate_obs::metrics::Process {
            version: "t",
            open_connections: 0,
            refused_connections: 0,
            errors: anygate_pipeline::metrics::error_names(),
            ready: true,
            upstream_targets: &[("p".to_owned(), "up", 1)],
            upstream_circuits: &[("p".to_owned(), false)],
            certificates: &[("example.com".to_owned(), 0)],
        },
    );
    let mut names = std::collections::BTreeSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            names.insert(name.to_owned());
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
        }
    }
    names
}

/// Every `anygate_…` name in `expr`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("anygate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_that_exist() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/anygate.json"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let names = exposed_names();
    let mut queried = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let used = metric_names(expr);
            assert!(!used.is_empty(), "{expr}");
            for name in used {
                assert!(
                    names.contains(&name),
                    "panel {:?}: {name} is not exported",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 10, "{queried}");
}

#[test]
fn the_example_alerts_pass_promtool_and_use_metrics_that_exist() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/anygate-alerts.yml"
    );
    let out = Command::new("promtool")
        .args(["check", "rules", path])
        .output()
        .expect("promtool (Debian's `prometheus` package; scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let names = exposed_names();
    let text = std::fs::read_to_string(path).unwrap();
    for name in metric_names(&text) {
        assert!(names.contains(&name), "{name} is not exported");
    }
    // The alerts in docs/OBSERVABILITY.md are this file's.
    let doc = repo_text("docs/OBSERVABILITY.md");
    let rules = text.split_once("groups:").unwrap().1;
    assert!(
        doc.contains(rules.trim_end()),
        "docs/OBSERVABILITY.md and the alerts file differ"
    );
}

#[test]
fn every_exported_metric_family_is_documented_and_every_documented_one_exported() {
    let doc = repo_text("docs/OBSERVABILITY.md");
    let section = doc
        .split_once("## Metrics")
        .and_then(|(_, rest)| rest.split_once("\n## "))
        .map(|(metrics, _)| metrics)
        .expect("docs/OBSERVABILITY.md has a Metrics section");
    // The table's first cells: | `name` | type | ...
    let documented: std::collections::BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once('`'))
        .map(|(name, _)| format!("anygate_{name}"))
        .collect();
    let families: std::collections::BTreeSet<String> = exposed_names()
        .into_iter()
        .filter(|n| !["_bucket", "_sum", "_count"].iter().any(|s| n.ends_with(s)))
        .collect();
    assert!(families.len() >= 20, "{families:?}");
    let undocumented: Vec<_> = families.difference(&documented).collect();
    let unexported: Vec<_> = documented.difference(&families).collect();
    assert!(
        undocumented.is_empty() && unexported.is_empty(),
        "not in docs/OBSERVABILITY.md: {undocumented:?}; documented, not exported: {unexported:?}"
    );
}

/// The one document of `deploy/k8s/NAME`.
fn manifest(name: &str) -> yaml_rust2::Yaml {
    let text = repo_text(&format!("deploy/k8s/{name}"));
    let mut docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("valid YAML");
    assert_eq!(docs.len(), 1, "{name}: one document");
    docs.remove(0)
}

#[test]
fn the_kubernetes_manifests_probe_the_admin_listener_and_lock_the_pod_down() {
    let deployment = manifest("deployment.yaml");
    assert_eq!(deployment["kind"].as_str(), Some("Deployment"));
    let labels = &deployment["spec"]["selector"]["matchLabels"];
    let pod = &deployment["spec"]["template"];
    assert_eq!(
        &pod["metadata"]["labels"], labels,
        "the selector matches the pods"
    );
    let spec = &pod["spec"];
    assert_eq!(
        spec["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    let c = &spec["containers"][0];
    let port = |name: &str| {
        c["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
    };
    assert_eq!(port("admin"), Some(9901));
    assert_eq!(port("http"), Some(8080));
    for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/health")] {
        assert_eq!(c[probe]["httpGet"]["path"].as_str(), Some(path), "{probe}");
        assert_eq!(
            c[probe]["httpGet"]["port"].as_str(),
            Some("admin"),
            "{probe}"
        );
    }
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(!c["resources"][k][r].is_badvalue(), "resources.{k}.{r}");
        }
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(
        sc["capabilities"]["drop"]
            .as_vec()
            .map(|v| v.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>()),
        Some(vec!["ALL"])
    );
    // The config comes from the ConfigMap, read-only, where the command line reads it.
    let volume = &spec["volumes"][0];
    assert_eq!(volume["configMap"]["name"].as_str(), Some("anygate"));
    let mount = &c["volumeMounts"][0];
    assert_eq!(mount["name"], volume["name"]);
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    let args: Vec<&str> = c["args"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    let config_path = format!("{}/anygate.yml", mount["mountPath"].as_str().unwrap());
    assert_eq!(args, ["serve", "-c", config_path.as_str()]);

    // The ConfigMap's configuration is valid, and its drain fits the grace period.
    let map = manifest("configmap.yaml");
    assert_eq!(map["kind"].as_str(), Some("ConfigMap"));
    let dir = TempDir::new("k8s-config");
    let file = dir.0.join("anygate.yml");
    let yml = map["data"]["anygate.yml"].as_str().unwrap();
    std::fs::write(&file, yml).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        yml.contains("listen: \"0.0.0.0:9901\""),
        "probes reach the admin port"
    );
    assert!(
        yml.contains("watch: true"),
        "a ConfigMap update reloads the pod"
    );
    let grace = spec["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(yml.contains("shutdown_timeout: 25s") && grace > 25);

    // The Service exposes the public port only; the budget keeps pods up during drains.
    let service = manifest("service.yaml");
    assert_eq!(&service["spec"]["selector"], labels);
    let ports = service["spec"]["ports"].as_vec().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["targetPort"].as_str(), Some("http"));
    let pdb = manifest("pdb.yaml");
    assert_eq!(pdb["kind"].as_str(), Some("PodDisruptionBudget"));
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(pdb["spec"]["maxUnavailable"].as_i64(), Some(1));
}
