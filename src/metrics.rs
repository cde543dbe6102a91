//! The gateway's counters and gauges, rendered as Prometheus text on `GET /metrics`.
//!
//! A handful of labelled values, written at handshake and expiry-check rates (not per call), so
//! a std `Mutex` around ordered maps is enough: no `.await` runs under it and the order makes the
//! output stable.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Every metric the gateway exposes.
#[derive(Debug, Default)]
pub struct Metrics {
    verification_disabled: Mutex<BTreeMap<String, bool>>,
    expiry_days: Mutex<BTreeMap<(String, &'static str), i64>>,
    handshake_failures: Mutex<BTreeMap<(String, &'static str), u64>>,
    sessions_resumed: Mutex<BTreeMap<String, u64>>,
    handshakes: Mutex<BTreeMap<String, u64>>,
    // Counted per message in a flood, so each is an atomic the intake holds, not a map entry.
    downstream_dropped: Mutex<BTreeMap<(String, &'static str), Arc<AtomicU64>>>,
    audit: Arc<AuditCounters>,
}

/// `nexus_audit_records_total{outcome}` and `nexus_audit_dropped_total`: counted per call, so
/// atomics in a fixed order ([`Outcome::LABELS`](crate::access::audit::Outcome::LABELS)).
#[derive(Debug, Default)]
pub struct AuditCounters {
    records: [AtomicU64; 7],
    dropped: AtomicU64,
}

impl AuditCounters {
    /// One record with outcome `label` queued for writing.
    pub fn recorded(&self, label: &str) {
        let labels = crate::access::audit::Outcome::LABELS;
        if let Some(index) = labels.iter().position(|known| *known == label) {
            self.records[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One record dropped (the writer was behind); returns how many so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The non-zero counts per outcome, and the dropped records.
    pub fn snapshot(&self) -> (Vec<(&'static str, u64)>, u64) {
        let labels = crate::access::audit::Outcome::LABELS;
        let records = labels
            .into_iter()
            .zip(&self.records)
            .map(|(label, count)| (label, count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect();
        (records, self.dropped.load(Ordering::Relaxed))
    }
}

impl Metrics {
    /// `nexus_tls_verification_disabled{server}`.
    pub fn set_verification_disabled(&self, server: &str, disabled: bool) {
        lock(&self.verification_disabled).insert(server.to_owned(), disabled);
    }

    /// `nexus_certificate_expiry_days{path,role}`.
    pub fn set_expiry_days(&self, path: &str, role: &'static str, days: i64) {
        lock(&self.expiry_days).insert((path.to_owned(), role), days);
    }

    /// `nexus_tls_handshake_failures_total{server,reason}`.
    pub fn handshake_failed(&self, server: &str, reason: &'static str) {
        *lock(&self.handshake_failures)
            .entry((server.to_owned(), reason))
            .or_default() += 1;
    }

    /// `nexus_tls_handshakes_total{server}` and, when resumed,
    /// `nexus_tls_sessions_resumed_total{server}`.
    pub fn handshake_done(&self, server: &str, resumed: bool) {
        *lock(&self.handshakes).entry(server.to_owned()).or_default() += 1;
        if resumed {
            *lock(&self.sessions_resumed)
                .entry(server.to_owned())
                .or_default() += 1;
        }
    }

    /// The counter `nexus_downstream_dropped_total{server,reason}`, for the downstream's
    /// intake to increment (the same one across reconnects).
    pub fn downstream_dropped(&self, server: &str, reason: &'static str) -> Arc<AtomicU64> {
        lock(&self.downstream_dropped)
            .entry((server.to_owned(), reason))
            .or_default()
            .clone()
    }

    /// The audit trail's counters, for its writer.
    pub fn audit(&self) -> Arc<AuditCounters> {
        self.audit.clone()
    }

    /// Resumed sessions to `server` so far.
    pub fn sessions_resumed(&self, server: &str) -> u64 {
        lock(&self.sessions_resumed)
            .get(server)
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "nexus_tls_verification_disabled",
            "gauge",
            "1 when verify_certs = false for the server",
        );
        for (server, disabled) in lock(&self.verification_disabled).iter() {
            let _ = writeln!(
                out,
                "nexus_tls_verification_disabled{{server=\"{}\"}} {}",
                escape(server),
                u8::from(*disabled)
            );
        }
        header(
            &mut out,
            "nexus_certificate_expiry_days",
            "gauge",
            "Days until each configured certificate expires (negative: expired)",
        );
        for ((path, role), days) in lock(&self.expiry_days).iter() {
            let _ = writeln!(
                out,
                "nexus_certificate_expiry_days{{path=\"{}\",role=\"{role}\"}} {days}",
                escape(path)
            );
        }
        header(
            &mut out,
            "nexus_tls_handshake_failures_total",
            "counter",
            "Failed TLS handshakes to downstreams by reason",
        );
        for ((server, reason), count) in lock(&self.handshake_failures).iter() {
            let _ = writeln!(
                out,
                "nexus_tls_handshake_failures_total{{server=\"{}\",reason=\"{reason}\"}} {count}",
                escape(server)
            );
        }
        header(
            &mut out,
            "nexus_tls_handshakes_total",
            "counter",
            "Completed TLS handshakes to downstreams",
        );
        for (server, count) in lock(&self.handshakes).iter() {
            let _ = writeln!(
                out,
                "nexus_tls_handshakes_total{{server=\"{}\"}} {count}",
                escape(server)
            );
        }
        header(
            &mut out,
            "nexus_tls_sessions_resumed_total",
            "counter",
            "TLS handshakes to downstreams that resumed a session",
        );
        for (server, count) in lock(&self.sessions_resumed).iter() {
            let _ = writeln!(
                out,
                "nexus_tls_sessions_resumed_total{{server=\"{}\"}} {count}",
                escape(server)
            );
        }
        header(
            &mut out,
            "nexus_downstream_dropped_total",
            "counter",
            "Messages from downstreams dropped: over a limit, malformed, or with a full backlog",
        );
        for ((server, reason), count) in lock(&self.downstream_dropped).iter() {
            let _ = writeln!(
                out,
                "nexus_downstream_dropped_total{{server=\"{}\",reason=\"{reason}\"}} {}",
                escape(server),
                count.load(Ordering::Relaxed)
            );
        }
        self.render_audit(&mut out);
        out
    }

    fn render_audit(&self, out: &mut String) {
        let (records, dropped) = self.audit.snapshot();
        header(
            out,
            "nexus_audit_records_total",
            "counter",
            "Audit records queued for writing, by outcome",
        );
        for (outcome, count) in records {
            let _ = writeln!(
                out,
                "nexus_audit_records_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        header(
            out,
            "nexus_audit_dropped_total",
            "counter",
            "Audit records dropped because the audit writer was behind",
        );
        let _ = writeln!(out, "nexus_audit_dropped_total {dropped}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values escaped as the exposition format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_values_in_order() {
        let metrics = Metrics::default();
        metrics.set_verification_disabled("b", false);
        metrics.set_verification_disabled("a\"x", true);
        metrics.handshake_failed("a", "expired");
        metrics.handshake_failed("a", "expired");
        metrics.handshake_done("a", true);
        let text = metrics.render();
        assert!(text.contains("nexus_tls_verification_disabled{server=\"a\\\"x\"} 1\nnexus_tls_verification_disabled{server=\"b\"} 0\n"), "{text}");
        assert!(
            text.contains("nexus_tls_handshake_failures_total{server=\"a\",reason=\"expired\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("nexus_tls_sessions_resumed_total{server=\"a\"} 1"),
            "{text}"
        );
        assert_eq!(metrics.sessions_resumed("a"), 1);
    }
}
