//! Aggregation of decoded events, shared by the TUI and the headless `latency`/`top` commands:
//! start/done pairing into latency samples, windowed latency histograms, a bounded top-N table,
//! and text formatting. Pure data structures: time is always passed in (event `ts_ns`, i.e.
//! CLOCK_MONOTONIC nanoseconds), never read from a clock, so tests drive them deterministically.

pub mod format;
pub mod histogram;
pub mod key;
pub mod pairing;
pub mod session;
pub mod toptable;
pub mod window;

pub use format::{fit, format_duration_ns, render_bars};
pub use histogram::{Bucket, BucketScheme, LatencyStats, Summary};
pub use key::{arg_label, normalize_key};
pub use pairing::{PairLimits, PairStats, Pairer, Sample};
pub use session::{LatencyAgg, LatencyReport, TopAgg, TopReport};
pub use toptable::{Other, SortBy, TopRow, TopTable};
pub use window::Window;
