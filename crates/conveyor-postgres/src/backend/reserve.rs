//! Reserving: due tasks promoted, the limits gate checked and tasks taken
//! in three statements pipelined on one connection, each queue in turn;
//! while any handler has global limits, or only some handlers are wanted,
//! the limited way (`crate::limits`) takes them instead.

use conveyor_core::{Error, ReserveParams, Reserved};

use super::PostgresBackend;
use crate::error::db;
use crate::limits;
use crate::row::{self, col};

impl PostgresBackend {
    /// The body of `Backend::reserve`.
    pub(super) async fn reserve_tasks(
        &self,
        params: ReserveParams<'_>,
    ) -> Result<Vec<Reserved>, Error> {
        let (queues, max, lease, worker) = (params.queues, params.max, params.lease, params.worker);
        let what = "reserving";
        let now = self.inner.clock.now();
        let now_ms = now.as_millis();
        let until = now.plus(lease).as_millis();
        let mut conn = self.conn(what).await?;
        let promote = Self::prepared(&conn, what, &self.inner.sql.promote).await?;
        if let Some(handlers) = params.handlers {
            // Only some handlers: the scan that leaves handlers out, as the
            // limited way does (a worker asks for this only while its queues
            // hold tasks of handlers it lacks).
            conn.execute(&promote, &[&now_ms])
                .await
                .map_err(|e| db(what, e))?;
            return limits::reserve(
                &mut conn,
                &self.inner.limits,
                queues,
                max,
                (now, until),
                worker,
                Some(handlers),
            )
            .await;
        }
        let reserve = Self::prepared(&conn, what, &self.inner.sql.reserve).await?;
        let exists = Self::prepared(&conn, what, self.inner.limits.exists()).await?;
        let mut out = Vec::new();
        let mut limited = false;
        let mut promoted = false;
        for queue in queues {
            let left = max.saturating_sub(out.len());
            if left == 0 {
                break;
            }
            let limit = i64::try_from(left).unwrap_or(i64::MAX);
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                [queue, &limit, &until, &worker, &now_ms];
            let rows = if promoted {
                conn.query(&reserve, &params)
                    .await
                    .map_err(|e| db(what, e))?
            } else {
                // Pipelined: all three go out at once and run in order, each in
                // its own implicit transaction, so the reserve sees the
                // promotion. The reserve takes nothing while any handler has
                // limits (its gate); the check says whether to go the limited way.
                promoted = true;
                let promote_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&now_ms];
                let (_, gate, rows) = tokio::try_join!(
                    conn.execute(&promote, &promote_params),
                    conn.query_one(&exists, &[]),
                    conn.query(&reserve, &params)
                )
                .map_err(|e| db(what, e))?;
                limited = col(&gate, 0, "exists")?;
                rows
            };
            let mut got = rows
                .iter()
                .map(row::reserved)
                .collect::<Result<Vec<_>, _>>()?;
            got.sort_by_key(|(priority, r)| (std::cmp::Reverse(*priority), r.lease.id));
            out.extend(got.into_iter().map(|(_, r)| r));
            if limited {
                break;
            }
        }
        if !promoted {
            conn.execute(&promote, &[&now_ms])
                .await
                .map_err(|e| db(what, e))?;
        }
        if limited && out.len() < max {
            let more = limits::reserve(
                &mut conn,
                &self.inner.limits,
                queues,
                max - out.len(),
                (now, until),
                worker,
                None,
            )
            .await?;
            out.extend(more);
        }
        Ok(out)
    }
}
