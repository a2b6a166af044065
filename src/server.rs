//! The accept loop: connection cap, TLS, header timeout, graceful shutdown.
//!
//! - At most `max_connections` connections are served at once. When all are taken the loop
//!   stops accepting until one ends, as Prometheus's `--web.max-connections` does: further
//!   clients wait in the kernel's backlog. Each time the cap is reached it is counted.
//! - A client must send a request's headers within `header_timeout`, and a kept-alive
//!   connection is closed after sitting idle that long; a client that sends a byte a second
//!   is cut off. The TLS handshake has the same time limit.
//! - On shutdown the loop stops accepting, lets requests in progress finish (at most
//!   [`DRAIN_TIMEOUT`]), and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::app::App;
use crate::client::Peer;
use crate::metrics::Limit;

/// Longest wait for requests in progress at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection limits, from the flags.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Most connections served at once; accepting pauses at the cap (`--web.max-connections`).
    pub max_connections: usize,
    /// Time allowed for a TLS handshake and for each request's headers, and most idle time
    /// of a kept-alive connection (`--web.header-timeout`).
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                app.metrics.limit_hit(Limit::MaxConnections);
                tracing::debug!(max = limits.max_connections, "connection cap reached");
                tokio::select! {
                    permit = Arc::clone(&slots).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(err = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);

        let connection = Connection {
            app: Arc::clone(&app),
            router: router.clone(),
            peer,
            header_timeout: limits.header_timeout,
        };
        let tls = app.web().tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            connection.run(stream, tls, watcher).await;
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("requests still in progress after {DRAIN_TIMEOUT:?}; stopping anyway");
        }
    }
}

struct Connection {
    app: Arc<App>,
    router: Router,
    peer: SocketAddr,
    header_timeout: Duration,
}

impl Connection {
    async fn run(
        self,
        stream: TcpStream,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let Some(tls) = tls else {
            self.serve(TokioIo::new(stream), watcher).await;
            return;
        };
        let handshake = TlsAcceptor::from(tls).accept(stream);
        match tokio::time::timeout(self.header_timeout, handshake).await {
            Ok(Ok(stream)) => self.serve(TokioIo::new(stream), watcher).await,
            Ok(Err(e)) => tracing::debug!(peer = %self.peer, err = %e, "TLS handshake failed"),
            Err(_) => {
                self.app.metrics.limit_hit(Limit::HeaderTimeout);
                tracing::debug!(peer = %self.peer, "TLS handshake timed out");
            }
        }
    }

    async fn serve<I>(self, io: TokioIo<I>, watcher: hyper_util::server::graceful::Watcher)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            app,
            router,
            peer,
            header_timeout,
        } = self;
        let shared = Arc::clone(&app);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(Peer(peer));
            let answer = router.clone().oneshot(request.map(Body::new));
            let app = Arc::clone(&shared);
            async move {
                let mut response = answer.await?;
                add_configured_headers(&app, &mut response);
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true)
            .serve_connection(io, service);

        if let Err(e) = watcher.watch(connection).await {
            if e.is_timeout() {
                app.metrics.limit_hit(Limit::HeaderTimeout);
                tracing::debug!(peer = %peer, "connection closed: headers not received in time");
            } else {
                tracing::debug!(peer = %peer, err = %e, "connection ended with an error");
            }
        }
    }
}

/// Adds the web config's `http_server_config.headers` to a response.
fn add_configured_headers(app: &App, response: &mut axum::response::Response) {
    let web = app.web();
    for (name, value) in &web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
}
