//! Aggregation of decoded events, shared by the TUI and the headless `latency`/`top` commands:
//! start/done pairing into latency samples, windowed latency histograms, a bounded top-N table,
//! and text formatting. Pure data structures: time is always passed in (event `ts_ns`, i.e.
//! CLOCK_MONOTONIC nanoseconds), never read from a clock, so tests drive them deterministically.

pub mod format;
pub mod histogram;
pub mod pairing;
pub mod session;
pub mod toptable;
pub mod window;

pub use format::{format_duration_ns, render_bars};
pub use histogram::{Bucket, BucketScheme, LatencyStats, Summary};
pub use pairing::{PairLimits, PairStats, Pairer, Sample};
pub use session::{key_text, LatencyAgg, LatencyReport, TopAgg, TopReport};
pub use toptable::{Other, SortBy, TopRow, TopTable};
pub use window::Window;
