//! `booking.game.sync` and `booking.gameTimeSlot.sync`: course-service pushes its games and slots
//! into the local caches. Course-owned fields are updated; the local booked count is never lowered
//! (see `cache.rs`).

use contracts::sync::{GameSync, GameTimeSlotSync};
use contracts::{Success, SyncAck};

use crate::app::App;
use crate::cache::{self, SlotFacts};
use crate::error::Result;

/// `booking.game.sync`.
pub(crate) async fn game(app: &App, req: GameSync) -> Result<Success<SyncAck>> {
    cache::upsert_game(&app.pool, &(&req).into()).await?;
    tracing::info!("Game cache synced for gameId: {}", req.game_id);
    Ok(Success::new(SyncAck { synced: true }))
}

/// `booking.gameTimeSlot.sync`.
pub(crate) async fn slot(app: &App, req: GameTimeSlotSync) -> Result<Success<SyncAck>> {
    cache::upsert_slot(&app.pool, &SlotFacts::from(&req)).await?;
    tracing::info!(
        "GameTimeSlotCache synced for gameTimeSlotId: {}",
        req.game_time_slot_id
    );
    Ok(Success::new(SyncAck { synced: true }))
}
