//! One connection to RabbitMQ and what lives on it: a publishing channel in
//! confirm mode, a channel for declarations, and which queues this connection
//! has declared already.
//!
//! conveyor does its own reconnecting (the backend opens a new `Link` when the
//! old one is dead) rather than the client's automatic recovery: a new link
//! has a new generation, every delivery tag of the old one is void, and that
//! is exactly the fencing a broker gives for free.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use conveyor_core::Error;
use lapin::options::{
    ConfirmSelectOptions, ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::delay::{self, LEVELS};
use crate::error::amqp_error;
use crate::names::{self, Names};
use crate::topology;

/// How long connecting may take before the broker counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A live connection and its shared channels.
pub(crate) struct Link {
    pub(crate) generation: u64,
    connection: Connection,
    /// Confirm mode: a publish returns once the broker has the message.
    pub(crate) publisher: Channel,
    /// Declarations and deletions (a refused one closes it; it is reopened).
    admin: tokio::sync::Mutex<Channel>,
    /// Conveyor queues whose work and dead queues this link declared.
    declared: Mutex<HashSet<String>>,
    ladder: tokio::sync::OnceCell<()>,
}

impl Link {
    /// Connects to `url` (an `amqp://` URL the client understands).
    pub(crate) async fn open(url: &str, generation: u64) -> Result<Link, Error> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("conveyor {}", std::process::id()).into());
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, props))
            .await
            .map_err(|_| {
                Error::backend(
                    conveyor_core::BackendErrorKind::Unavailable,
                    format!("amqp connect: no answer within {CONNECT_TIMEOUT:?}"),
                )
            })?
            .map_err(|e| amqp_error("connect", e))?;
        let publisher = channel(&connection).await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| amqp_error("confirm.select", e))?;
        let admin = channel(&connection).await?;
        Ok(Link {
            generation,
            connection,
            publisher,
            admin: tokio::sync::Mutex::new(admin),
            declared: Mutex::new(HashSet::new()),
            ladder: tokio::sync::OnceCell::new(),
        })
    }

    /// True while the connection and its publishing channel work.
    pub(crate) fn alive(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }

    /// A new channel on this connection.
    pub(crate) async fn channel(&self) -> Result<Channel, Error> {
        channel(&self.connection).await
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
        declare(&admin, &dead, topology::dead_queue()).await?;
        declare(&admin, &work, topology::work_queue(&dead, delivery_limit)).await?;
        if self.ladder.initialized() {
            bind_deliver(&admin, names, queue).await?;
        }
        drop(admin);
        self.declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(queue.to_string());
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
                let deliver = names.deliver();
                exchange(&admin, &deliver).await?;
                for level in 0..LEVELS {
                    let name = names.delay(level);
                    let next = if level == 0 {
                        deliver.clone()
                    } else {
                        names.delay(level - 1)
                    };
                    exchange(&admin, &name).await?;
                    declare(&admin, &name, topology::rung(1 << level, &next)).await?;
                    admin
                        .queue_bind(
                            name.as_str().into(),
                            name.as_str().into(),
                            delay::rung_binding(level).into(),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(|e| amqp_error("queue.bind (delay rung)", e))?;
                    admin
                        .exchange_bind(
                            next.as_str().into(),
                            name.as_str().into(),
                            delay::pass_binding(level).into(),
                            ExchangeBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(|e| amqp_error("exchange.bind (delay ladder)", e))?;
                }
                let queues: Vec<String> = self
                    .declared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned()
                    .collect();
                for queue in queues {
                    bind_deliver(&admin, names, &queue).await?;
                }
                Ok::<(), Error>(())
            })
            .await?;
        Ok(())
    }

    /// Closes the connection (tasks it holds go back to their queues).
    pub(crate) async fn close(&self) {
        let _ = self.connection.close(200, "conveyor closing".into()).await;
    }
}

async fn channel(connection: &Connection) -> Result<Channel, Error> {
    connection
        .create_channel()
        .await
        .map_err(|e| amqp_error("channel.open", e))
}

/// Declares a durable queue; how many messages it holds (a queue that
/// existed already may hold some).
pub(crate) async fn declare(admin: &Channel, name: &str, args: FieldTable) -> Result<u32, Error> {
    let queue = admin
        .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
        .await
        .map_err(|e| amqp_error(&format!("queue.declare {name}"), e))?;
    Ok(queue.message_count())
}

async fn exchange(admin: &Channel, name: &str) -> Result<(), Error> {
    admin
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp_error(&format!("exchange.declare {name}"), e))
}

async fn bind_deliver(admin: &Channel, names: &Names, queue: &str) -> Result<(), Error> {
    admin
        .queue_bind(
            names.work(queue).into(),
            names.deliver().into(),
            delay::deliver_binding(&names::word(queue)).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp_error("queue.bind (deliver)", e))
}
