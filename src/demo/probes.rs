//! The node-shaped probe sites. Each probe is fired from exactly one non-inlined function so the
//! binary has one site per probe, as Node had.
//!
//! Argument layout (Node ≤ 18, `src/node.d` in the Node sources):
//! `http__server__request(req*, conn*, remote, port, method, url, fd)` and
//! `http__server__response(conn*, remote, port, fd)`; strings are pointers to NUL-terminated
//! C strings that stay alive until the probe returns.

use std::ffi::CStr;

/// Fires `node:http__server__request`. Returns whether a tracer had it enabled.
#[inline(never)]
pub fn http_server_request(
    req: *const u8,
    conn: *const u8,
    remote: &CStr,
    port: u16,
    method: &CStr,
    url: &CStr,
    fd: i32,
) -> bool {
    probe::probe_lazy!(
        node,
        http__server__request,
        req,
        conn,
        remote.as_ptr(),
        port as isize,
        method.as_ptr(),
        url.as_ptr(),
        fd as isize
    )
}

/// Fires `node:http__server__response`.
#[inline(never)]
pub fn http_server_response(conn: *const u8, remote: &CStr, port: u16, fd: i32) -> bool {
    probe::probe_lazy!(
        node,
        http__server__response,
        conn,
        remote.as_ptr(),
        port as isize,
        fd as isize
    )
}

/// Fires `node:net__server__connection` when a client connects.
#[inline(never)]
pub fn net_server_connection(conn: *const u8, remote: &CStr, port: u16, fd: i32) -> bool {
    probe::probe_lazy!(
        node,
        net__server__connection,
        conn,
        remote.as_ptr(),
        port as isize,
        fd as isize
    )
}

/// Fires `node:net__stream__end` when a connection closes.
#[inline(never)]
pub fn net_stream_end(conn: *const u8, remote: &CStr, port: u16, fd: i32) -> bool {
    probe::probe_lazy!(
        node,
        net__stream__end,
        conn,
        remote.as_ptr(),
        port as isize,
        fd as isize
    )
}
