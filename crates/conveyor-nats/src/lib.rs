//! A NATS JetStream backend for conveyor (being built).
