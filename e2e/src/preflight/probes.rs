//! Check 4: every Deployment and StatefulSet container has readiness and
//! liveness probes, aimed at ports it declares, and a readiness probe that
//! asks about readiness.
//!
//! Without a readiness probe, a Service sends traffic to a Pod before it can
//! serve; the reference platform deployed callers before DataStorage was Ready.
//! A readiness probe on `/healthz` (liveness: "the process runs") or a TCP
//! check (the listener is bound) is no better: both pass before DataStorage
//! reached PostgreSQL. A container with a `health` port serves `/readyz` there.

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::objects::Objects;
use super::{Check, Finding};

pub fn check(objects: &Objects) -> Vec<Finding> {
    let mut findings = startup_budgets(objects);
    for w in objects
        .workloads()
        .into_iter()
        .filter(|w| w.kind == "Deployment" || w.kind == "StatefulSet")
    {
        for c in &w.spec.containers {
            let probes = [
                ("readinessProbe", c.readiness_probe.as_ref()),
                ("livenessProbe", c.liveness_probe.as_ref()),
                ("startupProbe", c.startup_probe.as_ref()),
            ];
            for (field, probe) in probes {
                let field_path = format!("containers[{}].{field}", c.name);
                match probe {
                    None if field != "startupProbe" => findings.push(Finding {
                        check: Check::Probes,
                        object: w.describe(),
                        field: field_path,
                        problem: "is missing".into(),
                        fix: format!(
                            "add an httpGet {field} on the health port (/readyz or /healthz)"
                        ),
                    }),
                    None => {}
                    Some(p) => {
                        if field == "readinessProbe" {
                            findings.extend(readiness_problem(c, p).map(|problem| Finding {
                                check: Check::Probes,
                                object: w.describe(),
                                field: field_path.clone(),
                                problem,
                                fix: format!(
                                    "use httpGet {{path: {READYZ}, port: health}}: /readyz is what says the service can serve"
                                ),
                            }));
                        }
                        if let Some(port) = probe_port(p).filter(|port| !declares(c, port)) {
                            findings.push(Finding {
                                check: Check::Probes,
                                object: w.describe(),
                                field: field_path,
                                problem: format!("targets port {} which the container does not declare", show(&port)),
                                fix: "point the probe at a declared containerPort (by name or number)".into(),
                            });
                        }
                    }
                }
            }
        }
    }
    findings
}

/// Seconds a probe lets pass before it fails the container:
/// `initialDelaySeconds + periodSeconds x failureThreshold` (Kubernetes'
/// defaults: 0, 10, 3).
pub fn budget_seconds(p: &Probe) -> i64 {
    i64::from(p.initial_delay_seconds.unwrap_or(0))
        + i64::from(p.period_seconds.unwrap_or(10)) * i64::from(p.failure_threshold.unwrap_or(3))
}

/// DataStorage waits up to `store.postgres.startup_timeout` for PostgreSQL
/// before it serves: its startup probe must allow at least that long, or a
/// restart during a PostgreSQL outage becomes a crash loop. The number lives
/// in one place, the service's configuration (its default, or the ConfigMap).
fn startup_budgets(objects: &Objects) -> Vec<Finding> {
    let mut findings = Vec::new();
    for w in objects.workloads() {
        for c in &w.spec.containers {
            let is_datastorage = c.image.as_deref().is_some_and(|i| {
                i.rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with("datastorage"))
            });
            if !is_datastorage {
                continue;
            }
            let Some(config) = super::configs::mounted_yaml(objects, &w, c)
                .into_iter()
                .find_map(super::configs::datastorage_config)
            else {
                continue;
            };
            if config.store.backend != datastorage::config::Backend::Postgres {
                continue;
            }
            let timeout = config.store.postgres.startup_timeout.as_secs();
            let (field, budget) = match (&c.startup_probe, &c.liveness_probe) {
                (Some(p), _) => ("startupProbe", budget_seconds(p)),
                (None, Some(p)) => ("livenessProbe", budget_seconds(p)),
                (None, None) => continue,
            };
            if budget < i64::try_from(timeout).unwrap_or(i64::MAX) {
                findings.push(Finding {
                    check: Check::Probes,
                    object: w.describe(),
                    field: format!("containers[{}].{field}", c.name),
                    problem: format!(
                        "allows {budget} s, but DataStorage waits up to store.postgres.startup_timeout = {timeout} s for PostgreSQL"
                    ),
                    fix: format!(
                        "raise periodSeconds x failureThreshold to at least {timeout} s (or lower startup_timeout)"
                    ),
                });
            }
        }
    }
    findings
}

/// The path of readiness on every service's health port.
const READYZ: &str = "/readyz";

/// Why a readiness probe does not ask about readiness.
fn readiness_problem(c: &Container, p: &Probe) -> Option<String> {
    if let Some(http) = &p.http_get {
        let path = http.path.as_deref().unwrap_or("/");
        return (path != READYZ && serves_health(c)).then(|| {
            format!("asks {path}, which answers while the service cannot serve yet (liveness, not readiness)")
        });
    }
    if p.tcp_socket.is_some() && serves_health(c) {
        return Some(
            "is a TCP check, which passes once the port is bound, before the service can serve"
                .into(),
        );
    }
    None
}

/// Whether the container declares the `health` port (one of our services).
fn serves_health(c: &Container) -> bool {
    c.ports
        .iter()
        .flatten()
        .any(|p| p.name.as_deref() == Some("health"))
}

fn probe_port(p: &Probe) -> Option<IntOrString> {
    p.http_get
        .as_ref()
        .map(|h| h.port.clone())
        .or_else(|| p.tcp_socket.as_ref().map(|t| t.port.clone()))
        .or_else(|| p.grpc.as_ref().map(|g| IntOrString::Int(g.port)))
}

fn declares(c: &Container, port: &IntOrString) -> bool {
    c.ports.iter().flatten().any(|p| match port {
        IntOrString::Int(n) => p.container_port == *n,
        IntOrString::String(name) => p.name.as_deref() == Some(name.as_str()),
    })
}

fn show(port: &IntOrString) -> String {
    match port {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => format!("\"{s}\""),
    }
}
