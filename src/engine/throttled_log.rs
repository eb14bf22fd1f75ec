//! Log lines about something that may happen on every call, at most one per interval.

use std::time::{Duration, Instant};

/// Counts the times something happened and lets one log line about it through per interval.
#[derive(Default)]
pub(super) struct ThrottledLog {
    last_report: Option<Instant>,
    unreported: u64,
}

impl ThrottledLog {
    /// It happened once more: `None` when the last line is more recent than `interval`, else
    /// the end of the line to log now: empty, or how many times (`what`) went unlogged.
    pub(super) fn happened(&mut self, interval: Duration, what: &str) -> Option<String> {
        if self.last_report.is_some_and(|at| at.elapsed() < interval) {
            self.unreported += 1;
            return None;
        }
        let more = match self.unreported {
            0 => String::new(),
            n => format!(" ({n} more {what} since the last report)"),
        };
        self.last_report = Some(Instant::now());
        self.unreported = 0;
        Some(more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_others() {
        let mut log = ThrottledLog::default();
        assert_eq!(
            log.happened(Duration::from_secs(60), "errors"),
            Some(String::new())
        );
        assert_eq!(log.happened(Duration::from_secs(60), "errors"), None);
        assert_eq!(log.happened(Duration::from_secs(60), "errors"), None);
        assert_eq!(
            log.happened(Duration::ZERO, "errors"),
            Some(" (2 more errors since the last report)".to_string())
        );
        assert_eq!(log.happened(Duration::ZERO, "errors"), Some(String::new()));
    }
}
