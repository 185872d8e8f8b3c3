//! How a replica's own commits wake its outbox relay, in process. A `NOTIFY` in every booking
//! transaction would do the same across replicas, but PostgreSQL takes one database-wide lock to
//! queue a notification at commit and holds it across the commit's WAL flush, so every
//! notifying commit waits for the one before it: with the trigger, 16 concurrent creates spent
//! most of their time in `Lock:object` on `COMMIT`. The relay still `LISTEN`s, so anything else
//! (an operator's re-drive, a tool) wakes every replica's relay with `NOTIFY outbox_events`.

use tokio::sync::Notify;

/// One wake-up per relay loop; a wake while a loop is busy is kept for its next wait.
#[derive(Debug, Default)]
pub(crate) struct RelayWake {
    course: Notify,
    events: Notify,
}

impl RelayWake {
    /// Outbox rows may have been written (or made due): both loops look.
    pub(crate) fn rows_written(&self) {
        self.course.notify_one();
        self.events.notify_one();
    }

    /// Only course-service rows may have been written (a create's booking event is handed to
    /// the events loop, or that loop is asked to claim it, where it is written).
    pub(crate) fn course_rows_written(&self) {
        self.course.notify_one();
    }

    /// Only booking events were written due (not handed over): the events loop claims them.
    pub(crate) fn event_rows_written(&self) {
        self.events.notify_one();
    }

    /// Waits for the next wake of the loop serving course-service (`course`) or booking events.
    pub(crate) async fn wait(&self, course: bool) {
        if course {
            self.course.notified().await;
        } else {
            self.events.notified().await;
        }
    }
}
