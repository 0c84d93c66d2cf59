//! Long polling of the revocation feed (`GET /v1/revocations?after=…&wait=…`).
//!
//! A feed request whose cursor is current may be *held* until a bump is
//! announced, its `wait` passes, or the instance shuts down. Announcements
//! only wake; the answer is always read from the store afterwards, so a lost
//! announcement delays an answer (to the next safety re-read or the end of
//! `wait`) and never loses a bump.
//!
//! Announcements come from three places:
//!
//! - this instance's own bumps ([`crate::service::Authority::bump`]);
//! - the store's notification channel, for bumps made by other writers (on
//!   Redis: every bump script publishes its sequence number on
//!   `<prefix>feed:bumps`; see [`crate::store::Store::listen_for_bumps`]);
//!   when the channel comes back after an outage every held request re-reads
//!   (`reconnect`), since announcements may have been lost meanwhile;
//! - a coarse safety re-read of the store's high-water mark, once per
//!   `feed_recheck_ms` and only while requests are held: it catches writers
//!   that announce nothing (the CLI on SQLite) and notifications lost on a
//!   connection not yet known to be dead. One small read per instance per
//!   interval, whatever the number of held requests.
//!
//! Why no lost wake-up: a request subscribes to announcements *before* its
//! store read. A bump that read did not see commits after it, so its
//! announcement comes after the subscription and wakes the request; a bump
//! never announced is above every announced sequence number, so the next
//! safety re-read announces it.

use crate::metrics::Metrics;
use crate::store::Store;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// What ended a held feed request's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A bump was announced (by this instance or through the store's
    /// notification channel).
    Bump,
    /// The safety re-read found a bump nothing announced.
    Recheck,
    /// The notification channel came back after an outage.
    Reconnect,
    /// `wait` passed.
    Timeout,
    /// The instance is shutting down.
    Shutdown,
    /// Not held at all: the instance holds `feed_max_held` requests already.
    Limit,
}

impl Wake {
    pub const ALL: [Wake; 6] = [Wake::Bump, Wake::Recheck, Wake::Reconnect, Wake::Timeout, Wake::Shutdown, Wake::Limit];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Wake::Bump => "bump",
            Wake::Recheck => "recheck",
            Wake::Reconnect => "reconnect",
            Wake::Timeout => "timeout",
            Wake::Shutdown => "shutdown",
            Wake::Limit => "limit",
        }
    }
}

/// The state held requests watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    /// The highest sequence number announced so far.
    pub seq: u64,
    /// Who announced it.
    pub seq_cause: Wake,
    /// Raised when every held request must re-read whatever its cursor (the
    /// notification channel came back, the store was replaced).
    pub forced: u64,
    pub forced_cause: Wake,
}

/// Limits of long polling (config `feed_max_wait_ms`, `feed_max_held`,
/// `feed_recheck_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait; a larger `wait` is clamped to it. Zero: never hold.
    pub max_wait: Duration,
    /// Most requests held at once by this instance; more answer at once.
    pub max_held: usize,
    /// Interval of the safety re-read while requests are held.
    pub recheck: Duration,
}

/// The wake-up machinery of one authority instance.
pub struct FeedWaiter {
    announced: watch::Sender<Announced>,
    closed: watch::Sender<bool>,
    slots: Arc<Semaphore>,
    limits: Limits,
    metrics: Arc<Metrics>,
}

/// A held request's place among the `feed_max_held`; counted in the
/// `feed_held_requests` gauge until dropped (answered, or the client went
/// away and its request future was dropped).
pub struct Held {
    _slot: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.metrics.feed_held.fetch_sub(1, Ordering::Relaxed);
    }
}

impl FeedWaiter {
    pub fn new(limits: Limits, metrics: Arc<Metrics>) -> FeedWaiter {
        let initial =
            Announced { seq: 0, seq_cause: Wake::Bump, forced: 0, forced_cause: Wake::Reconnect };
        FeedWaiter {
            announced: watch::Sender::new(initial),
            closed: watch::Sender::new(false),
            slots: Arc::new(Semaphore::new(limits.max_held.min(Semaphore::MAX_PERMITS))),
            limits,
            metrics,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Announcements from now on. Subscribe *before* reading the store.
    pub fn subscribe(&self) -> watch::Receiver<Announced> {
        self.announced.subscribe()
    }

    /// A bump with sequence number `seq` is visible in the store. Wakes the
    /// held requests unless a bump at least as new was announced already.
    pub fn announce(&self, seq: u64, cause: Wake) {
        self.announced.send_if_modified(|a| {
            if seq > a.seq {
                a.seq = seq;
                a.seq_cause = cause;
                true
            } else {
                false
            }
        });
    }

    /// Wakes every held request to re-read, whatever its cursor.
    pub fn force(&self, cause: Wake) {
        self.announced.send_modify(|a| {
            a.forced = a.forced.wrapping_add(1);
            a.forced_cause = cause;
        });
    }

    /// The highest sequence number announced so far.
    pub fn announced_seq(&self) -> u64 {
        self.announced.borrow().seq
    }

    /// Takes a place among the held requests; `None` when all are taken.
    pub fn try_hold(&self) -> Option<Held> {
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        self.metrics.feed_held.fetch_add(1, Ordering::Relaxed);
        Some(Held { _slot: slot, metrics: self.metrics.clone() })
    }

    /// Requests held right now.
    pub fn held(&self) -> u64 {
        self.metrics.feed_held.load(Ordering::Relaxed)
    }

    /// Shutdown: releases every held request now and holds none from now on.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves once [`FeedWaiter::close`] was called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.subscribe();
        async move {
            // Err: the sender is gone, which also means no more holding.
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Starts the background parts: the safety re-read and the store's
    /// notification channel. Reads the high-water mark once first, so the
    /// first re-read does not wake anything for bumps made before start.
    pub async fn start(self: &Arc<Self>, store: Arc<dyn Store>) {
        if let Ok(page) = store.feed(Some(u64::MAX), crate::util::now_secs()).await {
            // Nothing is held yet, so raising the mark silently loses no wake-up.
            self.announced.send_modify(|a| a.seq = a.seq.max(page.high_water));
        }
        // Down until the listener reports its first subscription.
        self.metrics.feed_listener_up.store(0, Ordering::Relaxed);
        if !store.listen_for_bumps(self.clone()) {
            self.metrics.feed_listener_up.store(-1, Ordering::Relaxed);
        }
        let waiter = self.clone();
        tokio::spawn(async move { waiter.recheck_loop(store).await });
    }

    /// The safety re-read: while requests are held, reads the store's
    /// high-water mark every `recheck` and announces it when it is above
    /// everything announced (a bump nothing told of), or wakes everyone when
    /// the store was replaced.
    async fn recheck_loop(self: Arc<Self>, store: Arc<dyn Store>) {
        let closed = self.closed();
        tokio::pin!(closed);
        let mut store_id: Option<String> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.limits.recheck) => {}
                _ = &mut closed => return,
            }
            if self.held() == 0 {
                continue;
            }
            match store.feed(Some(u64::MAX), crate::util::now_secs()).await {
                Ok(page) => {
                    if store_id.as_ref().is_some_and(|id| *id != page.identity.store_id) {
                        self.force(Wake::Recheck);
                    }
                    store_id = Some(page.identity.store_id);
                    self.announce(page.high_water, Wake::Recheck);
                }
                Err(e) => tracing::debug!(error = %e, "feed safety re-read failed"),
            }
        }
    }

    /// The notification channel is subscribed (`true`) or lost.
    pub fn listener_up(&self, up: bool) {
        self.metrics.feed_listener_up.store(i64::from(up), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(max_held: usize) -> FeedWaiter {
        let limits = Limits { max_wait: Duration::from_secs(1), max_held, recheck: Duration::from_secs(1) };
        FeedWaiter::new(limits, Arc::new(Metrics::default()))
    }

    #[tokio::test]
    async fn announcements_wake_only_when_newer_and_forced_always() {
        let w = waiter(1);
        let mut rx = w.subscribe();
        w.announce(10, Wake::Bump);
        assert!(rx.has_changed().expect("open"), "a newer sequence wakes");
        assert_eq!(rx.borrow_and_update().seq, 10);
        // The same bump through another path (local, then pub/sub): no second wake.
        w.announce(10, Wake::Bump);
        w.announce(7, Wake::Recheck);
        assert!(!rx.has_changed().expect("open"), "an old or repeated sequence does not wake");
        w.force(Wake::Reconnect);
        assert!(rx.has_changed().expect("open"), "a forced wake always wakes");
        let a = *rx.borrow_and_update();
        assert_eq!((a.seq, a.forced, a.forced_cause), (10, 1, Wake::Reconnect));
        assert_eq!(w.announced_seq(), 10);
    }

    #[tokio::test]
    async fn held_places_are_bounded_and_counted() {
        let w = waiter(2);
        let a = w.try_hold().expect("first");
        let b = w.try_hold().expect("second");
        assert!(w.try_hold().is_none(), "the third is refused");
        assert_eq!(w.held(), 2);
        drop(a);
        assert_eq!(w.held(), 1);
        let _c = w.try_hold().expect("a place freed by a dropped request is reused");
        drop(b);
        assert_eq!(w.held(), 1);
        assert!(waiter(0).try_hold().is_none(), "feed_max_held = 0 never holds");
    }

    #[tokio::test]
    async fn close_releases_waiters_and_is_sticky() {
        let w = waiter(1);
        let closed = w.closed();
        assert!(!w.is_closed());
        w.close();
        tokio::time::timeout(Duration::from_secs(1), closed).await.expect("released");
        assert!(w.is_closed());
        tokio::time::timeout(Duration::from_secs(1), w.closed()).await.expect("a later waiter is released at once");
    }
}
