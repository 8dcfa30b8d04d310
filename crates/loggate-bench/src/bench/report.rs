//! Latency percentiles and the printed table.

use std::time::Duration;

/// Percentiles of per-call latency.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
}

impl Latency {
    /// Nearest-rank percentiles; `None` when there is no sample.
    pub fn of(mut samples: Vec<Duration>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        Some(Latency {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
        })
    }
}

/// One row of the table.
pub struct Row {
    pub label: String,
    pub records_per_second: Option<f64>,
    pub latency: Option<Latency>,
}

pub fn print_table(rows: &[Row]) {
    // As wide as the longest label (a comparison's are long), at least 34.
    let width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .fold(34, usize::max);
    println!(
        "{:<width$} {:>12} {:>9} {:>9} {:>9}",
        "", "records/s", "p50 ms", "p99 ms", "p999 ms"
    );
    for row in rows {
        let rate = row
            .records_per_second
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"));
        let ms = |d: Option<Duration>| {
            d.map_or_else(
                || "-".to_owned(),
                |d| format!("{:.3}", d.as_secs_f64() * 1e3),
            )
        };
        println!(
            "{:<width$} {:>12} {:>9} {:>9} {:>9}",
            row.label,
            rate,
            ms(row.latency.map(|l| l.p50)),
            ms(row.latency.map(|l| l.p99)),
            ms(row.latency.map(|l| l.p999)),
        );
    }
}

pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        let latency = Latency::of(samples).expect("samples");
        assert_eq!(latency.p50, Duration::from_micros(500));
        assert_eq!(latency.p99, Duration::from_micros(990));
        assert_eq!(latency.p999, Duration::from_micros(999));
        assert!(Latency::of(Vec::new()).is_none());
        let one = Latency::of(vec![Duration::from_millis(3)]).expect("one");
        assert_eq!(one.p999, Duration::from_millis(3));
    }
}
