//! Step timings: for each write, the milliseconds from its start until each step of its path
//! was seen; summarised per step as percentiles (the round-trip and app-latency scenarios, and
//! the waterfall chart).

use serde_json::{Value, json};

/// The samples of one step, in milliseconds from the write's start.
#[derive(Debug, Clone)]
pub struct Step {
    pub label: String,
    pub ms: Vec<f64>,
}

impl Step {
    /// The `q`th percentile (0-100, nearest rank); 0 without samples.
    pub fn percentile(&self, q: f64) -> f64 {
        percentile(&self.ms, q)
    }

    pub fn json(&self) -> Value {
        json!({
            "step": self.label, "samples": self.ms.len(),
            "p50_ms": self.percentile(50.0), "p95_ms": self.percentile(95.0),
            "max_ms": self.percentile(100.0),
        })
    }
}

/// The `q`th percentile (0-100, nearest rank) of `values`; 0 when empty.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Steps named `labels` filled from `samples`, each an object of `key → ms` (`keys[i]` is the
/// key of `labels[i]`); a sample without a key adds nothing to that step.
pub fn collect(samples: &[Value], keys_and_labels: &[(&str, &str)]) -> Vec<Step> {
    keys_and_labels
        .iter()
        .map(|(key, label)| Step {
            label: (*label).to_owned(),
            ms: samples.iter().filter_map(|s| s[*key].as_f64()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn steps_from_samples() {
        let samples = vec![json!({"a": 1.0, "b": 4.0}), json!({"a": 3.0})];
        let steps = collect(&samples, &[("a", "step a"), ("b", "step b")]);
        assert_eq!(steps[0].label, "step a");
        assert_eq!(steps[0].ms, vec![1.0, 3.0]);
        assert_eq!(steps[1].ms, vec![4.0]);
    }
}
