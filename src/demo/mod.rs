//! The built-in demo workload: a small HTTP/1.1 server that fires provider `node` USDT probes
//! with Node.js's exact argument layout (Node removed its probes in v19, so this stands in for a
//! node built `--with-dtrace`), plus a load generator with fast and slow paths.
//!
//! It needs nothing installed, so `usdtop --demo` and the tests always have a real workload to
//! trace. The probes are real `.note.stapsdt` entries in the usdtop binary, guarded by semaphores
//! like Node's own (`NODE_HTTP_SERVER_REQUEST_ENABLED()`).

mod load;
mod probes;
mod server;

pub use load::{LoadConfig, LoadGenerator, Mix};
pub use server::{DemoServer, ServerStats};

use std::io;

/// Everything the demo runs: the server and, optionally, its load generator.
pub struct Demo {
    pub server: DemoServer,
    pub load: Option<LoadGenerator>,
}

impl Demo {
    /// Starts the server on `127.0.0.1:port` (0 = any free port) and, when `load` is given,
    /// the load generator against it.
    pub fn start(port: u16, load: Option<LoadConfig>) -> io::Result<Demo> {
        let server = DemoServer::start(port)?;
        let load = load.map(|cfg| LoadGenerator::start(server.addr(), cfg));
        Ok(Demo { server, load })
    }
}
