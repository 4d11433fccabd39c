//! The nodes of a RabbitMQ cluster a URL names:
//! `amqp://USER:PASSWORD@HOST:PORT,HOST:PORT,…/VHOST` (also `amqps://`).
//! A connection goes to one of them; when it dies, the next connection
//! tries the node it was on first (the connection may have died alone),
//! then the others in the URL's order, so a worker whose node died moves
//! to a live one by itself. Quorum queues keep their messages on a
//! majority of the nodes, so the queues a dead node led get a new leader
//! and go on.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use conveyor_core::Error;

use crate::link::Link;

/// The nodes to connect to, and which one worked last.
#[derive(Debug)]
pub(crate) struct Nodes {
    /// One URL per node, in the URL's order.
    urls: Vec<String>,
    /// The index of the node the last connection went to.
    last: AtomicUsize,
}

impl Nodes {
    /// The nodes `url` names (one, or several separated by commas in the
    /// authority).
    pub(crate) fn parse(url: &str) -> Result<Nodes, Error> {
        let bad = |why: &str| Error::InvalidConfig(format!("bad amqp URL: {why}"));
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad("no scheme://"));
        };
        let (authority, tail) = match rest.find(['/', '?', '#']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (format!("{u}@"), h),
            None => (String::new(), authority),
        };
        let urls: Vec<String> = hosts
            .split(',')
            .map(|h| format!("{scheme}://{userinfo}{h}{tail}"))
            .collect();
        if hosts.split(',').any(str::is_empty) {
            return Err(bad("an empty host in the list of nodes"));
        }
        Ok(Nodes {
            urls,
            last: AtomicUsize::new(0),
        })
    }

    /// A new link to the node the last one was on, or the next that
    /// answers; the last node's error when none does.
    pub(crate) async fn open(
        &self,
        generation: u64,
        anchored: Arc<Mutex<HashSet<String>>>,
    ) -> Result<Link, Error> {
        let first = self.last.load(Ordering::Relaxed);
        let mut failed = None;
        for k in 0..self.urls.len() {
            let i = (first + k) % self.urls.len();
            match Link::open(&self.urls[i], generation, anchored.clone()).await {
                Ok(link) => {
                    if i != first {
                        tracing::warn!(node = i, "connected to another RabbitMQ node");
                    }
                    self.last.store(i, Ordering::Relaxed);
                    return Ok(link);
                }
                Err(e) => failed = Some(e),
            }
        }
        Err(failed.unwrap_or_else(|| Error::InvalidConfig("an amqp URL names no node".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_per_node() {
        let n = Nodes::parse("amqp://u:p@a:1,b:2,c/v%2f?heartbeat=10").expect("url");
        assert_eq!(
            n.urls,
            [
                "amqp://u:p@a:1/v%2f?heartbeat=10",
                "amqp://u:p@b:2/v%2f?heartbeat=10",
                "amqp://u:p@c/v%2f?heartbeat=10"
            ]
        );
        let n = Nodes::parse("amqps://h:5671").expect("url");
        assert_eq!(n.urls, ["amqps://h:5671"]);
        assert!(Nodes::parse("amqp://a,,b/").is_err());
        assert!(Nodes::parse("a:1").is_err());
    }
}
