//! Reads the service's `/metrics` (Prometheus text format) over HTTP during a run, so reports can
//! show what the service itself counted (cache hits, stale fallbacks, breaker state, backlog).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;

/// Samples: metric name with its labels (as written, e.g. `x_total{kind="timeout"}`) → value.
pub type Sample = BTreeMap<String, f64>;

/// A client for `/metrics` endpoints.
#[derive(Debug, Clone)]
pub struct Scraper {
    http: reqwest::Client,
}

impl Default for Scraper {
    fn default() -> Self {
        Self::new(Duration::from_secs(2))
    }
}

impl Scraper {
    /// A scraper whose every request gives up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
        }
    }

    /// Fetches and parses one endpoint (`http://host:port/metrics`).
    pub async fn scrape(&self, url: &str) -> anyhow::Result<Sample> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "GET {url}: HTTP {status}");
        let text = response
            .text()
            .await
            .with_context(|| format!("GET {url}"))?;
        Ok(parse(&text))
    }
}

/// Parses the Prometheus text format: comments and `# HELP`/`# TYPE` are skipped, a line is
/// `name{labels} value [timestamp]`; lines that do not parse are ignored.
pub fn parse(text: &str) -> Sample {
    let mut out = Sample::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The value follows the last space outside the label set.
        let split = match line.rfind('}') {
            Some(close) => line[close..].find(' ').map(|i| close + i),
            None => line.find(' '),
        };
        let Some(at) = split else { continue };
        let (name, rest) = line.split_at(at);
        let value = rest.split_whitespace().next().and_then(|v| match v {
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            other => other.parse::<f64>().ok(),
        });
        if let Some(v) = value {
            out.insert(name.to_owned(), v);
        }
    }
    out
}

/// Gauges every replica reads from the same table: summing them would count it once per replica,
/// so the replicas' largest value is kept.
const SHARED_GAUGES: [&str; 3] = ["outbox_backlog", "outbox_rejected", "outbox_stuck"];

/// Gauges of each replica's own state: a sum means nothing (two open breakers are not a
/// half-open one), so each replica's value is kept as `name{replica="i"}`.
const OWN_GAUGES: [&str; 1] = ["course_service_breaker_state"];

/// Combines samples across replicas (in their order) name by name: counters are summed, shared
/// gauges take the largest value, each replica's own gauges stay apart.
pub fn sum(samples: &[Sample]) -> Sample {
    let mut out = Sample::new();
    for (i, s) in samples.iter().enumerate() {
        for (k, v) in s {
            if OWN_GAUGES.contains(&k.as_str()) {
                out.insert(format!("{k}{{replica=\"{i}\"}}"), *v);
            } else if SHARED_GAUGES.contains(&k.as_str()) {
                let slot = out.entry(k.clone()).or_insert(*v);
                *slot = slot.max(*v);
            } else {
                *out.entry(k.clone()).or_default() += v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const BODY: &str = "# HELP booking_created_total Bookings created.\n\
        # TYPE booking_created_total counter\n\
        booking_created_total 42\n\
        course_service_failures_total{kind=\"timeout\"} 3\n\
        course_service_failures_total{kind=\"no responders\"} 1\n\
        outbox_backlog 7 1700000000000\n\
        course_service_call_seconds_bucket{le=\"+Inf\"} 9\n\
        garbage line\n\
        # EOF\n";

    #[test]
    fn parses_names_labels_values_and_skips_the_rest() {
        let s = parse(BODY);
        assert_eq!(s["booking_created_total"], 42.0);
        assert_eq!(s["course_service_failures_total{kind=\"timeout\"}"], 3.0);
        assert_eq!(
            s["course_service_failures_total{kind=\"no responders\"}"],
            1.0
        );
        assert_eq!(s["outbox_backlog"], 7.0);
        assert_eq!(s["course_service_call_seconds_bucket{le=\"+Inf\"}"], 9.0);
        assert_eq!(s.len(), 5);
    }

    #[tokio::test]
    async fn scrapes_a_metrics_endpoint() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/metrics"))
            .respond_with(ResponseTemplate::new(200).set_body_string(BODY))
            .expect(1)
            .mount(&server)
            .await;
        let sample = Scraper::default()
            .scrape(&format!("{}/metrics", server.uri()))
            .await
            .unwrap();
        assert_eq!(sample["booking_created_total"], 42.0);
    }

    #[tokio::test]
    async fn an_error_status_is_an_error_naming_it() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let err = Scraper::default()
            .scrape(&format!("{}/metrics", server.uri()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("503"), "{err}");
    }

    #[tokio::test]
    async fn a_hanging_endpoint_times_out() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(BODY)
                    .set_delay(Duration::from_secs(5)),
            )
            .mount(&server)
            .await;
        let started = std::time::Instant::now();
        let result = Scraper::new(Duration::from_millis(200))
            .scrape(&format!("{}/metrics", server.uri()))
            .await;
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn sums_across_replicas() {
        let a = parse("x 1\ny 2\n");
        let b = parse("x 3\n");
        let s = sum(&[a, b]);
        assert_eq!((s["x"], s["y"]), (4.0, 2.0));
    }

    /// Two replicas see the same 7 pending rows, one breaker is open and one closed.
    #[test]
    fn shared_gauges_are_not_doubled_and_own_gauges_stay_apart() {
        let a = parse("outbox_backlog 7\ncourse_service_breaker_state 1\n");
        let b = parse("outbox_backlog 6\ncourse_service_breaker_state 0\n");
        let s = sum(&[a, b]);
        assert_eq!(s["outbox_backlog"], 7.0);
        assert_eq!(s["course_service_breaker_state{replica=\"0\"}"], 1.0);
        assert_eq!(s["course_service_breaker_state{replica=\"1\"}"], 0.0);
        assert!(!s.contains_key("course_service_breaker_state"));
    }
}
