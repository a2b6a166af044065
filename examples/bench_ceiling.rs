//! The ceiling for the webhook benchmark: a bare hyper HTTP/1.1 server that reads each request
//! body and answers 202 with an empty body, with no routing, parsing or state.
//!
//! It runs on the same kind of runtime as the exporter (tokio, multi-threaded, one worker per
//! core), so the ratio of the exporter's rate to this one's is the share of the HTTP stack's
//! capacity the exporter keeps.
//!
//! Usage: `bench_ceiling [ADDRESS]` (default `127.0.0.1:9878`). Prints `listening ADDRESS` on
//! standard output once it accepts connections; stops on SIGINT or SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

async fn accept(request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    // Read the body as the exporter does, so both pay for receiving it.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Empty::new());
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(accept))
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9878".into())
        .parse()?;
    let listener = TcpListener::bind(address).await?;
    println!("listening {}", listener.local_addr()?);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        () = serve(listener) => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
