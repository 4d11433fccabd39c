//! A RabbitMQ backend for conveyor (being built).
