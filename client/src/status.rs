//! Progress of a running job: one live line on a terminal, log lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::Instant;
use weir_driver::BatchReport;

/// Reports committed batches.
pub struct StatusLine {
    tty: bool,
    last: Option<(Instant, u64)>,
    drawn: bool,
}

impl Default for StatusLine {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusLine {
    /// A reporter for stderr.
    pub fn new() -> Self {
        StatusLine {
            tty: std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    /// Reports one committed batch.
    pub fn batch(&mut self, r: &BatchReport) {
        let c = &r.commit;
        let totals = c.totals.unwrap_or_default();
        let now = Instant::now();
        let rate = match self.last {
            Some((at, records)) if now > at => {
                (totals.records_in - records) as f64 / now.duration_since(at).as_secs_f64()
            }
            _ => c.records_in as f64 / r.duration.as_secs_f64().max(1e-3),
        };
        self.last = Some((now, totals.records_in));
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2Kbatch {:>6} | {:>12.0} records/s | batch {:>6} ms | delay {:>5} ms | in {} out {} skipped {} late {} lost {}",
                c.batch_id,
                rate,
                r.duration.as_millis(),
                r.scheduling_delay.as_millis(),
                totals.records_in,
                totals.records_out,
                totals.records_skipped,
                totals.records_late,
                totals.records_lost,
            );
            let _ = err.flush();
            self.drawn = true;
        } else {
            tracing::info!(
                batch_id = c.batch_id,
                records_in = c.records_in,
                records_out = c.records_out,
                records_per_s = rate.round(),
                batch_ms = r.duration.as_millis() as u64,
                delay_ms = r.scheduling_delay.as_millis() as u64,
                skipped = c.records_skipped,
                late = c.records_late,
                lost = c.records_lost,
                "batch committed"
            );
        }
    }

    /// Ends the live line.
    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}
