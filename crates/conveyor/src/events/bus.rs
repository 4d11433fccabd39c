//! The bus: subscribers, each with a bounded queue, observers called in
//! place, and emits that never wait.
//!
//! Who listens is one immutable [`Listeners`] snapshot behind an
//! [`ArcSwap`]: an emit reads it without a lock and without writing any
//! shared memory (a read lock would bounce its counter between every
//! emitting thread's cores, twice per event), and a subscribe, an observe
//! or a drop copies the few entries into a new snapshot.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::event::{Event, TaskFact};

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
    listeners: ArcSwap<Listeners>,
    /// Held while a new snapshot is made, so that two changes never
    /// replace each other's.
    changing: Mutex<()>,
    next_observer: AtomicU64,
}

/// Everyone listening at one moment.
#[derive(Clone, Default)]
struct Listeners {
    observers: Vec<(u64, ObserverFn)>,
    counters: Vec<(u64, CounterFn)>,
    subscribers: Vec<Subscriber>,
}

impl Listeners {
    /// True when someone needs the events themselves (not only counters).
    fn want_events(&self) -> bool {
        !self.observers.is_empty() || !self.subscribers.is_empty()
    }
}

/// What an observer runs on every event, in the emitting thread.
type ObserverFn = Arc<dyn Fn(&Event) + Send + Sync>;

/// What a counter runs on every task event, in the emitting thread.
type CounterFn = Arc<dyn Fn(&TaskFact<'_>) + Send + Sync>;

#[derive(Clone)]
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
        let subscriber = Subscriber {
            tx,
            lagged: lagged.clone(),
        };
        self.change(|l| l.subscribers.push(subscriber));
        Subscription { rx, lagged }
    }

    /// Calls `observer` with every event emitted from now on, in the thread
    /// that emits it, before any subscriber gets it: nothing is ever lost,
    /// so it suits counters (metrics), where a [`subscribe`](Self::subscribe)r
    /// that lags would undercount. It must be quick and must not block (a
    /// few atomic additions, not I/O). Dropping the returned [`Observer`]
    /// stops the calls: an emit that starts after the drop never calls it
    /// (one already under way on another thread may still finish its call).
    pub fn observe(&self, observer: impl Fn(&Event) + Send + Sync + 'static) -> Observer {
        let observer: ObserverFn = Arc::new(observer);
        self.register(|l, id| l.observers.push((id, observer)))
    }

    /// Calls `counter` with the [`TaskFact`] of every task event emitted
    /// from now on, in the thread that emits it, like an
    /// [`observe`](Self::observe)r: nothing is ever lost. Where only
    /// counters listen, the events themselves are never built, so counting
    /// costs no allocation and no write to the names' shared counts.
    /// Counters are conveyor's own (the metrics): they may be called while
    /// a runner holds its lock on the task, so they must only count, never
    /// call back into a worker. Dropping the returned [`Observer`] stops
    /// the calls.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))] // the metrics' only
    pub(crate) fn count_tasks(
        &self,
        counter: impl Fn(&TaskFact<'_>) + Send + Sync + 'static,
    ) -> Observer {
        let counter: CounterFn = Arc::new(counter);
        self.register(|l, id| l.counters.push((id, counter)))
    }

    /// Adds a listener with `add` under a new id, removed again when the
    /// returned [`Observer`] is dropped.
    fn register(&self, add: impl FnOnce(&mut Listeners, u64)) -> Observer {
        let id = self.inner.next_observer.fetch_add(1, Ordering::Relaxed);
        self.change(|l| add(l, id));
        Observer {
            bus: self.clone(),
            id,
        }
    }

    /// Replaces the listeners with `edit`'s copy of them.
    fn change(&self, edit: impl FnOnce(&mut Listeners)) {
        let _changing = self.inner.changing.lock();
        let mut listeners = Listeners::clone(&self.inner.listeners.load());
        edit(&mut listeners);
        let n = listeners.observers.len() + listeners.counters.len() + listeners.subscribers.len();
        self.inner.listeners.store(Arc::new(listeners));
        self.inner.listening.store(n, Ordering::Relaxed);
    }

    /// Emits the event `make` builds, if anyone listens; never waits.
    pub fn emit(&self, make: impl FnOnce() -> Event) {
        if !self.is_listened() {
            return;
        }
        let event = make();
        let listeners = self.inner.listeners.load();
        if let Event::Task(task) = &event {
            let fact = task.fact();
            for (_, count) in &listeners.counters {
                count(&fact);
            }
        }
        self.hand_out(&listeners, event);
    }

    /// Emits a task event: its `fact` to the counters, and the event `make`
    /// builds to the observers and subscribers, built only if any listen
    /// (the fact must be the one the event's would be). Never waits.
    pub(crate) fn emit_task(&self, fact: TaskFact<'_>, make: impl FnOnce() -> Event) {
        if let Some(event) = self.count_then_build(fact, make) {
            self.emit_uncounted(event);
        }
    }

    /// Gives `fact` to the counters alone; returns the event `make` builds
    /// when observers or subscribers want it, for the caller to hand them
    /// with [`emit_uncounted`](Self::emit_uncounted) — where the fact's
    /// names are only lent under a lock, and the observers' code (which may
    /// call back into the worker) must run after it is released.
    pub(crate) fn count_then_build(
        &self,
        fact: TaskFact<'_>,
        make: impl FnOnce() -> Event,
    ) -> Option<Event> {
        if !self.is_listened() {
            return None;
        }
        let listeners = self.inner.listeners.load();
        for (_, count) in &listeners.counters {
            count(&fact);
        }
        listeners.want_events().then(make)
    }

    /// Gives an event whose fact the counters have had
    /// ([`count_then_build`](Self::count_then_build)) to the observers and
    /// subscribers.
    pub(crate) fn emit_uncounted(&self, event: Event) {
        let listeners = self.inner.listeners.load();
        self.hand_out(&listeners, event);
    }

    /// Gives `event` to the observers, then to the subscribers.
    fn hand_out(&self, listeners: &Listeners, event: Event) {
        for (_, observe) in &listeners.observers {
            observe(&event);
        }
        let mut gone = false;
        if let Some((last, others)) = listeners.subscribers.split_last() {
            for s in others {
                gone |= offer(s, event.clone());
            }
            // The last subscriber takes the event itself: no clone.
            gone |= offer(last, event);
        }
        if gone {
            self.change(|l| l.subscribers.retain(|s| !s.tx.is_disconnected()));
        }
    }
}

/// Offers `event` to `s` without waiting; true when `s` is gone.
fn offer(s: &Subscriber, event: Event) -> bool {
    match s.tx.try_send(event) {
        Ok(()) => false,
        Err(flume::TrySendError::Full(_)) => {
            s.lagged.fetch_add(1, Ordering::Relaxed);
            false
        }
        Err(flume::TrySendError::Disconnected(_)) => true,
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
        let id = self.id;
        self.bus.change(|l| {
            l.observers.retain(|(o, _)| *o != id);
            l.counters.retain(|(c, _)| *c != id);
        });
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

    /// Observers and subscribers that come and go while other threads
    /// emit: each sees every event emitted between its arrival and its
    /// departure (counted here by emits made strictly inside that window).
    #[test]
    fn listeners_joining_and_leaving_during_emits_see_their_window() {
        let bus = EventBus::new();
        let emitted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let emitters: Vec<_> = (0..2)
            .map(|_| {
                let (bus, emitted, stop) = (bus.clone(), emitted.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        bus.emit(paused);
                        emitted.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for _ in 0..200 {
            let seen = Arc::new(AtomicU64::new(0));
            let s = seen.clone();
            let sub = bus.subscribe(1 << 20);
            let observer = bus.observe(move |_| {
                s.fetch_add(1, Ordering::Relaxed);
            });
            // Emits that completed after both arrived and before either left.
            let from = emitted.load(Ordering::SeqCst);
            let mut to = from;
            while to < from + 50 {
                std::thread::yield_now();
                to = emitted.load(Ordering::SeqCst);
            }
            drop(observer);
            let inside = to.saturating_sub(from + 2);
            assert!(seen.load(Ordering::Relaxed) >= inside);
            // The emitters go on sending to `sub` while it is read: read
            // what its window must hold, no more.
            for got in 0..inside {
                assert!(sub.try_recv().is_some(), "{got} of {inside} events");
            }
            assert_eq!(sub.lagged(), 0);
        }
        stop.store(true, Ordering::Relaxed);
        for e in emitters {
            e.join().unwrap();
        }
        // The last subscriber left after the last emit may still be listed
        // until an emit finds it gone.
        bus.emit(paused);
        assert!(!bus.is_listened());
    }

    /// Counters see the fact of every task event, whether emitted as an
    /// event or as a fact; with only counters listening, no event is built;
    /// with an observer too, it is, once.
    #[test]
    fn counters_see_every_task_fact_and_alone_build_no_event() {
        use crate::events::{TaskEvent, TaskEventKind, TaskFact};
        use conveyor_core::TaskId;

        let bus = EventBus::new();
        let counted = Arc::new(AtomicU64::new(0));
        let c = counted.clone();
        let counter = bus.count_tasks(move |fact| {
            assert_eq!(&**fact.queue, "mail");
            c.fetch_add(1, Ordering::Relaxed);
        });
        let (handler, queue): (Arc<str>, Arc<str>) = (Arc::from("send"), Arc::from("mail"));
        let task = TaskEvent::enqueued(TaskId(7), handler.clone(), queue.clone());
        let fact = TaskFact {
            kind: TaskEventKind::Started,
            handler: &handler,
            queue: &queue,
            outcome: None,
            run_time: None,
            since_ready: None,
        };
        bus.emit_task(fact, || unreachable!("only counters listen"));
        bus.emit(|| Event::Task(task.clone()));
        bus.emit(paused);
        assert_eq!(counted.load(Ordering::Relaxed), 2);
        let built = Arc::new(AtomicU64::new(0));
        let observer = bus.observe(|_| {});
        let b = built.clone();
        bus.emit_task(fact, || {
            b.fetch_add(1, Ordering::Relaxed);
            Event::Task(task.clone())
        });
        assert_eq!(
            (
                counted.load(Ordering::Relaxed),
                built.load(Ordering::Relaxed)
            ),
            (3, 1)
        );
        drop((observer, counter));
        assert!(!bus.is_listened());
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
