//! The accept loop: hyper's HTTP/1 connection builder, driven by us instead of
//! `axum::serve`, for three things that one lacks.
//!
//! - A header-read timeout. Without a timer hyper never times out a request head, so a
//!   client sending one header byte a second (slowloris) holds a socket for ever. The
//!   timeout also bounds the wait for the next request on a kept-alive connection.
//! - A connection cap. At the cap, the oldest connection that has not yet delivered a
//!   single request is closed to make room: idle or trickling sockets cannot lock out a
//!   real client, and file descriptors stay bounded.
//! - Ownership of connections. `axum::serve` spawns each connection as a detached task, so
//!   stopping the server left running answers generating. Here the connections live in a
//!   `JoinSet` owned by the server task: stopping (or dropping the server) ends them, which
//!   drops their response bodies and with them the answers' streams (cancelling the
//!   generations).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// Limits on connections (the per-request limits are in the router).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// How long a stop waits for answers in flight before ending them.
    pub shutdown_grace: Duration,
}

/// The open connections, oldest first (ids only grow).
#[derive(Default)]
struct Table {
    next_id: u64,
    open: BTreeMap<u64, Conn>,
}

struct Conn {
    /// Set once hyper hands us a request on this connection.
    served: Arc<AtomicBool>,
    close: Arc<Notify>,
}

/// Serves until `stop` turns true, then lets connections finish their answers for
/// `shutdown_grace` and ends the rest.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    // Each connection watches its own receiver; the loop's is borrowed by its select.
    let for_conns = stop.clone();
    let mut conns = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    if let Some(conn) = admit(&table, limits.max_connections) {
                        conns.spawn(connection(
                            tcp,
                            conn,
                            table.clone(),
                            http.clone(),
                            router.clone(),
                            for_conns.clone(),
                        ));
                    }
                }
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: keep
                    // serving, but do not spin on a persistent error.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    // Connections saw `stop` and are finishing their current response.
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = conns.len(),
            "ending the API connections still answering"
        );
        conns.shutdown().await;
    }
}

/// Resolves once the server is told to stop (or its handle is gone). The watch's borrow
/// guard is dropped in here: it must not live across the accept loop's other awaits.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

struct Admitted {
    id: u64,
    served: Arc<AtomicBool>,
    close: Arc<Notify>,
}

/// Registers a new connection, closing the oldest one that has sent no request yet when the
/// table is full; refuses the new one when every open connection is in use.
fn admit(table: &Mutex<Table>, max: usize) -> Option<Admitted> {
    let Ok(mut t) = table.lock() else {
        return None;
    };
    if t.open.len() >= max {
        let idle = t
            .open
            .iter()
            .find(|(_, c)| !c.served.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match idle.and_then(|id| t.open.remove(&id)) {
            Some(evicted) => evicted.close.notify_one(),
            None => {
                tracing::warn!(max, "refusing a connection: every API connection is in use");
                return None;
            }
        }
    }
    let id = t.next_id;
    t.next_id += 1;
    let served = Arc::new(AtomicBool::new(false));
    let close = Arc::new(Notify::new());
    t.open.insert(
        id,
        Conn {
            served: served.clone(),
            close: close.clone(),
        },
    );
    Some(Admitted { id, served, close })
}

async fn connection(
    tcp: TcpStream,
    admitted: Admitted,
    table: Arc<Mutex<Table>>,
    http: http1::Builder,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let Admitted { id, served, close } = admitted;
    let inner = TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        served.store(true, Ordering::Relaxed);
        hyper::service::Service::call(&inner, req)
    });
    let conn = http.serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    // Header timeouts, resets, malformed requests: routine on a server.
                    tracing::debug!(error = %e, "API connection ended");
                }
                break;
            }
            // Evicted to make room: dropping the connection closes the socket.
            _ = close.notified() => break,
            _ = stopped(&mut stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    if let Ok(mut t) = table.lock() {
        t.open.remove(&id);
    }
}
