//! Routing: which system handles an application, and what a delivery attempt's result means
//! under its adapter's retry policy: delivered, tried again (when: exponential backoff with
//! jitter, a system's `Retry-After` honoured) or given up on as a dead letter; and an
//! application in its system's format, as each attempt sends it. No I/O: the delivery lanes
//! (`workers::lanes`) and acceptance ask it.

use crate::adapters::{Delivered, DeliveryError};
use crate::backoff::{Backoff, jitter};
use crate::clock;
use crate::config::{AdapterConfig, Config, Protocol, RetryPolicy};
use crate::mapping::{MapError, Mapping, Node, OpenDocument};
use crate::store::{AttemptOutcome, ClaimedDelivery};
use std::time::Duration;

/// The system that handles `item_code` for an application from `region`: a claim naming the
/// region wins over one that covers every region. Configuration rules out two candidates.
pub fn route<'a>(
    config: &'a Config,
    item_code: &str,
    region: Option<&str>,
) -> Option<&'a AdapterConfig> {
    let claims = || {
        config
            .adapters
            .values()
            .flat_map(|a| a.items.iter().map(move |c| (a, c)))
            .filter(|(_, c)| c.code == item_code)
    };
    region
        .and_then(|r| claims().find(|(_, c)| c.regions.iter().any(|x| x == r)))
        .or_else(|| claims().find(|(_, c)| c.regions.is_empty()))
        .map(|(a, _)| a)
}

/// The namespace of the hub's own SOAP header entries.
pub const HUB_NS: &str = "urn:tongban:hub:2026";

/// An application in its system's format as one attempt sends it: the mapping's document with,
/// for SOAP, the hub's own header entries (the idempotency key, the attempt's identity
/// assertion, the attempt's `traceparent`).
pub fn legacy_message(
    adapter: &AdapterConfig,
    mapping: &Mapping,
    application_id: &str,
    canonical: &serde_json::Value,
    assertion: Option<&str>,
    traceparent: Option<&str>,
) -> Result<Vec<u8>, Vec<MapError>> {
    let header = hub_header_entries(adapter, application_id, assertion, traceparent);
    mapping.to_legacy_with_header(canonical, header, assertion)
}

/// [`legacy_message`] written once, when the application is accepted, with the places each
/// attempt's assertion goes left open, and the `traceparent` of the acceptance where each
/// attempt's goes: a `traceparent` has one length, so an attempt writes its own over it in
/// place ([`retrace`]).
pub fn open_message(
    adapter: &AdapterConfig,
    mapping: &Mapping,
    application_id: &str,
    canonical: &serde_json::Value,
    traceparent: Option<&str>,
) -> Result<OpenDocument, Vec<MapError>> {
    mapping.to_legacy_open(canonical, |assertion| {
        hub_header_entries(adapter, application_id, Some(assertion), traceparent)
    })
}

/// Writes `attempt`'s `traceparent` over every `written` one (the acceptance's, which
/// [`open_message`] put in the SOAP header) in `message`. Both are the same length, so nothing
/// else in the message moves; the acceptance's span id is new and random, so it occurs in the
/// message only where the hub wrote it.
pub fn retrace(message: &mut [u8], written: &str, attempt: &str) {
    let (from, to) = (written.as_bytes(), attempt.as_bytes());
    if from.len() != to.len() || from.is_empty() {
        return;
    }
    let mut at = 0;
    while let Some(i) = message[at..].windows(from.len()).position(|w| w == from) {
        message[at + i..at + i + to.len()].copy_from_slice(to);
        at += i + to.len();
    }
}

fn hub_header_entries(
    adapter: &AdapterConfig,
    application_id: &str,
    assertion: Option<&str>,
    traceparent: Option<&str>,
) -> Vec<Node> {
    let entry = |name: &str, value: &str| {
        let mut node = Node::named(name);
        node.attrs.push(("xmlns".into(), HUB_NS.into()));
        node.value = Some(serde_json::Value::String(value.to_string()));
        node
    };
    match adapter.outbound.protocol {
        Protocol::Soap { .. } => {
            let mut entries = vec![entry("IdempotencyKey", application_id)];
            if let Some(assertion) = assertion {
                entries.push(entry("IdentityAssertion", assertion));
            }
            if let Some(traceparent) = traceparent {
                entries.push(entry("traceparent", traceparent));
            }
            entries
        }
        Protocol::Rest { .. } | Protocol::Amqp { .. } => Vec::new(),
    }
}

/// What an attempt's result means for the delivery: done, again later, or never.
pub fn classify(
    retry: &RetryPolicy,
    delivery: &ClaimedDelivery,
    sent: Result<Delivered, DeliveryError>,
    now: i64,
) -> AttemptOutcome {
    match sent {
        Ok(d) => AttemptOutcome::Delivered { status: d.status },
        Err(DeliveryError::Permanent { reason, status }) => AttemptOutcome::Dead { status, reason },
        Err(DeliveryError::Retryable {
            reason,
            retry_after,
            status,
        }) => {
            let tries = delivery.attempts_in_window + 1;
            let wait = backoff(retry, tries, retry_after, &delivery.id);
            match next_try(retry, tries, delivery.window_start, now, wait) {
                Some(next) => AttemptOutcome::Retry {
                    next_attempt_at: next,
                    status,
                    reason,
                },
                None => AttemptOutcome::Dead {
                    status,
                    reason: format!("gave up after {tries} attempt(s); last: {reason}"),
                },
            }
        }
    }
}

/// When a delivery that just failed in passing for the `tries`-th time since `window_start`
/// (its acceptance or replay) is tried again: `wait` from `now`. `None` when the policy gives
/// up: that try would fall after `max_age`, or the adapter set `attempts` and they are used
/// up. Without `attempts` a delivery is retried for as long as `max_age` allows, so a system
/// down for a while gets what was sent meanwhile once it is back.
pub fn next_try(
    retry: &RetryPolicy,
    tries: i64,
    window_start: i64,
    now: i64,
    wait: Duration,
) -> Option<i64> {
    let next = now + wait.as_millis() as i64;
    let age_limit = window_start + retry.max_age.as_millis() as i64;
    let used_up = retry.attempts.is_some_and(|a| tries >= i64::from(a));
    (!used_up && next <= age_limit).then_some(next)
}

/// Exponential backoff with jitter: the `tries`-th wait is drawn from the upper half of
/// `initial·2^(tries-1)`, capped at the maximum; a system's own `Retry-After` is honoured when
/// longer.
pub fn backoff(
    retry: &RetryPolicy,
    tries: i64,
    retry_after: Option<Duration>,
    seed: &str,
) -> Duration {
    let exp = Backoff {
        initial: retry.initial_backoff,
        max: retry.max_backoff,
    }
    .after(tries.clamp(1, 31) as u32);
    let wait = jitter(exp, (hash(seed, tries) % 1000) as u32);
    match retry_after {
        Some(asked) if asked > wait => asked,
        _ => wait,
    }
}

fn hash(seed: &str, n: i64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut h);
    n.hash(&mut h);
    clock::now_millis().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetryPolicy;

    #[test]
    fn an_attempts_traceparent_replaces_the_written_one_in_place() {
        let written = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let attempt = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01";
        let mut message =
            format!("<h><traceparent>{written}</traceparent><a>x</a></h>").into_bytes();
        let length = message.len();
        retrace(&mut message, written, attempt);
        assert_eq!(
            String::from_utf8(message.clone()).unwrap(),
            format!("<h><traceparent>{attempt}</traceparent><a>x</a></h>")
        );
        assert_eq!(message.len(), length, "nothing moves");
        // Anything but an equal length is left alone.
        retrace(&mut message, attempt, "00-short");
        assert!(String::from_utf8(message).unwrap().contains(attempt));
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let policy = RetryPolicy {
            attempts: Some(10),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_age: Duration::from_secs(60),
        };
        for tries in 1..=10 {
            let expected = Duration::from_millis((100u64 << (tries - 1)).min(1000));
            let wait = backoff(&policy, tries, None, "a");
            assert!(
                wait >= expected / 2 && wait <= expected,
                "try {tries}: {wait:?}"
            );
        }
        assert_eq!(
            backoff(&policy, 1, Some(Duration::from_secs(7)), "a"),
            Duration::from_secs(7)
        );
    }

    const MINUTE: i64 = 60_000;
    const ACCEPTED: i64 = 1_790_000_000_000;

    /// The times a delivery accepted at [`ACCEPTED`] to a system down until `down_until` is
    /// tried under `policy`, and whether it was still to be retried after the last of them.
    fn tries_while_down(policy: &RetryPolicy, down_until: i64) -> (Vec<i64>, bool) {
        let mut at = ACCEPTED;
        let mut tries = Vec::new();
        loop {
            tries.push(at);
            let wait = backoff(policy, tries.len() as i64, None, "TB-1~1");
            match next_try(policy, tries.len() as i64, ACCEPTED, at, wait) {
                Some(next) if at < down_until => at = next,
                Some(_) => return (tries, true),
                None => return (tries, false),
            }
        }
    }

    #[test]
    fn by_default_a_delivery_is_retried_until_max_age_however_many_tries_that_takes() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.attempts, None);
        // The 20th failure, half an hour in: tried again, within the capped wait.
        let wait = backoff(&policy, 20, None, "TB-1~1");
        assert!(wait <= policy.max_backoff, "{wait:?}");
        let now = ACCEPTED + 30 * MINUTE;
        assert_eq!(
            next_try(&policy, 20, ACCEPTED, now, wait),
            Some(now + wait.as_millis() as i64)
        );
        // So is the 1000th, an hour before the day is out.
        let late = ACCEPTED + 23 * 60 * MINUTE;
        assert!(next_try(&policy, 1000, ACCEPTED, late, policy.max_backoff).is_some());
        // A try that would fall after max_age is not made: dead.
        let day = policy.max_age.as_millis() as i64;
        let last = ACCEPTED + day - 1_000;
        assert_eq!(
            next_try(&policy, 1001, ACCEPTED, last, policy.max_backoff),
            None
        );
        assert_eq!(
            next_try(&policy, 1, ACCEPTED, ACCEPTED + day + 1, Duration::ZERO),
            None
        );
        // A replay starts a new window: tried again.
        assert!(next_try(&policy, 1, last, last, policy.max_backoff).is_some());
    }

    #[test]
    fn an_adapter_that_sets_attempts_gives_up_after_them() {
        let policy = RetryPolicy {
            attempts: Some(8),
            ..RetryPolicy::default()
        };
        assert!(next_try(&policy, 7, ACCEPTED, ACCEPTED, Duration::ZERO).is_some());
        assert_eq!(
            next_try(&policy, 8, ACCEPTED, ACCEPTED, Duration::ZERO),
            None
        );
    }

    #[test]
    fn the_shipped_adapters_wait_out_an_hour_of_maintenance() {
        let config = Config::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
            .expect("the repository configuration compiles");
        let hour = ACCEPTED + 60 * MINUTE;
        for adapter in config.adapters.values() {
            let policy = &adapter.outbound.retry;
            let (tries, still_retrying) = tries_while_down(policy, hour);
            assert!(
                still_retrying,
                "{}: gave up {} min in, after {} tries",
                adapter.id,
                (tries.last().unwrap() - ACCEPTED) / MINUTE,
                tries.len()
            );
            // Capped: while it is down, the system is asked at least every max_backoff.
            let longest = tries.windows(2).map(|w| w[1] - w[0]).max().unwrap();
            assert!(
                longest <= policy.max_backoff.as_millis() as i64,
                "{}",
                adapter.id
            );
        }
        // The default, too.
        assert!(tries_while_down(&RetryPolicy::default(), hour).1);
    }
}
