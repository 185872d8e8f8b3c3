//! A request's write ticket: whether the request's write has gone on the wire, decided once, so
//! the answer its caller gets at the deadline is true. The server gives every request a ticket
//! (a task-local); the code that sends a write takes it ([`Ticket::start_write`]); the server,
//! when the deadline passes first, abandons it ([`Ticket::abandon`]). Exactly one of the two
//! wins: an abandoned request is never written afterwards (its queued create is dropped), and a
//! request whose write started is answered "outcome unknown", never "not applied".

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const OPEN: u8 = 0;
const WRITING: u8 = 1;
const ABANDONED: u8 = 2;

/// One request's ticket.
#[derive(Debug, Default)]
pub(crate) struct Ticket(AtomicU8);

tokio::task_local! {
    static CURRENT: Arc<Ticket>;
}

impl Ticket {
    /// Marks the write as started; false when the caller has already been told "not applied"
    /// (the write must then not happen).
    pub(crate) fn start_write(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, WRITING, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(now) => now == WRITING,
        }
    }

    /// Takes back a write that turned out to send nothing that could commit (a one-statement
    /// write that wrote no row): the request is again one whose deadline means "not applied".
    pub(crate) fn reopen(&self) {
        let _ = self
            .0
            .compare_exchange(WRITING, OPEN, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Gives the request up at its deadline; true when no write had started (none will now),
    /// false when one is on the wire and its outcome is unknown.
    pub(crate) fn abandon(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(now) => now == ABANDONED,
        }
    }

    /// Whether the write has started (and so its outcome, if unanswered, is unknown).
    pub(crate) fn is_writing(&self) -> bool {
        self.0.load(Ordering::SeqCst) == WRITING
    }

    /// The ticket of the request this task serves; a fresh one (that no deadline abandons)
    /// outside a request.
    pub(crate) fn current() -> Arc<Ticket> {
        CURRENT
            .try_with(Arc::clone)
            .unwrap_or_else(|_| Arc::new(Ticket::default()))
    }

    /// Runs `work` as the request holding `ticket`.
    pub(crate) async fn scope<F: std::future::Future>(ticket: Arc<Ticket>, work: F) -> F::Output {
        CURRENT.scope(ticket, work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_and_the_deadline_are_decided_once() {
        let t = Ticket::default();
        assert!(t.start_write());
        assert!(t.start_write(), "a write may take its ticket twice");
        assert!(!t.abandon(), "a started write is not abandoned");
        let t = Ticket::default();
        assert!(t.abandon());
        assert!(!t.start_write(), "an abandoned request is never written");
    }

    #[tokio::test]
    async fn a_request_sees_its_own_ticket() {
        let ticket = Arc::new(Ticket::default());
        let seen = Ticket::scope(ticket.clone(), async { Ticket::current() }).await;
        assert!(Arc::ptr_eq(&ticket, &seen));
        assert!(!Arc::ptr_eq(&ticket, &Ticket::current()));
    }
}
