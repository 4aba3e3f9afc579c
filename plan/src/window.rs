//! Event-time windows: which windows a timestamp falls in, and when a window
//! is closed by the watermark.

use weir_proto::pb;

/// A tumbling (`slide == size`) or sliding event-time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window length (ms).
    pub size_ms: i64,
    /// Distance between window starts (ms); divides `size_ms`.
    pub slide_ms: i64,
    /// How far behind the largest event time the watermark trails (ms).
    pub watermark_ms: i64,
}

impl WindowSpec {
    /// From a validated spec step.
    pub fn from_step(w: &pb::WindowStep) -> Self {
        WindowSpec {
            size_ms: w.size_ms.max(1) as i64,
            slide_ms: w.slide_ms.max(1) as i64,
            watermark_ms: w.watermark_ms as i64,
        }
    }

    /// Start of the latest window containing `ts`.
    pub fn last_start(&self, ts: i64) -> i64 {
        ts.div_euclid(self.slide_ms) * self.slide_ms
    }

    /// Starts of every window containing `ts` whose end is after `watermark`
    /// (windows ending at or before the watermark are closed), newest first.
    pub fn open_windows(&self, ts: i64, watermark: i64) -> impl Iterator<Item = i64> + '_ {
        let last = self.last_start(ts);
        let count = self.size_ms / self.slide_ms;
        (0..count)
            .map(move |i| last - i * self.slide_ms)
            .take_while(move |start| start + self.size_ms > watermark)
    }

    /// Whether a window starting at `start` is closed at `watermark`.
    pub fn is_closed(&self, start: i64, watermark: i64) -> bool {
        start.saturating_add(self.size_ms) <= watermark
    }

    /// The watermark after seeing events up to `max_event_time`.
    pub fn advance(&self, previous: i64, max_event_time: i64) -> i64 {
        if max_event_time == i64::MIN {
            previous
        } else {
            previous.max(max_event_time.saturating_sub(self.watermark_ms))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLIDING: WindowSpec = WindowSpec {
        size_ms: 10_000,
        slide_ms: 5_000,
        watermark_ms: 10_000,
    };

    #[test]
    fn sliding_windows_contain_each_timestamp_twice() {
        let w: Vec<i64> = SLIDING.open_windows(12_000, i64::MIN).collect();
        assert_eq!(w, vec![10_000, 5_000]);
        let w: Vec<i64> = SLIDING.open_windows(-1, i64::MIN).collect();
        assert_eq!(w, vec![-5_000, -10_000]);
    }

    #[test]
    fn closed_windows_are_skipped() {
        // window [5s,15s) closes at watermark 15s
        let w: Vec<i64> = SLIDING.open_windows(12_000, 15_000).collect();
        assert_eq!(w, vec![10_000]);
        assert!(SLIDING.open_windows(12_000, 20_000).next().is_none());
        assert!(SLIDING.is_closed(5_000, 15_000));
        assert!(!SLIDING.is_closed(5_000, 14_999));
    }

    #[test]
    fn tumbling_and_watermark_advance() {
        let t = WindowSpec {
            size_ms: 1_000,
            slide_ms: 1_000,
            watermark_ms: 500,
        };
        assert_eq!(
            t.open_windows(2_500, i64::MIN).collect::<Vec<_>>(),
            vec![2_000]
        );
        assert_eq!(t.advance(i64::MIN, 3_000), 2_500);
        assert_eq!(t.advance(2_500, 1_000), 2_500);
        assert_eq!(t.advance(2_500, i64::MIN), 2_500);
    }
}
