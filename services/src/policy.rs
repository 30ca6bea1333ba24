//! Restart policy after an exit: restart or not (by policy and exit status), capped
//! exponential backoff, and the start limit. Pure functions over boot-time milliseconds,
//! so they are unit-tested without a clock and survive a supervisor restart unchanged.

use std::time::Duration;

use hoist_config::{Backoff, RestartPolicy, StartLimit};

use crate::state::Record;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start again after this delay.
    Restart(Duration),
    /// Not restarted by policy.
    Done,
    /// Start limit reached.
    Failed(String),
}

/// A run at least this long resets the backoff to its first delay.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// A service's restart settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub restart: RestartPolicy,
    pub backoff: Backoff,
    pub limit: StartLimit,
}

/// `failure` is true when the exit counts as a failure whatever the status (start timeout).
pub fn after_exit(record: &mut Record, p: &Policy, status: u32, failure: bool, ran: Duration, now_ms: u64) -> Decision {
    let (backoff, limit) = (&p.backoff, &p.limit);
    let failed = failure || status != 0;
    let restart = match p.restart {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => failed,
        RestartPolicy::Never => false,
    };
    if !restart {
        return Decision::Done;
    }
    let window = limit.interval.as_millis() as u64;
    record.exits_ms.retain(|t| now_ms.saturating_sub(*t) < window);
    record.exits_ms.push(now_ms);
    if record.exits_ms.len() >= limit.burst as usize {
        let reason = format!(
            "start limit: {} exits within {} s (last status {status})",
            record.exits_ms.len(),
            limit.interval.as_secs()
        );
        record.failed = Some(reason.clone());
        return Decision::Failed(reason);
    }
    let initial = backoff.initial.as_millis() as u64;
    if ran >= STABLE_AFTER || record.backoff_ms == 0 {
        record.backoff_ms = initial;
    }
    let delay = record.backoff_ms;
    let next = (delay as f64 * backoff.factor) as u64;
    record.backoff_ms = next.clamp(initial, backoff.max.as_millis() as u64);
    record.restarts += 1;
    Decision::Restart(Duration::from_millis(delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(restart: RestartPolicy) -> Policy {
        Policy {
            restart,
            backoff: Backoff { initial: Duration::from_millis(100), factor: 2.0, max: Duration::from_secs(1) },
            limit: StartLimit { burst: 6, interval: Duration::from_secs(60) },
        }
    }

    #[test]
    fn policies_decide_restarts() {
        let mut r = Record::default();
        let quick = Duration::from_millis(5);
        assert_eq!(after_exit(&mut r, &policy(RestartPolicy::OnFailure), 0, false, quick, 0), Decision::Done);
        assert!(matches!(
            after_exit(&mut r, &policy(RestartPolicy::OnFailure), 1, false, quick, 0),
            Decision::Restart(_)
        ));
        assert!(matches!(
            after_exit(&mut r, &policy(RestartPolicy::OnFailure), 0, true, quick, 0),
            Decision::Restart(_)
        ));
        assert!(matches!(after_exit(&mut r, &policy(RestartPolicy::Always), 0, false, quick, 0), Decision::Restart(_)));
        assert_eq!(after_exit(&mut r, &policy(RestartPolicy::Never), 137, false, quick, 0), Decision::Done);
    }

    #[test]
    fn backoff_doubles_to_the_cap_then_the_start_limit_fails_the_service() {
        let mut r = Record::default();
        let mut out = Vec::new();
        for i in 0..6 {
            out.push(after_exit(&mut r, &policy(RestartPolicy::Always), 1, false, Duration::ZERO, i * 10));
        }
        let ms: Vec<u128> = out[..5]
            .iter()
            .map(|d| match d {
                Decision::Restart(d) => d.as_millis(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000]);
        assert!(matches!(&out[5], Decision::Failed(reason) if reason.contains("6 exits within 60 s")));
        assert_eq!(r.restarts, 5);
        assert!(r.failed.is_some());
    }

    #[test]
    fn a_long_run_resets_the_backoff_and_old_exits_leave_the_window() {
        let mut r = Record { backoff_ms: 800, exits_ms: vec![0, 1, 2, 3, 4], ..Default::default() };
        let d = after_exit(&mut r, &policy(RestartPolicy::Always), 1, false, Duration::from_secs(20), 120_000);
        assert_eq!(d, Decision::Restart(Duration::from_millis(100)));
        assert_eq!(r.exits_ms, [120_000]);
    }
}
