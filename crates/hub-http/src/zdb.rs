//! `zdb_listen`: the hub as a read-only 0-db chunk server, so that ZOS nodes and the
//! reference readers (which only speak the 0-db protocol, `GET <key>` on port 9900) fetch
//! chunks from the hub itself, whatever its store. The protocol, limits and back-pressure
//! are [`flist_store::ZdbEndpoint`]'s; this module wires it to the hub's (metered) store,
//! checks `CHECK` against the chunk's BLAKE2b-16 key, and starts and stops it with the
//! server.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::state::Shared;

/// Length of a chunk key (BLAKE2b-16 of the stored bytes).
const KEY_BYTES: usize = 16;

/// Whether `value` is intact for `key`: a chunk is stored under the BLAKE2b-16 of its bytes;
/// keys of another length are not chunks and are taken as they are.
fn chunk_intact(key: &[u8], value: &[u8]) -> bool {
    key.len() != KEY_BYTES || flist_format::codec::blake2b::<KEY_BYTES>(value) == key
}

/// The endpoint over the hub's store, with its limits from the configuration.
pub fn endpoint(st: &Shared) -> flist_store::ZdbEndpoint {
    let opts = flist_store::ServerOptions {
        max_connections: st.config.zdb_max_connections.max(1),
        check: Some(Arc::new(chunk_intact)),
        revision: concat!("flist-hub ", env!("CARGO_PKG_VERSION"), " (read-only)").into(),
        ..flist_store::ServerOptions::default()
    };
    flist_store::ZdbEndpoint::new(st.store.clone(), opts)
}

/// Serves the endpoint on `listener` in the background until the sender is used (or
/// dropped).
pub fn spawn(
    st: &Shared,
    listener: TcpListener,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let ep = endpoint(st);
    let _ = st.zdb.set(ep.clone());
    if let Ok(a) = listener.local_addr() {
        tracing::info!("0-db endpoint (read-only) listening on {a}");
    }
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    };
    // The endpoint runs on a single-threaded runtime of its own (what 0-db does: one
    // event loop): a node's reader pipelines small `GET`s on one connection, and handing
    // each request between the main runtime's workers cost a quarter of its time. Store
    // reads that block still go to a blocking pool, and the HTTP side keeps its workers.
    let own = listener.into_std().and_then(|l| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("hub-zdb")
            .build()?;
        Ok((l, rt))
    });
    let task = match own {
        Ok((l, rt)) => tokio::task::spawn_blocking(move || {
            rt.block_on(async move {
                match TcpListener::from_std(l) {
                    Ok(listener) => ep.serve(listener, shutdown).await,
                    Err(e) => tracing::error!("0-db endpoint: {e}"),
                }
            })
        }),
        Err(e) => {
            tracing::error!("0-db endpoint: cannot start its runtime: {e}");
            tokio::spawn(async {})
        }
    };
    (tx, task)
}

/// The endpoint's counters as Prometheus text (`hub_zdb_*`), ending in `# EOF`.
pub fn metrics_text(s: &flist_store::EndpointStats) -> String {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use std::sync::atomic::Ordering::Relaxed;
    let mut r = prometheus_client::registry::Registry::with_prefix("hub_zdb");
    let counter = |n: &std::sync::atomic::AtomicU64| {
        let c: Counter = Counter::default();
        c.inc_by(n.load(Relaxed));
        c
    };
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(s.connections.load(Relaxed)).unwrap_or(i64::MAX));
    r.register("connections", "Connections open on the 0-db endpoint", g);
    r.register(
        "connections_accepted",
        "Connections accepted since start",
        counter(&s.connections_total),
    );
    r.register(
        "connections_refused",
        "Connections refused at the connection limit",
        counter(&s.connections_refused),
    );
    r.register("commands", "Commands answered", counter(&s.commands));
    r.register(
        "writes_refused",
        "Write commands refused (the endpoint is read-only)",
        counter(&s.writes_refused),
    );
    r.register(
        "protocol_errors",
        "Connections closed on malformed requests",
        counter(&s.protocol_errors),
    );
    r.register(
        "timeouts",
        "Connections closed on a timeout (idle, unfinished request, stalled reply)",
        counter(&s.timeouts),
    );
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &r) {
        out = format!("# encoding error: {e}\n# EOF\n");
    }
    out
}
