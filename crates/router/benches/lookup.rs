//! Does lookup cost stay flat from 10 to 100 000 rules, and how does it compare with
//! `matchit` (a radix router without method tiers or priorities)?
//!
//! Rule set of size N: `GET /api/v{k}/r{i}/:id`, with some prefix rules and an any-method
//! fallback, so lookups exercise literal, param and prefix paths and the method tiers.
//!
//! Hosts (`lookup_hosts`): H hosts × 100 such rules each (`GET h{k}.example.com/...`), a
//! wildcard and the fallback for every host; does the cost stay flat from 1 to 10 000 hosts
//! (issue 21: within 2x)?

use anygate_router::path::normalize;
use anygate_router::{Lookup, RequestHost, Router, parse_action, parse_head};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn paths(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 10 {
            9 => format!("/static{i}/"),
            _ => format!("/api/v{}/r{i}/:id", i % 7),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    for n in [10usize, 1_000, 100_000] {
        let ps = paths(n);
        let ok = parse_action("OK").unwrap();
        let mut rules: Vec<_> = ps
            .iter()
            .map(|p| (parse_head(&format!("GET {p}")).unwrap(), ok.clone()))
            .collect();
        rules.push((parse_head("/").unwrap(), ok.clone()));
        let router = Router::build(rules).unwrap();
        let i = n / 2 / 10 * 10 + 3;
        let hit = format!("/api/v{}/r{i}/42", i % 7);
        let prefix = format!("/static{}/css/app.css", n / 2 / 10 * 10 + 9);
        assert!(
            matches!(router.lookup(b"GET", hit.as_bytes()), Lookup::Found(m) if m.rule.index != n)
        );
        assert!(
            matches!(router.lookup(b"GET", prefix.as_bytes()), Lookup::Found(m) if m.rule.index != n)
        );
        g.bench_with_input(BenchmarkId::new("anygate_param_hit", n), &hit, |b, p| {
            b.iter(|| {
                matches!(
                    router.lookup(b"GET", black_box(p.as_bytes())),
                    Lookup::Found(_)
                )
            });
        });
        g.bench_with_input(
            BenchmarkId::new("anygate_prefix_hit", n),
            &prefix,
            |b, p| {
                b.iter(|| {
                    matches!(
                        router.lookup(b"GET", black_box(p.as_bytes())),
                        Lookup::Found(_)
                    )
                });
            },
        );
        g.bench_with_input(
            BenchmarkId::new("anygate_fallback", n),
            &"/no/such/page",
            |b, p| {
                b.iter(|| {
                    matches!(
                        router.lookup(b"GET", black_box(p.as_bytes())),
                        Lookup::Found(_)
                    )
                });
            },
        );
        g.bench_with_input(
            BenchmarkId::new("anygate_normalize_and_hit", n),
            &hit,
            |b, p| {
                b.iter(|| {
                    let path = normalize(black_box(p.as_bytes())).unwrap();
                    matches!(router.lookup(b"GET", &path), Lookup::Found(_))
                });
            },
        );
        let mut m = matchit::Router::new();
        for (i, p) in ps.iter().enumerate() {
            let mp = if let Some(pre) = p.strip_suffix('/') {
                format!("{pre}/{{*rest}}")
            } else {
                p.replace(":id", "{id}")
            };
            m.insert(mp, i).unwrap();
        }
        g.bench_with_input(BenchmarkId::new("matchit_param_hit", n), &hit, |b, p| {
            b.iter(|| m.at(black_box(p.as_str())).is_ok());
        });
    }
    g.finish();
}

fn bench_hosts(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup_hosts");
    let ok = parse_action("OK").unwrap();
    let per_host = paths(100);
    for hosts in [1usize, 100, 10_000] {
        let mut rules = Vec::with_capacity(hosts * 100 + 2);
        for h in 0..hosts {
            for p in &per_host {
                let head = parse_head(&format!("GET h{h}.example.com{p}")).unwrap();
                rules.push((head, ok.clone()));
            }
        }
        rules.push((parse_head("*.tenants.example.com/").unwrap(), ok.clone()));
        rules.push((parse_head("/").unwrap(), ok.clone()));
        let router = Router::build(rules).unwrap();
        let host = RequestHost::parse(format!("H{}.example.com", hosts / 2).as_bytes()).unwrap();
        let tenant = RequestHost::parse(b"acme.tenants.example.com").unwrap();
        let unknown = RequestHost::parse(b"www.unknown.org").unwrap();
        let hit = "/api/v6/r13/42";
        assert!(matches!(
            router.lookup_host(b"GET", Some(host.key(80)), hit.as_bytes()),
            Lookup::Found(m) if m.rule.index == (hosts / 2) * 100 + 13
        ));
        g.bench_with_input(
            BenchmarkId::new("exact_host_param_hit", hosts),
            &hit,
            |b, p| {
                b.iter(|| {
                    let h = RequestHost::parse(black_box(b"H5000.example.com:8080")).unwrap();
                    let _ = black_box(h.name());
                    matches!(
                        router.lookup_host(b"GET", Some(host.key(80)), black_box(p.as_bytes())),
                        Lookup::Found(_)
                    )
                });
            },
        );
        g.bench_with_input(
            BenchmarkId::new("wildcard_host_hit", hosts),
            &"/x",
            |b, p| {
                b.iter(|| {
                    matches!(
                        router.lookup_host(b"GET", Some(tenant.key(80)), black_box(p.as_bytes())),
                        Lookup::Found(_)
                    )
                });
            },
        );
        g.bench_with_input(
            BenchmarkId::new("unknown_host_default", hosts),
            &hit,
            |b, p| {
                b.iter(|| {
                    matches!(
                        router.lookup_host(b"GET", Some(unknown.key(80)), black_box(p.as_bytes())),
                        Lookup::Found(_)
                    )
                });
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench, bench_hosts
}
criterion_main!(benches);
