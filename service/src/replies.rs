//! The byte budget of replies in the making: a reply holds its share from before its handler runs
//! until NATS has its bytes, so many large answers at once (a hundred users' full pages) wait
//! their turn instead of all being built together.
//!
//! A handler's working set is a few times its reply (rows, the wire type, the JSON tree, the
//! encoded bytes), and it exists before the reply's size is known: each request first holds what
//! its subject may need at most ([`expected`]), then, once encoded, exactly its bytes, until the
//! publish is flushed to the server. `MAX_REPLY_MIB` is the budget; a single reply larger than it
//! waits for the whole of it and goes alone.

use std::sync::Arc;

use contracts::booking::{BOOKING_BYTES, LISTED_BOOKING_BYTES};
use contracts::subjects as s;
use contracts::validate::limits;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a reply to `subject` with `data` may take at most, held before its handler runs. A new
/// booking's reply is small and a create's working set with it; syncs and a day's slots are small.
pub(crate) fn expected(subject: &str, data: &Value) -> usize {
    let limit = |default: i64, max: i64| {
        let asked = data.get("limit").and_then(Value::as_i64).unwrap_or(default);
        usize::try_from(asked.clamp(1, max)).unwrap_or(1)
    };
    match subject {
        s::BOOKING_FIND_BY_USER_ID => {
            limit(limits::MAX_USER_BOOKINGS, limits::MAX_USER_BOOKINGS) * LISTED_BOOKING_BYTES
        }
        s::BOOKING_SEARCH => {
            limit(limits::DEFAULT_PAGE_SIZE, limits::MAX_PAGE_SIZE) * LISTED_BOOKING_BYTES
        }
        s::BOOKING_FIND_BY_ID
        | s::BOOKING_FIND_BY_NUMBER
        | s::BOOKING_UPDATE
        | s::BOOKING_CANCEL => BOOKING_BYTES,
        s::BOOKING_CREATE => LISTED_BOOKING_BYTES,
        _ => 0,
    }
}

/// Replies this large are flushed to NATS before their share is given back: a publish only
/// queues the bytes in the client. Smaller ones give it back once queued, where the client's
/// bounded queue holds them for the moment the socket takes.
pub(crate) const FLUSH_FROM: usize = 16 * 1024;

/// The budget, counted in KiB so that any size fits a semaphore's permits.
#[derive(Debug, Clone)]
pub(crate) struct ReplyBudget {
    kib: Arc<Semaphore>,
    capacity_kib: u32,
}

/// A reply's share of the budget; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Share(Option<OwnedSemaphorePermit>);

impl ReplyBudget {
    /// A budget of `bytes` (at least 1 KiB).
    pub(crate) fn new(bytes: usize) -> Self {
        let capacity_kib = u32::try_from(bytes / 1024).unwrap_or(u32::MAX).max(1);
        Self {
            kib: Arc::new(Semaphore::new(capacity_kib as usize)),
            capacity_kib,
        }
    }

    /// `bytes` in KiB, rounded up, and at most the whole budget.
    fn kib_of(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.capacity_kib)
    }

    /// Waits until `bytes` fit beside the replies in the making.
    pub(crate) async fn take(&self, bytes: usize) -> Share {
        let kib = self.kib_of(bytes);
        if kib == 0 {
            return Share(None);
        }
        // The semaphore is never closed: `None` cannot happen, and would only mean no wait.
        Share(self.kib.clone().acquire_many_owned(kib).await.ok())
    }

    /// Makes `share` exactly `bytes`: what it holds beyond is given back at once; when it needs
    /// more, a small reply (under [`FLUSH_FROM`]) goes without, and a large one gives everything
    /// back and waits for the whole, so that no reply ever waits while
    /// holding a share (which could leave every share waiting on the others).
    pub(crate) async fn resize(&self, share: &mut Share, bytes: usize) {
        let kib = self.kib_of(bytes) as usize;
        let held = share
            .0
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits);
        if kib <= held {
            if let Some(permit) = share.0.as_mut() {
                drop(permit.split(held - kib));
            }
            return;
        }
        share.0 = None;
        // A small reply (an error, a deadline's answer, a committed write's) never waits behind
        // large ones: the client's bounded queue holds it, and its caller is answered in time.
        if bytes < FLUSH_FROM {
            return;
        }
        *share = self.take(bytes).await;
    }

    /// Bytes not held by any reply.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.kib.available_permits() * 1024
    }
}

impl Share {
    /// Bytes this share holds.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.num_permits() * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn shares_wait_until_their_bytes_fit() {
        let budget = ReplyBudget::new(1024 * 1024);
        let first = budget.take(800 * 1024).await;
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.take(800 * 1024).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "two 800 KiB replies in 1 MiB");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the second goes once the first is done")
            .unwrap();
        assert_eq!(second.bytes(), 800 * 1024);
        assert_eq!(budget.available(), 224 * 1024);
    }

    #[tokio::test]
    async fn a_reply_larger_than_the_budget_goes_alone() {
        let budget = ReplyBudget::new(1024 * 1024);
        let huge = budget.take(5 * 1024 * 1024).await;
        assert_eq!(huge.bytes(), 1024 * 1024);
        assert_eq!(budget.available(), 0);
        drop(huge);
        assert_eq!(budget.available(), 1024 * 1024);
    }

    #[tokio::test]
    async fn a_share_shrinks_to_its_encoded_reply_and_gives_the_rest_back() {
        let budget = ReplyBudget::new(1024 * 1024);
        let mut share = budget.take(800 * 1024).await;
        budget.resize(&mut share, 3000).await;
        assert_eq!(share.bytes(), 3 * 1024, "rounded up to whole KiB");
        assert_eq!(budget.available(), 1021 * 1024);
    }

    #[tokio::test]
    async fn shares_that_grow_together_never_wait_on_each_other() {
        // Held while waiting, two halves each needing the whole would wait for ever.
        let budget = ReplyBudget::new(1024 * 1024);
        let halves = [budget.take(512 * 1024).await, budget.take(512 * 1024).await];
        let grown = halves.map(|mut share| {
            let budget = budget.clone();
            tokio::spawn(async move {
                budget.resize(&mut share, 1024 * 1024).await;
                share.bytes()
            })
        });
        for share in grown {
            let bytes = tokio::time::timeout(Duration::from_secs(1), share)
                .await
                .expect("each grows in turn")
                .unwrap();
            assert_eq!(bytes, 1024 * 1024);
        }
        assert_eq!(budget.available(), 1024 * 1024);
    }

    #[test]
    fn lists_expect_their_page_and_single_bookings_their_history() {
        let expect = |subject, data: Value| expected(subject, &data);
        assert_eq!(
            expect(s::BOOKING_FIND_BY_USER_ID, serde_json::json!({"userId": 1})),
            100 * LISTED_BOOKING_BYTES
        );
        assert_eq!(
            expect(
                s::BOOKING_FIND_BY_USER_ID,
                serde_json::json!({"userId": 1, "limit": 5})
            ),
            5 * LISTED_BOOKING_BYTES
        );
        assert_eq!(
            expect(s::BOOKING_SEARCH, serde_json::json!({"limit": 100_000})),
            100 * LISTED_BOOKING_BYTES,
            "a limit past the contract's is refused, never charged"
        );
        assert_eq!(
            expect(s::BOOKING_SEARCH, serde_json::json!({})),
            10 * LISTED_BOOKING_BYTES
        );
        assert_eq!(
            expect(s::BOOKING_CANCEL, serde_json::json!({"id": 1})),
            BOOKING_BYTES
        );
        assert_eq!(expect(s::BOOKING_SLOT_SYNC, serde_json::json!({})), 0);
    }
}
