//! A minimal HTTP server that stands in for Alertmanager's webhook receiver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value as Json;

/// One POST received by [`Receiver`].
#[derive(Clone)]
pub struct Notification {
    pub path: String,
    /// The JSON body, or the raw text as a JSON string if it was not JSON.
    pub body: Json,
}

/// A minimal HTTP server on loopback that answers every request 200 and records POSTs: the
/// Alertmanager webhook receiver.
pub struct Receiver {
    pub address: SocketAddr,
    received: Arc<Mutex<Vec<Notification>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let address = listener.local_addr().expect("receiver address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, stopped) = (Arc::clone(&received), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || {
                    if let Ok(Some(notification)) = serve(stream) {
                        sink.lock().expect("received").push(notification);
                    }
                });
            }
        });
        Receiver {
            address,
            received,
            stop,
        }
    }

    pub fn received(&self) -> Vec<Notification> {
        self.received.lock().expect("received").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.address);
    }
}

/// Reads one request, answers 200, and returns it if it was a POST.
fn serve(stream: TcpStream) -> std::io::Result<Option<Notification>> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    (&stream).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;

    let mut parts = request_line.split_whitespace();
    if parts.next() != Some("POST") {
        return Ok(None);
    }
    let path = parts.next().unwrap_or_default().to_owned();
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Json::String(text));
    Ok(Some(Notification { path, body }))
}
