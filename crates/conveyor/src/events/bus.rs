//! The bus: subscribers, each with a bounded queue, observers called in
//! place, and emits that never wait.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::event::Event;

/// Fans events out to its subscribers. Cheap to clone (all clones share the
/// subscribers).
#[derive(Clone, Default)]
pub struct EventBus {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Live subscribers and observers: checked before anything else, so an
    /// emit with nobody listening costs one load.
    listening: AtomicUsize,
    subscribers: RwLock<Vec<Subscriber>>,
    observers: RwLock<Vec<(u64, ObserverFn)>>,
    next_observer: AtomicU64,
}

/// What an observer runs on every event, in the emitting thread.
type ObserverFn = Box<dyn Fn(&Event) + Send + Sync>;

struct Subscriber {
    tx: flume::Sender<Event>,
    lagged: Arc<AtomicU64>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.inner.listening.load(Ordering::Relaxed))
            .finish()
    }
}

impl EventBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// True while someone listens.
    pub fn is_listened(&self) -> bool {
        self.inner.listening.load(Ordering::Relaxed) != 0
    }

    /// A new subscriber that holds at most `capacity` events it has not read;
    /// it receives every event emitted from now on that fits. Dropping it
    /// unsubscribes.
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        let (tx, rx) = flume::bounded(capacity.max(1));
        let lagged = Arc::new(AtomicU64::new(0));
        let mut subs = self.inner.subscribers.write();
        subs.push(Subscriber {
            tx,
            lagged: lagged.clone(),
        });
        drop(subs);
        self.recount();
        Subscription { rx, lagged }
    }

    /// Calls `observer` with every event emitted from now on, in the thread
    /// that emits it, before any subscriber gets it: nothing is ever lost,
    /// so it suits counters (metrics), where a [`subscribe`](Self::subscribe)r
    /// that lags would undercount. It must be quick and must not block (a
    /// few atomic additions, not I/O). Dropping the returned [`Observer`]
    /// stops the calls.
    pub fn observe(&self, observer: impl Fn(&Event) + Send + Sync + 'static) -> Observer {
        let id = self.inner.next_observer.fetch_add(1, Ordering::Relaxed);
        self.inner.observers.write().push((id, Box::new(observer)));
        self.recount();
        Observer {
            bus: self.clone(),
            id,
        }
    }

    fn recount(&self) {
        let n = self.inner.subscribers.read().len() + self.inner.observers.read().len();
        self.inner.listening.store(n, Ordering::Relaxed);
    }

    /// Emits the event `make` builds, if anyone listens; never waits.
    pub fn emit(&self, make: impl FnOnce() -> Event) {
        if !self.is_listened() {
            return;
        }
        let event = make();
        for (_, observe) in self.inner.observers.read().iter() {
            observe(&event);
        }
        let mut gone = false;
        {
            let subs = self.inner.subscribers.read();
            for s in subs.iter() {
                match s.tx.try_send(event.clone()) {
                    Ok(()) => {}
                    Err(flume::TrySendError::Full(_)) => {
                        s.lagged.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(flume::TrySendError::Disconnected(_)) => gone = true,
                }
            }
        }
        if gone {
            self.inner
                .subscribers
                .write()
                .retain(|s| !s.tx.is_disconnected());
            self.recount();
        }
    }
}

/// An observer's registration on an [`EventBus`]; dropping it stops the calls.
pub struct Observer {
    bus: EventBus,
    id: u64,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").field("id", &self.id).finish()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.bus
            .inner
            .observers
            .write()
            .retain(|(id, _)| *id != self.id);
        self.bus.recount();
    }
}

/// One subscriber's end of an [`EventBus`].
#[derive(Debug)]
pub struct Subscription {
    rx: flume::Receiver<Event>,
    lagged: Arc<AtomicU64>,
}

impl Subscription {
    /// The next event, waiting for one; `None` once every bus is gone.
    pub async fn recv(&self) -> Option<Event> {
        self.rx.recv_async().await.ok()
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// The next event, blocking the thread (not for async code).
    pub fn recv_blocking(&self) -> Option<Event> {
        self.rx.recv().ok()
    }

    /// Events this subscriber missed because its queue was full.
    pub fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, SourceEvent};
    use std::time::SystemTime;

    fn paused() -> Event {
        Event::Source(SourceEvent::Paused {
            at: SystemTime::now(),
        })
    }

    #[test]
    fn nobody_listening_builds_nothing() {
        let bus = EventBus::new();
        bus.emit(|| unreachable!("no subscriber: the event is never built"));
    }

    #[test]
    fn observers_see_every_event_until_dropped() {
        let bus = EventBus::new();
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let observer = bus.observe(move |_| {
            s.fetch_add(1, Ordering::Relaxed);
        });
        let slow = bus.subscribe(1);
        for _ in 0..5 {
            bus.emit(paused);
        }
        assert_eq!((seen.load(Ordering::Relaxed), slow.lagged()), (5, 4));
        drop(slow);
        bus.emit(paused);
        assert_eq!(seen.load(Ordering::Relaxed), 6);
        drop(observer);
        assert!(!bus.is_listened());
        bus.emit(|| unreachable!("nobody listens any more"));
    }

    #[test]
    fn slow_subscribers_lag_and_dropped_ones_leave() {
        let bus = EventBus::new();
        let fast = bus.subscribe(10);
        let slow = bus.subscribe(1);
        for _ in 0..3 {
            bus.emit(paused);
        }
        assert_eq!((fast.lagged(), slow.lagged()), (0, 2));
        assert!(fast.try_recv().is_some() && slow.try_recv().is_some());
        drop(slow);
        bus.emit(paused);
        assert!(bus.is_listened());
        drop(fast);
        bus.emit(paused);
        assert!(!bus.is_listened());
    }
}
