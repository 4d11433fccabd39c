//! The Redis server's CPU time, for the examples that measure it.

use conveyor_core::Error;

/// The server's main-thread CPU seconds so far (user + system, `INFO cpu`).
pub async fn server_cpu(conn: &mut redis::aio::MultiplexedConnection) -> Result<f64, Error> {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .map_err(|e| Error::backend_other(e.to_string()))?;
    let mut total = 0.0;
    for line in info.lines() {
        if let Some((k, v)) = line.split_once(':') {
            if k == "used_cpu_sys_main_thread" || k == "used_cpu_user_main_thread" {
                total += v.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    Ok(total)
}
