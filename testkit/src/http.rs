//! The one HTTP client of the tests: a blocking HTTP/1.0 request on a loopback address,
//! returning the status, the head and the body.
//!
//! Hand-written rather than `reqwest`: it is called from plain tests and from inside
//! `#[tokio::test]` alike, where reqwest's blocking client panics (it runs a runtime of its
//! own) and its async one needs the caller's; and a test can send exactly the request it means
//! (any method, a body with a wrong method). HTTP/1.0, so that the server sends the body as is,
//! never chunked, and closes the connection: reading to the end is all there is to it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result};

/// How long to wait for the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait for the server to read the request and answer it: a loaded machine may
/// take a while to page through a table.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// The status line and the headers, as sent.
    pub head: String,
    pub body: String,
}

/// `GET path` on `addr` (`host:port`).
pub fn get(addr: &str, path: &str) -> Result<Response> {
    request(addr, "GET", path, &[], "")
}

/// `GET path` on `addr`; `None` if nothing answers (or not with HTTP), for polling a server
/// that is starting.
pub fn try_get(addr: &str, path: &str) -> Option<(u16, String)> {
    get(addr, path).ok().map(|r| (r.status, r.body))
}

/// `method path` on `addr` with extra `headers` and `body` (sent with its `Content-Length`
/// when not empty).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response> {
    let socket: SocketAddr = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&socket, CONNECT_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("sending {method} {path}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("{method} {path}: no end of headers in {response:?}"))?;
    // "HTTP/1.0 200 OK"
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("{method} {path}: no status in {head:?}"))?;
    Ok(Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}
