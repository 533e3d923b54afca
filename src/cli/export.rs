//! `usdtop export --listen ADDR`: a long-running session whose figures, always aggregated in
//! the kernel, are served to Prometheus over HTTP (`/metrics`, `/healthz`).

use super::export_metrics::{exposition, Edges, Figures, Histogram, KeyBound, Shared};
use super::headless;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::probes::kernel::ktoplat::{bucket_range, BUCKETS};
use usdtop::probes::tracing::engine::Stats;
use usdtop::session::{plan_top, AggMode, Ask, Place, Step, TopAsk, TopKernel, TopPlan, TopTotals};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  usdtop export --listen 127.0.0.1:9464 --latency php:request__startup --by uri
  usdtop export --listen :9464 --latency /srv/app:app:req__start --done app:req__done --by arg1
  usdtop export --listen 127.0.0.1:9464 --count /usr/bin/python3.11:python:function__entry --by arg1")]
pub struct ExportArgs {
    /// Where to serve /metrics and /healthz: `HOST:PORT` (port 0: any free port, said on stderr).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Only this process (and the processes it forks); without it every process running the
    /// probe's file, including those started later.
    #[arg(short, long)]
    pub pid: Option<u32>,
    /// Count the hits of this probe by the --by key.
    #[arg(long, conflicts_with = "latency", required_unless_present = "latency")]
    pub count: Option<String>,
    /// Measure latency from this start probe to its done (the catalog's, or --done).
    #[arg(long)]
    pub latency: Option<String>,
    /// The done probe of a --latency pair the catalog does not know.
    #[arg(long, requires = "latency")]
    pub done: Option<String>,
    /// Pair a start with its done by an argument instead of by thread (as `top --key`).
    #[arg(long, requires = "latency")]
    pub key: Option<String>,
    /// The argument to split by: `argN` or a catalog argument name (default: the catalog
    /// pair's label, else the probe's first string argument).
    #[arg(long)]
    pub by: Option<String>,
    /// Group keys by shape as `top --fold` does. Refused for now: folding cannot run in the
    /// kernel, and an exporter never streams every event.
    #[arg(long)]
    pub fold: bool,
    /// Most keys per pair served as their own series; the rest are summed as key="other".
    #[arg(long, default_value_t = 100, value_parser = super::numbers::at_least_one::<usize>)]
    pub max_keys: usize,
    /// Say which files a PATH glob matched.
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(args: ExportArgs) -> Result<u8> {
    let catalog = Catalog::builtin();
    let (start, no_pair) = match (&args.count, &args.latency) {
        (Some(p), None) => (p.as_str(), true),
        (None, Some(p)) => (p.as_str(), false),
        _ => bail!("give one --count PROBE or one --latency START"),
    };
    if args.fold {
        // Folding is done in user space on every event; the kernel keeps raw strings (at most
        // 2048 keys with a pair) and an exporter never streams.
        bail!(
            "--fold cannot run in the kernel (the kernel keys by the raw string) and export \
             never streams every event; use `usdtop top --fold` for a look, or --by an \
             argument with few distinct values"
        );
    }
    let ask = TopAsk {
        ask: Ask {
            start,
            done: args.done.as_deref(),
            key: args.key.as_deref(),
            by: args.by.as_deref(),
            // An exporter runs for weeks: never stream every event.
            mode: AggMode::Kernel,
        },
        no_pair,
        fold: false,
    };
    let place = Place {
        pid: args.pid,
        verbose: args.verbose,
    };
    let TopPlan {
        name, pair, plan, ..
    } = plan_top(&ask, place, &catalog, headless::notice)?;
    // Bound before attaching: a port in use is said at once.
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let how = headless::How {
        pid: args.pid,
        queue_mb: 64,
        exact_forks: false,
        verbose: args.verbose,
        duty: None,
    };
    let mut session = headless::attach_plan(&plan, &how)?;
    let (start_ids, done_ids) = session.ids.split_at(plan.n_start);
    let kernel = TopKernel::new(
        &mut session.engine,
        pair.as_ref(),
        start_ids.to_vec(),
        done_ids.to_vec(),
    )?;
    let shared = Shared::default();
    serve(listener, shared.clone())?;
    eprintln!(
        "Tracing {name} ({} sites), serving http://{addr}/metrics ... SIGTERM or Ctrl-C ends.",
        session.sites
    );
    let mut bound = KeyBound::new(args.max_keys);
    let mut edges = Edges::default();
    let sites = session.sites as u64;
    let mut publish = |stats: &Stats| {
        let figures = read(&kernel, &name, (&mut bound, &mut edges), stats, sites);
        *shared.0.lock().unwrap_or_else(|e| e.into_inner()) = figures;
    };
    headless::run(&mut session, None, Some(1.0), args.verbose, |step| {
        if let Step::Report { stats, .. } = step {
            publish(stats);
        }
        Ok(())
    })?;
    // A service manager's SIGTERM is the normal end of an exporter.
    Ok(0)
}

/// The figures now: hits of every attached probe, and the kernel's per-key figures bounded.
fn read(
    kernel: &TopKernel,
    pair: &str,
    (bound, edges): (&mut KeyBound, &mut Edges),
    stats: &Stats,
    sites: u64,
) -> Figures {
    let mut f = Figures {
        ring_drops: stats.drops,
        attached_sites: sites,
        ..Figures::default()
    };
    for p in &stats.probes {
        *f.hits
            .entry((
                p.probe.path.clone(),
                p.probe.provider.clone(),
                p.probe.name.clone(),
            ))
            .or_default() += p.hits;
    }
    let overflow = match kernel.totals() {
        TopTotals::Counts(c) => c.overflow,
        TopTotals::Latency(l) => {
            for k in l.keys.values() {
                edges.note(&k.buckets);
            }
            let keys = l
                .keys
                .into_iter()
                .map(|(key, k)| {
                    let h = Histogram {
                        count: k.count,
                        sum_s: k.sum_ns as f64 / 1e9,
                        buckets: edges.served(&k.buckets, upper_edge_s),
                    };
                    (key, h)
                })
                .collect();
            for (key, h) in bound.bound(keys) {
                f.latency.insert((pair.to_string(), key), h);
            }
            l.overflow
        }
    };
    f.keys_overflow.insert(pair.to_string(), overflow);
    f
}

/// The upper edge of a kernel bucket in seconds; the last one is open above.
fn upper_edge_s(i: usize) -> f64 {
    if i + 1 >= BUCKETS {
        f64::INFINITY
    } else {
        bucket_range(i).1 as f64 / 1e9
    }
}

/// Serves /metrics and /healthz from a thread of its own, so a slow scraper never holds up
/// the session loop. A minimal HTTP/1.1 responder: one request per connection.
fn serve(listener: std::net::TcpListener, shared: Shared) -> Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("export-http".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return eprintln!("usdtop: serving metrics: {e}"),
                };
                loop {
                    let Ok((conn, _)) = listener.accept().await else {
                        // Out of file descriptors, say: wait rather than spin until it passes.
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    };
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let _ = answer(conn, &shared).await;
                    });
                }
            })
        })?;
    Ok(())
}

/// Reads one request head (at most 8 KiB, 10 s) and answers it.
async fn answer(mut conn: tokio::net::TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    if tokio::time::timeout(std::time::Duration::from_secs(10), read_head)
        .await
        .is_err()
    {
        return Ok(());
    }
    let (status, kind, body) = respond(&String::from_utf8_lossy(&head), shared);
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(reply.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}

/// Status, content type and body for a request head.
fn respond(head: &str, shared: &Shared) -> (&'static str, &'static str, String) {
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            exposition(shared),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".into()),
        ("GET", _) => ("404 Not Found", "text/plain", "try /metrics\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    }
}
