//! The HTTP server outbound tests call: real, on loopback, counting what
//! reaches it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A small HTTP/1.1 server on loopback: `/hello` answers `hello from
/// <port>`, `/headers` the request's header lines, `/echo` the method and
/// body (`content-length` bodies), `/redirect?to=<url>` a 302 there,
/// `/big?bytes=<n>` n bytes, `/hang` never. Counts the requests it got.
pub(crate) struct Server {
    ip: &'static str,
    pub(crate) port: u16,
    hits: Arc<AtomicUsize>,
}

impl Server {
    pub(crate) async fn start() -> Self {
        Self::start_on("127.0.0.1").await
    }

    /// The server on another loopback address (`127.0.0.2`: all of
    /// 127.0.0.0/8 is loopback on Linux).
    pub(crate) async fn start_on(ip: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let (status, extra, body) = if target == "/echo" {
                        let length = head
                            .lines()
                            .find_map(|line| {
                                let (name, value) = line.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        let mut body = vec![0; length];
                        if stream.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let method = head.split(' ').next().unwrap_or_default();
                        let body = String::from_utf8_lossy(&body);
                        ("200 OK", String::new(), format!("{method} {body}"))
                    } else if target == "/hello" {
                        ("200 OK", String::new(), format!("hello from {port}"))
                    } else if target == "/headers" {
                        // The request's header lines, as received.
                        let lines: Vec<&str> =
                            head.lines().skip(1).filter(|l| !l.is_empty()).collect();
                        ("200 OK", String::new(), lines.join("\n").to_lowercase())
                    } else if let Some(to) = target.strip_prefix("/redirect?to=") {
                        ("302 Found", format!("location: {to}\r\n"), String::new())
                    } else if let Some(n) = target.strip_prefix("/big?bytes=") {
                        ("200 OK", String::new(), "x".repeat(n.parse().unwrap()))
                    } else if target == "/hang" {
                        tokio::time::sleep(Duration::from_secs(300)).await;
                        return;
                    } else {
                        ("404 Not Found", String::new(), String::new())
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        Self { ip, port, hits }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
