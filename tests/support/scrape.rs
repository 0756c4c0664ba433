//! `/metrics` parsed with `prometheus-parse`, looked up by name and labels,
//! instead of searching the text.

use prometheus_parse::{Sample, Scrape, Value};

/// A parsed exposition.
pub struct Metrics {
    scrape: Scrape,
    text: String,
}

/// Parse an exposition (panics, showing it, when it does not parse).
pub fn parse(text: &str) -> Metrics {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = Scrape::parse(lines).unwrap_or_else(|e| panic!("{e}: {text}"));
    Metrics {
        scrape,
        text: text.to_string(),
    }
}

fn scalar(v: &Value) -> Option<f64> {
    match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => Some(*x),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

fn has_labels(s: &Sample, labels: &[(&str, &str)]) -> bool {
    labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))
}

impl Metrics {
    /// The samples of `name` carrying (at least) `labels`.
    pub fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.scrape
            .samples
            .iter()
            .filter(move |s| s.metric == name && has_labels(s, labels))
    }

    /// The value of the one sample of `name` with exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(name, labels)
            .find(|s| s.labels.len() == labels.len())
            .and_then(|s| scalar(&s.value))
    }

    /// Like [`Metrics::get`], panicking (with the exposition) when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in\n{}", self.text))
    }

    /// The sum over every sample of `name` carrying `labels` (0 if none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name, labels)
            .filter_map(|s| scalar(&s.value))
            .sum()
    }

    /// Every sample.
    pub fn all(&self) -> &[Sample] {
        &self.scrape.samples
    }

    /// The text it was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[test]
fn samples_are_found_by_name_and_labels() {
    let m = parse(
        "# TYPE q counter\nq{zone=\"a\",rcode=\"NOERROR\"} 3\nq{zone=\"b\",rcode=\"NOERROR\"} 4\n# TYPE up gauge\nup 1\n",
    );
    assert_eq!(
        m.get("q", &[("zone", "a"), ("rcode", "NOERROR")]),
        Some(3.0)
    );
    assert_eq!(m.get("q", &[("zone", "a")]), None, "exact labels only");
    assert_eq!(m.sum("q", &[("rcode", "NOERROR")]), 7.0);
    assert_eq!(m.value("up", &[]), 1.0);
    assert_eq!(m.sum("absent", &[]), 0.0);
}
