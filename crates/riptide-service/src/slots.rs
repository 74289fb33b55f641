//! Slots of sync streams: one of [`Limits::max_concurrent_connections`](crate::Limits) for the
//! process and one of [`Limits::max_connections_per_user`](crate::Limits) for the stream's user
//! (`sub`), held together by a [`StreamSlot`] for as long as the stream (HTTP) or the
//! authenticated WebSocket connection lives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::metrics::{ConnectionRefusal, ServiceMetrics};

/// Open streams per user.
#[derive(Debug)]
pub(crate) struct UserSlots {
    limit: usize,
    open: Mutex<HashMap<String, usize>>,
}

impl UserSlots {
    pub fn new(limit: usize) -> UserSlots {
        UserSlots {
            limit,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn try_take(self: &Arc<Self>, user: &str) -> Option<UserSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(user.to_owned()).or_insert(0);
        if *n >= self.limit {
            if *n == 0 {
                open.remove(user);
            }
            return None;
        }
        *n += 1;
        Some(UserSlot {
            slots: self.clone(),
            user: user.to_owned(),
        })
    }

    /// Streams `user` has open now.
    #[cfg(test)]
    pub fn open(&self, user: &str) -> usize {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(user)
            .copied()
            .unwrap_or(0)
    }
}

/// One user's slot; given back when dropped.
#[derive(Debug)]
struct UserSlot {
    slots: Arc<UserSlots>,
    user: String,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// A stream's slots in the process and for its user.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    _process: OwnedSemaphorePermit,
    _user: UserSlot,
}

/// Takes a process slot and a slot of `user`, or says which cap refused (`PSYNC_S2304`).
pub(crate) fn take_stream_slot(
    streams: &Arc<Semaphore>,
    users: &Arc<UserSlots>,
    metrics: &ServiceMetrics,
    user: &str,
) -> Result<StreamSlot, ApiError> {
    let Some(user_slot) = users.try_take(user) else {
        metrics.connection_refused(ConnectionRefusal::User);
        return Err(ApiError::TooManyUserConnections { limit: users.limit });
    };
    let Ok(process) = streams.clone().try_acquire_owned() else {
        metrics.connection_refused(ConnectionRefusal::Streams);
        return Err(ApiError::TooManyConnections);
    };
    Ok(StreamSlot {
        _process: process,
        _user: user_slot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_and_process_caps() {
        let streams = Arc::new(Semaphore::new(3));
        let users = Arc::new(UserSlots::new(2));
        let metrics = ServiceMetrics::new();
        let a1 = take_stream_slot(&streams, &users, &metrics, "a").unwrap();
        let _a2 = take_stream_slot(&streams, &users, &metrics, "a").unwrap();
        assert!(matches!(
            take_stream_slot(&streams, &users, &metrics, "a"),
            Err(ApiError::TooManyUserConnections { limit: 2 })
        ));
        let _b1 = take_stream_slot(&streams, &users, &metrics, "b").unwrap();
        assert!(matches!(
            take_stream_slot(&streams, &users, &metrics, "c"),
            Err(ApiError::TooManyConnections)
        ));
        // A refused process slot gave the user slot back.
        assert_eq!(users.open("c"), 0);
        drop(a1);
        assert_eq!(users.open("a"), 1);
        assert!(take_stream_slot(&streams, &users, &metrics, "a").is_ok());
    }
}
