//! One connection to RabbitMQ and what lives on it: a publishing channel in
//! confirm mode, a channel for declarations, and which queues this connection
//! has declared already.
//!
//! conveyor does its own reconnecting (the backend opens a new `Link` when the
//! old one is dead) rather than the client's automatic recovery: a new link
//! has a new generation, every delivery tag of the old one is void, and that
//! is exactly the fencing a broker gives for free.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use conveyor_core::Error;
use lapin::options::{
    ConfirmSelectOptions, ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::answer::{answer, no_answer, Health, ANSWER_WITHIN};
use crate::delay::{self, LEVELS};
use crate::names::{self, Names};
use crate::topology;

/// A live connection and its shared channels.
pub(crate) struct Link {
    pub(crate) generation: u64,
    /// Broken once a request on it went unanswered (see `answer`).
    pub(crate) health: Arc<Health>,
    connection: Connection,
    /// Confirm mode: a publish returns once the broker has the message.
    pub(crate) publisher: Channel,
    /// Declarations and deletions (a refused one closes it; it is reopened).
    admin: tokio::sync::Mutex<Channel>,
    /// Conveyor queues whose work and dead queues this link declared.
    declared: Mutex<HashSet<String>>,
    /// What the backend anchored already, on any of its links (see
    /// [`anchor`]): once is enough, a reconnect need not do it again.
    anchored: Arc<Mutex<HashSet<String>>>,
    ladder: tokio::sync::OnceCell<()>,
}

/// The key of the delay ladder in `anchored`.
const LADDER: &str = "";

impl Link {
    /// Connects to `url` (an `amqp://` URL the client understands).
    pub(crate) async fn open(
        url: &str,
        generation: u64,
        anchored: Arc<Mutex<HashSet<String>>>,
    ) -> Result<Link, Error> {
        // Connecting, with the two channels, is one bounded step: a broker
        // that accepts the connection but never answers is unavailable.
        match tokio::time::timeout(ANSWER_WITHIN, Link::connect(url, generation, anchored)).await {
            Ok(link) => link,
            Err(_) => Err(no_answer("connect")),
        }
    }

    async fn connect(
        url: &str,
        generation: u64,
        anchored: Arc<Mutex<HashSet<String>>>,
    ) -> Result<Link, Error> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("conveyor {}", std::process::id()).into());
        let health = Arc::new(Health::default());
        let connection = answer(&health, "connect", Connection::connect(url, props)).await?;
        let publisher = channel(&health, &connection).await?;
        answer(
            &health,
            "confirm.select",
            publisher.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        let admin = channel(&health, &connection).await?;
        Ok(Link {
            generation,
            health,
            connection,
            publisher,
            admin: tokio::sync::Mutex::new(admin),
            declared: Mutex::new(HashSet::new()),
            anchored,
            ladder: tokio::sync::OnceCell::new(),
        })
    }

    /// True while the connection and its publishing channel work and
    /// every request on it was answered in time.
    pub(crate) fn alive(&self) -> bool {
        !self.health.broken()
            && self.connection.status().connected()
            && self.publisher.status().connected()
    }

    /// A new channel on this connection.
    pub(crate) async fn channel(&self) -> Result<Channel, Error> {
        channel(&self.health, &self.connection).await
    }

    /// The declaration channel, reopened if the broker closed it.
    pub(crate) async fn admin(&self) -> Result<tokio::sync::MutexGuard<'_, Channel>, Error> {
        let mut admin = self.admin.lock().await;
        if !admin.status().connected() {
            *admin = self.channel().await?;
        }
        Ok(admin)
    }

    /// Declares `queue`'s work and dead queues once per link.
    pub(crate) async fn ensure_queue(
        &self,
        names: &Names,
        queue: &str,
        delivery_limit: u32,
    ) -> Result<(), Error> {
        if self.is_declared(queue) {
            return Ok(());
        }
        Names::check_queue(queue)?;
        let admin = self.admin().await?;
        let (work, dead) = (names.work(queue), names.dead(queue));
        let h = &self.health;
        declare(h, &admin, &dead, topology::dead_queue()).await?;
        declare(
            h,
            &admin,
            &work,
            topology::work_queue(&dead, delivery_limit),
        )
        .await?;
        if self.ladder.initialized() {
            bind_deliver(h, &admin, names, queue).await?;
        }
        self.anchor_once(h, &admin, names, queue).await?;
        drop(admin);
        self.declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(queue.to_string());
        Ok(())
    }

    /// [`anchor`]s after the declaration of `key`'s queues, unless this
    /// backend did already (on this link or an earlier one).
    async fn anchor_once(
        &self,
        health: &Health,
        admin: &Channel,
        names: &Names,
        key: &str,
    ) -> Result<(), Error> {
        let done =
            |s: &Mutex<HashSet<String>>| s.lock().unwrap_or_else(|p| p.into_inner()).contains(key);
        if done(&self.anchored) {
            return Ok(());
        }
        anchor(health, admin, names).await?;
        self.anchored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string());
        Ok(())
    }

    fn is_declared(&self, queue: &str) -> bool {
        self.declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(queue)
    }

    /// Declares the delay ladder once per link (and binds every queue this
    /// link declared to its end; later queues bind as they are declared).
    pub(crate) async fn ensure_ladder(&self, names: &Names) -> Result<(), Error> {
        self.ladder
            .get_or_try_init(|| async {
                let admin = self.admin().await?;
                let h = &self.health;
                let deliver = names.deliver();
                exchange(h, &admin, &deliver).await?;
                for level in 0..LEVELS {
                    let name = names.delay(level);
                    let next = if level == 0 {
                        deliver.clone()
                    } else {
                        names.delay(level - 1)
                    };
                    exchange(h, &admin, &name).await?;
                    declare(h, &admin, &name, topology::rung(1 << level, &next)).await?;
                    answer(
                        h,
                        "queue.bind (delay rung)",
                        admin.queue_bind(
                            name.as_str().into(),
                            name.as_str().into(),
                            delay::rung_binding(level).into(),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        ),
                    )
                    .await?;
                    answer(
                        h,
                        "exchange.bind (delay ladder)",
                        admin.exchange_bind(
                            next.as_str().into(),
                            name.as_str().into(),
                            delay::pass_binding(level).into(),
                            ExchangeBindOptions::default(),
                            FieldTable::default(),
                        ),
                    )
                    .await?;
                }
                let queues: Vec<String> = self
                    .declared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned()
                    .collect();
                for queue in queues {
                    bind_deliver(h, &admin, names, &queue).await?;
                }
                self.anchor_once(h, &admin, names, LADDER).await?;
                Ok::<(), Error>(())
            })
            .await?;
        Ok(())
    }

    /// Closes the connection (tasks it holds go back to their queues),
    /// waiting at most [`ANSWER_WITHIN`] for the broker to say so.
    pub(crate) async fn close(&self) {
        self.health.set_broken();
        let _ = answer(
            &self.health,
            "connection.close",
            self.connection.close(200, "conveyor closing".into()),
        )
        .await;
    }
}

/// Declares a quorum queue of its own and deletes it at once, after
/// declaring others: RabbitMQ 3.10 keeps the newest quorum queue's
/// registration (which of its Raft members holds the queue's data) off disk
/// until the next registration comes, so a node killed before then comes
/// back with that queue's record but not its member: the queue has no
/// leader, every consume on it hangs, and its messages sit on disk out of
/// reach (seen in the fault suite's restart case, and in a probe: of queues
/// declared 8 s before a SIGKILL, every one but the newest came back). The
/// anchor's own registration is the one left pending, and it holds nothing.
pub(crate) async fn anchor(health: &Health, admin: &Channel, names: &Names) -> Result<(), Error> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let name = names.anchor(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    declare(health, admin, &name, topology::anchor()).await?;
    answer(
        health,
        &format!("queue.delete {name}"),
        admin.queue_delete(
            name.as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        ),
    )
    .await?;
    Ok(())
}

async fn channel(health: &Health, connection: &Connection) -> Result<Channel, Error> {
    answer(health, "channel.open", connection.create_channel()).await
}

/// Declares a durable queue; how many messages it holds (a queue that
/// existed already may hold some).
pub(crate) async fn declare(
    health: &Health,
    admin: &Channel,
    name: &str,
    args: FieldTable,
) -> Result<u32, Error> {
    let queue = answer(
        health,
        &format!("queue.declare {name}"),
        admin.queue_declare(name.into(), QueueDeclareOptions::durable(), args),
    )
    .await?;
    Ok(queue.message_count())
}

async fn exchange(health: &Health, admin: &Channel, name: &str) -> Result<(), Error> {
    answer(
        health,
        &format!("exchange.declare {name}"),
        admin.exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
}

async fn bind_deliver(
    health: &Health,
    admin: &Channel,
    names: &Names,
    queue: &str,
) -> Result<(), Error> {
    answer(
        health,
        "queue.bind (deliver)",
        admin.queue_bind(
            names.work(queue).into(),
            names.deliver().into(),
            delay::deliver_binding(&names::word(queue)).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
}
