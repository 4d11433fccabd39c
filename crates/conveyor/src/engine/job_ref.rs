//! A worker's own reference to the job whose tasks it runs, which those
//! tasks' contexts share.
//!
//! Every attempt's [`TaskContext`](crate::TaskContext) holds its job. Cloning
//! the job's `Arc` for each one would change, on the worker's core, the
//! reference count that the producer increments for every task it submits,
//! moving that count's cache line between the two cores for every task. A
//! context holds a [`JobRef`] instead: one per worker and job, made when the
//! worker takes its first task of the job, whose count only that worker's
//! attempts change.

use std::ops::Deref;
use std::sync::Arc;

use crate::engine::job_state::JobState;

/// A reference to a job, shared by the contexts of one worker's attempts.
pub(crate) struct JobRef(Arc<JobState>);

impl Deref for JobRef {
    type Target = JobState;

    fn deref(&self) -> &JobState {
        &self.0
    }
}

/// The [`JobRef`] a worker gives its attempts' contexts.
#[derive(Default)]
pub(crate) struct JobRefs {
    current: Option<Arc<JobRef>>,
}

impl JobRefs {
    /// A reference to `job` for a context: the worker's current one, if it
    /// is for `job`; otherwise a new one, kept as the current one.
    pub(crate) fn to(&mut self, job: &Arc<JobState>) -> Arc<JobRef> {
        match &self.current {
            Some(r) if Arc::ptr_eq(&r.0, job) => r.clone(),
            _ => {
                let r = Arc::new(JobRef(job.clone()));
                self.current = Some(r.clone());
                r
            }
        }
    }

    /// Lets go of the current reference, so a worker that waits for work,
    /// or for room to report another job's task, never keeps a job open (its
    /// result queue disconnects, and so it completes, only once every
    /// reference is gone).
    pub(crate) fn let_go(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::testing::on_a_pool;

    #[test]
    fn one_reference_per_job_until_let_go() {
        on_a_pool(|pool| {
            let a = JobState::new(&pool.engine, 1, None, None);
            let b = JobState::new(&pool.engine, 1, None, None);
            let mut refs = JobRefs::default();
            let first = refs.to(&a);
            let again = refs.to(&a);
            assert!(
                Arc::ptr_eq(&first, &again),
                "the same job shares one reference"
            );
            assert_eq!(
                Arc::strong_count(&a),
                2,
                "one job count for all the contexts"
            );
            let other = refs.to(&b);
            assert!(!Arc::ptr_eq(&first, &other));
            assert_eq!(Arc::strong_count(&b), 2);
            drop((first, again));
            assert_eq!(Arc::strong_count(&a), 1, "switching jobs lets the first go");
            refs.let_go();
            drop(other);
            assert_eq!(Arc::strong_count(&b), 1, "let_go lets the current one go");
        });
    }
}
