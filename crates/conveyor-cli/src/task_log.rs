//! One log line per settled task: handler, id, attempt, outcome, run time
//! and, for commands, the exit code; retries and dead letters carry their
//! error. Written from the worker's callback thread, never on the path that
//! acknowledges tasks.

use conveyor::source::{Settled, Stored};
use conveyor::{NextStep, ProcessOutput};

/// The exit of a command handler's attempt, as `exit code 3` or `signal 9`.
fn exit_of(s: &Settled) -> Option<String> {
    let out = s.result.output::<ProcessOutput>().or_else(|| {
        s.result
            .outcome
            .error()
            .and_then(|e| e.detail::<ProcessOutput>())
    })?;
    Some(match (out.code, out.signal) {
        (Some(c), _) => c.to_string(),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => "unknown".to_string(),
    })
}

/// Logs one settled task.
pub fn log(s: &Settled) {
    let run_time = s
        .result
        .started_at
        .map(|at| {
            format!(
                "{:.3}s",
                s.result
                    .finished_at
                    .saturating_duration_since(at)
                    .as_secs_f64()
            )
        })
        .unwrap_or_else(|| "-".to_string());
    let exit = exit_of(s).unwrap_or_else(|| "-".to_string());
    let outcome = s.result.outcome.kind().as_str();
    let error = s.error.as_deref().unwrap_or("");
    let (handler, id, attempt, queue) = (&*s.result.handler, s.id.0, s.attempt, &*s.queue);
    // The attempt's trace id, with traces on: the line joins up with them.
    let trace_id = s.trace_id.as_deref();
    // What the handler did is only half the story: a result the store
    // refused (the lease had ended) or never took was not kept.
    match &s.stored {
        Stored::Taken => {}
        Stored::Stale => {
            tracing::warn!(
                handler,
                id,
                attempt,
                queue,
                trace_id,
                outcome,
                run_time,
                "the task's outcome was refused: its lease had ended (it was cancelled, or \
                 its lease ran out and the store took it back to run again, or dead-lettered \
                 it if no attempt was left)"
            );
            return;
        }
        Stored::Lost(why) => {
            tracing::error!(
                handler, id, attempt, queue, trace_id, outcome, run_time, error = %why,
                "the task's outcome was not stored: its lease will run out and it will run again"
            );
            return;
        }
        _ => {}
    }
    match s.step {
        NextStep::Done => tracing::info!(
            handler,
            id,
            attempt,
            queue,
            trace_id,
            outcome,
            run_time,
            exit_code = exit,
            "task succeeded"
        ),
        NextStep::Retry { delay } => tracing::warn!(
            handler, id, attempt, queue, trace_id, outcome, run_time, exit_code = exit,
            retry_in = %humantime::format_duration(round_ms(delay)), error,
            "task failed; it will be retried"
        ),
        NextStep::Discard => tracing::info!(
            handler,
            id,
            attempt,
            queue,
            trace_id,
            outcome,
            run_time,
            reason = error,
            "task discarded by its handler"
        ),
        NextStep::Release => tracing::info!(
            handler,
            id,
            attempt,
            queue,
            trace_id,
            reason = error,
            "task handed back unstarted"
        ),
        _ => tracing::error!(
            handler,
            id,
            attempt,
            queue,
            trace_id,
            outcome,
            run_time,
            exit_code = exit,
            error,
            "task dead-lettered"
        ),
    }
}

fn round_ms(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(d.as_millis().min(u128::from(u64::MAX)) as u64)
}
