//! A fault-injecting TCP proxy on loopback, between a worker (or client) and
//! its server, that a test drives: pass traffic, stall it without a reset (a
//! black hole: what a dead switch or a paused VM looks like), slow it down,
//! or cut every connection with a reset.
//!
//! It runs on a thread and runtime of its own, so a test whose runtime is
//! busy (or blocked) does not stall the proxy, and it forwards bytes as they
//! come: a stalled chunk is held and delivered once traffic passes again, as
//! TCP's retransmissions would after a real black hole.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// Bytes pass as they come.
    Pass,
    /// Nothing passes and nothing is reset: reads wait, connections are
    /// accepted but not joined to the server, until traffic passes again.
    Blackhole,
    /// Every chunk waits this long before it passes.
    Slow(Duration),
}

/// The proxy's state, shared with its thread.
struct State {
    traffic: watch::Sender<Traffic>,
    /// Bumped to cut every live connection (with a reset).
    cuts: watch::Sender<u64>,
    /// Connections accepted so far.
    accepted: AtomicU64,
    /// The connections open now, by number; a cut waits until the ones it
    /// cut are gone.
    open: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// Signalled as each connection ends.
    ended: std::sync::Condvar,
}

/// A connection's place in [`State::open`], given up when it ends (its
/// sockets closed first: declare it before them).
struct Open<'a> {
    state: &'a State,
    id: u64,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if let Ok(mut open) = self.state.open.lock() {
            open.remove(&self.id);
        }
        self.state.ended.notify_all();
    }
}

/// A proxy from a free loopback port to `upstream`; stopped on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("traffic", &*self.state.traffic.borrow())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (a loopback address), passing traffic.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only reaches loopback"
        );
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("proxy: bind: {e}"));
        let addr = std_listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy: address: {e}"));
        std_listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("proxy: nonblocking: {e}"));
        let state = Arc::new(State {
            traffic: watch::channel(Traffic::Pass).0,
            cuts: watch::channel(0).0,
            accepted: AtomicU64::new(0),
            open: Default::default(),
            ended: std::sync::Condvar::new(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("proxy: runtime: {e}"));
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener)
                        .unwrap_or_else(|e| panic!("proxy: listener: {e}"));
                    tokio::select! {
                        _ = accept_loop(listener, upstream, st) => {}
                        _ = rx => {}
                    }
                });
            })
            .unwrap_or_else(|e| panic!("proxy: thread: {e}"));
        FaultProxy {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Where clients connect: `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets what happens to traffic from now on (held chunks pass once it
    /// is [`Traffic::Pass`] again).
    pub fn set(&self, traffic: Traffic) {
        self.state.traffic.send_replace(traffic);
    }

    /// Cuts every live connection with a reset (new ones are accepted as
    /// the traffic setting says), and returns once they are closed (or
    /// after 2 s), so that what a test looks at next is after the cut.
    pub fn cut_all(&self) {
        let open = self.state.open.lock().unwrap_or_else(|e| e.into_inner());
        let cut: Vec<u64> = open.iter().copied().collect();
        self.state.cuts.send_modify(|n| *n += 1);
        let _ = self
            .state
            .ended
            .wait_timeout_while(open, Duration::from_secs(2), |open| {
                cut.iter().any(|id| open.contains(id))
            });
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: Arc<State>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let id = state.accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection(client, id, upstream, state.clone()));
    }
}

/// One client connection: joined to the server once traffic passes, then
/// both directions forwarded until either side closes or a cut comes.
async fn connection(client: TcpStream, id: u64, upstream: SocketAddr, state: Arc<State>) {
    // Counted open and subscribed to cuts in one step: a cut either waits
    // for this connection or came before it.
    let mut cuts = {
        let mut open = state.open.lock().unwrap_or_else(|e| e.into_inner());
        open.insert(id);
        let mut cuts = state.cuts.subscribe();
        cuts.mark_unchanged();
        cuts
    };
    let _open = Open { state: &state, id };
    let mut traffic = state.traffic.subscribe();
    let joined = async {
        // A black hole holds a new connection unjoined.
        let _ = traffic.wait_for(|t| *t != Traffic::Blackhole).await;
        TcpStream::connect(upstream).await
    };
    let server = tokio::select! {
        s = joined => match s {
            Ok(s) => s,
            Err(_) => return reset(client),
        },
        _ = cuts.changed() => return reset(client),
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, state.traffic.subscribe());
    let down = pump(sr, cw, state.traffic.subscribe());
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cuts.changed() => {
            // Dropping the halves closes both sockets; the linger of zero
            // set below makes it a reset, as a dead middlebox's would be.
        }
    }
}

/// Closes `s` with a reset.
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

/// Copies `from` into `to` chunk by chunk, as the traffic setting allows.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut traffic: watch::Receiver<Traffic>,
) {
    let _ = to.as_ref().set_zero_linger();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        loop {
            let now = *traffic.borrow_and_update();
            match now {
                Traffic::Pass => break,
                Traffic::Slow(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Traffic::Blackhole => {
                    if traffic.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
