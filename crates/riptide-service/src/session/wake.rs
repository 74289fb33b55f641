//! Which streams a checkpoint event wakes: an index from bucket and parameter lookup to the
//! sessions that have them, so a commit costs nothing for the streams it does not concern.
//!
//! Each session still receives every event on its own bus receiver (that keeps their order,
//! which [`super::follow`] relies on); it just does not wait on it. It waits on its
//! [`Registration`], which one dispatcher task notifies for the events that touch the
//! session's interest (or every event, while the session has none yet or a write checkpoint
//! pending). Woken, the session drains its receiver and judges each event (`BusView` in
//! `driver.rs`). Right after changing its interest it drains once without waiting to be woken:
//! the events dispatched under the old interest may concern the new one.
//! A session not woken for more events than the bus holds sees `Lagged` at its next wake and
//! reads storage, as any lagging receiver.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use riptide_storage::CheckpointEvent;
use tokio::sync::{Notify, broadcast};

/// What wakes a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interest {
    /// Every event.
    Everything,
    /// Events that changed one of these buckets or lookups.
    Some {
        buckets: Vec<String>,
        lookups: Vec<Vec<u8>>,
    },
}

#[derive(Default)]
struct Inner {
    by_bucket: HashMap<String, HashSet<u64>>,
    by_lookup: HashMap<Vec<u8>, HashSet<u64>>,
    everything: HashSet<u64>,
    sessions: HashMap<u64, (Arc<Notify>, Interest)>,
}

/// The index, shared by the sessions of one service.
#[derive(Default)]
pub struct WakeIndex {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    dispatcher: OnceLock<()>,
}

impl std::fmt::Debug for WakeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeIndex").finish_non_exhaustive()
    }
}

impl WakeIndex {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held; a poisoned lock still holds a usable index.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a session (interested in everything until told otherwise). The first
    /// registration starts the dispatcher on `bus` (inside a tokio runtime).
    pub fn register(self: &Arc<Self>, bus: &broadcast::Sender<CheckpointEvent>) -> Registration {
        self.dispatcher.get_or_init(|| {
            let index = Arc::downgrade(self);
            let mut rx = bus.subscribe();
            tokio::spawn(async move {
                loop {
                    let event = rx.recv().await;
                    let Some(index) = index.upgrade() else {
                        return;
                    };
                    match event {
                        Ok(event) => index.wake(&event),
                        Err(broadcast::error::RecvError::Lagged(_)) => index.wake_all(),
                        Err(broadcast::error::RecvError::Closed) => {
                            index.wake_all();
                            return;
                        }
                    }
                }
            });
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let mut inner = self.lock();
        inner.everything.insert(id);
        inner
            .sessions
            .insert(id, (notify.clone(), Interest::Everything));
        drop(inner);
        Registration {
            index: self.clone(),
            id,
            notify,
        }
    }

    /// Wakes the sessions `event` concerns.
    pub fn wake(&self, event: &CheckpointEvent) {
        let inner = self.lock();
        let mut woken: HashSet<u64> = inner.everything.clone();
        for b in &event.changed_buckets {
            if let Some(ids) = inner.by_bucket.get(b) {
                woken.extend(ids);
            }
        }
        if event.all_lookups_changed {
            for ids in inner.by_lookup.values() {
                woken.extend(ids);
            }
        } else {
            for l in &event.changed_lookups {
                if let Some(ids) = inner.by_lookup.get(l) {
                    woken.extend(ids);
                }
            }
        }
        for id in woken {
            if let Some((notify, _)) = inner.sessions.get(&id) {
                notify.notify_one();
            }
        }
    }

    /// Wakes every session (the dispatcher lagged: it does not know what it missed).
    pub fn wake_all(&self) {
        for (notify, _) in self.lock().sessions.values() {
            notify.notify_one();
        }
    }

    /// Sessions registered now.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn set(&self, id: u64, interest: Interest) {
        let mut inner = self.lock();
        let Some((notify, old)) = inner.sessions.remove(&id) else {
            return;
        };
        if old == interest {
            inner.sessions.insert(id, (notify, old));
            return;
        }
        inner.forget(id, &old);
        match &interest {
            Interest::Everything => {
                inner.everything.insert(id);
            }
            Interest::Some { buckets, lookups } => {
                for b in buckets {
                    inner.by_bucket.entry(b.clone()).or_default().insert(id);
                }
                for l in lookups {
                    inner.by_lookup.entry(l.clone()).or_default().insert(id);
                }
            }
        }
        inner.sessions.insert(id, (notify, interest));
    }

    fn unregister(&self, id: u64) {
        let mut inner = self.lock();
        if let Some((_, old)) = inner.sessions.remove(&id) {
            inner.forget(id, &old);
        }
    }
}

impl Inner {
    fn forget(&mut self, id: u64, interest: &Interest) {
        match interest {
            Interest::Everything => {
                self.everything.remove(&id);
            }
            Interest::Some { buckets, lookups } => {
                for b in buckets {
                    if let Some(ids) = self.by_bucket.get_mut(b) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            self.by_bucket.remove(b);
                        }
                    }
                }
                for l in lookups {
                    if let Some(ids) = self.by_lookup.get_mut(l) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            self.by_lookup.remove(l);
                        }
                    }
                }
            }
        }
    }
}

/// A session's entry in the index; removed when dropped.
#[derive(Debug)]
pub struct Registration {
    index: Arc<WakeIndex>,
    id: u64,
    notify: Arc<Notify>,
}

impl Registration {
    /// What wakes this session from now on.
    pub fn set_interest(&self, interest: Interest) {
        self.index.set(self.id, interest);
    }

    /// Resolves when an event may concern this session (or at once if one came since the last
    /// wake).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.index.unregister(self.id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use riptide_protocol::{Lsn, OpId};
    use riptide_storage::StorageCheckpoint;

    use super::*;

    fn event(buckets: &[&str], lookups: &[&[u8]]) -> CheckpointEvent {
        CheckpointEvent {
            deployment: 1,
            checkpoint: StorageCheckpoint {
                op_id: OpId(1),
                lsn: Lsn(1),
            },
            previous: OpId(0),
            changed_buckets: buckets.iter().map(|b| (*b).to_owned()).collect(),
            changed_lookups: lookups.iter().map(|l| l.to_vec()).collect(),
            all_lookups_changed: false,
            ops: None,
        }
    }

    #[tokio::test]
    async fn unknown_lookups_wake_every_session_with_lookups() {
        let (bus, _) = broadcast::channel(16);
        let index = Arc::new(WakeIndex::default());
        let with = index.register(&bus);
        let without = index.register(&bus);
        with.set_interest(Interest::Some {
            buckets: vec!["a".into()],
            lookups: vec![b"la".to_vec()],
        });
        without.set_interest(Interest::Some {
            buckets: vec!["b".into()],
            lookups: Vec::new(),
        });
        let mut e = event(&["x"], &[]);
        e.all_lookups_changed = true;
        index.wake(&e);
        assert!(woken(&with).await);
        assert!(!woken(&without).await);
    }

    async fn woken(r: &Registration) -> bool {
        tokio::time::timeout(Duration::from_millis(50), r.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn wakes_only_the_sessions_an_event_concerns() {
        let (bus, _) = broadcast::channel(16);
        let index = Arc::new(WakeIndex::default());
        let a = index.register(&bus);
        let b = index.register(&bus);
        let all = index.register(&bus);
        a.set_interest(Interest::Some {
            buckets: vec!["a".into()],
            lookups: vec![b"la".to_vec()],
        });
        b.set_interest(Interest::Some {
            buckets: vec!["b".into()],
            lookups: Vec::new(),
        });
        index.wake(&event(&["a"], &[]));
        assert!(woken(&a).await);
        assert!(!woken(&b).await);
        assert!(woken(&all).await);
        index.wake(&event(&["x"], &[b"la"]));
        assert!(woken(&a).await);
        assert!(!woken(&b).await);
        // Through the bus and the dispatcher.
        bus.send(event(&["b"], &[])).unwrap();
        assert!(woken(&b).await);
        assert!(!woken(&a).await);
        // A changed interest replaces the old one.
        a.set_interest(Interest::Some {
            buckets: vec!["c".into()],
            lookups: Vec::new(),
        });
        index.wake(&event(&["a"], &[b"la"]));
        assert!(!woken(&a).await);
        index.wake(&event(&["c"], &[]));
        assert!(woken(&a).await);
        drop(a);
        drop(b);
        drop(all);
        assert!(index.is_empty());
        assert!(index.lock().by_bucket.is_empty() && index.lock().everything.is_empty());
    }
}
