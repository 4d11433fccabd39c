//! The private servers a fault case may kill and start again, behind one
//! small trait: Redis, PostgreSQL, NATS and RabbitMQ, each on a free loopback
//! port with its data in a temporary directory.

use std::net::SocketAddr;

use crate::nats_server::TempNats;
use crate::rabbitmq_server::TempRabbit;
use crate::servers::{TempPostgres, TempRedis};

/// A server of a test's own that it may stop (SIGKILL, or a fast shutdown)
/// and start again on the same port and data. Blocking calls: run them off
/// the async runtime.
pub trait FaultServer: Send {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;
    /// Stops it (what it synced survives).
    fn stop(&mut self);
    /// Starts it again and waits until it accepts connections.
    fn start(&mut self);
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A server type whose own calls stop and start it.
macro_rules! fault_server {
    ($server:ty, stop: $stop:ident, start: $start:ident) => {
        impl FaultServer for $server {
            fn addr(&self) -> SocketAddr {
                loopback(self.port())
            }
            fn stop(&mut self) {
                self.$stop();
            }
            fn start(&mut self) {
                self.$start();
            }
        }
    };
}

fault_server!(TempRedis, stop: kill, start: restart);
fault_server!(TempPostgres, stop: stop_server, start: start_server);
fault_server!(TempNats, stop: kill, start: restart);
fault_server!(TempRabbit, stop: kill, start: restart);
