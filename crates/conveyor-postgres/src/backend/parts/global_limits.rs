//! Global handler limits: stored in the `handler_limits` table, which
//! `crate::limits` reserves under.

use conveyor_core::{async_trait, Error, GlobalLimits, HandlerLimits};

use crate::backend::PostgresBackend;
use crate::limits;

#[async_trait]
impl GlobalLimits for PostgresBackend {
    async fn set_limits(&self, handler: &str, limits: HandlerLimits) -> Result<(), Error> {
        limits.validate()?;
        let conn = self.conn("storing handler limits").await?;
        limits::set(&conn, &self.inner.limits, handler, limits).await
    }

    async fn limits(&self) -> Result<Vec<(String, HandlerLimits)>, Error> {
        let conn = self.conn("reading handler limits").await?;
        limits::list(&conn, &self.inner.limits).await
    }
}
