//! The HTTP side of `usdtop export`: `/metrics` (OpenMetrics text, or the protobuf exposition
//! with native histograms when the scraper prefers it) and `/healthz`, from a thread of its own so
//! a slow scraper never holds up the session loop. A minimal HTTP/1.1 responder: one request per
//! connection.

use super::export_metrics::{exposition, exposition_protobuf, Shared};
use anyhow::Result;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Serves `shared` on `listener` until the process ends.
pub fn serve(listener: std::net::TcpListener, shared: Shared) -> Result<()> {
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
                        tokio::time::sleep(Duration::from_millis(100)).await;
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
    if tokio::time::timeout(Duration::from_secs(10), read_head)
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
    conn.write_all(&body).await?;
    conn.shutdown().await
}

/// Status, content type and body for a request head.
fn respond(head: &str, shared: &Shared) -> (&'static str, &'static str, Vec<u8>) {
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let accept = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .map_or("", |(_, v)| v.trim());
    match (method, path) {
        ("GET", "/metrics") if wants_protobuf(accept) => {
            ("200 OK", PROTOBUF, exposition_protobuf(shared))
        }
        ("GET", "/metrics") => ("200 OK", OPENMETRICS, exposition(shared).into_bytes()),
        ("GET", "/healthz") => ("200 OK", "text/plain", b"ok\n".to_vec()),
        ("GET", _) => ("404 Not Found", "text/plain", b"try /metrics\n".to_vec()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n".to_vec(),
        ),
    }
}

/// Whether an Accept header ranks Prometheus's delimited protobuf at least as high as any text
/// format (what Prometheus sends with native histograms enabled).
fn wants_protobuf(accept: &str) -> bool {
    let mut protobuf: Option<f64> = None;
    let mut text: Option<f64> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let (mut q, mut proto, mut delimited) = (1.0, false, false);
        for param in parts {
            let Some((k, v)) = param.split_once('=') else {
                continue;
            };
            match (k.trim(), v.trim().trim_matches('"')) {
                ("q", v) => q = v.parse().unwrap_or(0.0),
                ("proto", v) => proto = v == "io.prometheus.client.MetricFamily",
                ("encoding", v) => delimited = v == "delimited",
                _ => {}
            }
        }
        let best = match media.as_str() {
            "application/vnd.google.protobuf" if proto && delimited => &mut protobuf,
            "application/openmetrics-text" | "text/plain" | "text/*" | "*/*" => &mut text,
            _ => continue,
        };
        *best = Some(best.map_or(q, |b: f64| b.max(q)));
    }
    protobuf.is_some_and(|p| p > 0.0 && text.is_none_or(|t| p >= t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_with_native_histograms_gets_protobuf_and_without_gets_text() {
        // What Prometheus 2.42 sends with --enable-feature=native-histograms, and without.
        let native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                      encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,\
                      application/openmetrics-text;version=0.0.1;q=0.75,\
                      text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let classic = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                       version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_protobuf(native));
        assert!(!wants_protobuf(classic));
        assert!(!wants_protobuf(""));
        assert!(!wants_protobuf("application/vnd.google.protobuf;q=0.9"));
        assert!(!wants_protobuf(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
             encoding=text;q=0.9"
        ));
    }

    #[test]
    fn metrics_are_answered_in_the_format_asked_for() {
        let shared = Shared::default();
        let head = |accept: &str| format!("GET /metrics HTTP/1.1\r\nAccept: {accept}\r\n\r\n");
        let pb = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                  encoding=delimited";
        assert_eq!(respond(&head(pb), &shared).1, PROTOBUF);
        assert_eq!(respond(&head("text/plain"), &shared).1, OPENMETRICS);
        assert_eq!(
            respond("GET /healthz HTTP/1.0\r\n\r\n", &shared).0,
            "200 OK"
        );
        assert_eq!(
            respond("POST /metrics HTTP/1.0\r\n\r\n", &shared).0,
            "405 Method Not Allowed"
        );
    }
}
