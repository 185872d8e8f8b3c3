//! The local copies of course-service's games and slots: upserts from sync messages and from
//! cache-miss fetches, and the read-through slot lookup of `booking.create` (one course-service
//! fetch per slot at a time, a stale row when course-service is away).
//!
//! Course-service owns capacity, price, times and status; booking-service owns the count of seats
//! its bookings hold. Upserts therefore never write `booked_players` from course-service's view
//! (the reference did, and a late or stale sync could lower the local count and oversell): a new
//! row counts the local bookings, an existing row keeps its count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use contracts::course::{Game, SlotStatus, TimeSlot};
use contracts::sync::{GameSync, GameTimeSlotSync};
use sqlx::PgExecutor;

use crate::course::{CourseClient, CourseError};
use crate::error::{Result, ServiceError, StepExt as _};
use crate::metrics::Metrics;
use crate::store::{now, slot_state_sql, SlotRow};

mod copies;

pub(crate) use copies::{SlotCopies, Ticket};

/// One lock per slot being fetched from course-service, so concurrent misses make one call.
#[derive(Debug, Default)]
pub(crate) struct SlotFetches {
    locks: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
}

impl SlotFetches {
    /// Takes the fetch lock of `slot_id`; the guard releases it and forgets idle locks.
    async fn lock(&self, slot_id: i32) -> FetchGuard<'_> {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(slot_id).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        FetchGuard {
            fetches: self,
            slot_id,
            _guard: guard,
            lock,
        }
    }
}

/// Holds a slot's fetch lock.
struct FetchGuard<'a> {
    fetches: &'a SlotFetches,
    slot_id: i32,
    _guard: tokio::sync::OwnedMutexGuard<()>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for FetchGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.fetches.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Three references: the map's, ours, and the guard's (dropped after this body runs).
        // Nobody else waits: forget the lock.
        if Arc::strong_count(&self.lock) <= 3 {
            map.remove(&self.slot_id);
        }
    }
}

/// What the read-through slot lookup works with (the service's `App` lends it).
pub(crate) struct ReadThrough<'a> {
    /// The cache tables.
    pub(crate) pool: &'a sqlx::PgPool,
    /// Where missing or old slots come from.
    pub(crate) course: &'a CourseClient,
    /// One fetch per slot at a time.
    pub(crate) fetches: &'a SlotFetches,
    /// The replica's copies of slot rows, and their coalesced reads.
    pub(crate) copies: &'a SlotCopies,
    /// Hits, misses, stale fallbacks.
    pub(crate) metrics: &'a Metrics,
    /// How old a row may be and still answer without asking course-service.
    pub(crate) ttl: std::time::Duration,
}

/// A slot row found for a create.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The row.
    pub(crate) row: SlotRow,
    /// Whether it was read during this request (a copy may only say yes).
    pub(crate) read: bool,
}

impl ReadThrough<'_> {
    /// Finds a slot for a create: the replica's copy when `copy` allows and it is fresh, else
    /// the cache table as read after `since`, fetching from course-service when the row is
    /// missing or older than the TTL. A refusal is `BUS_002`, an outage falls back to a stale
    /// row or is `SYS_004`.
    pub(crate) async fn resolve(
        &self,
        slot_id: i32,
        since: Ticket,
        copy: bool,
    ) -> Result<Resolved> {
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        let fresh = |row: &SlotRow| now() - row.last_sync_at <= ttl;
        if copy {
            if let Some(row) = self.copies.copy(slot_id).filter(|r| fresh(r)) {
                self.metrics.cache_hits.inc();
                return Ok(Resolved { row, read: false });
            }
        }
        let cached = self.copies.read(self.pool, slot_id, since).await?;
        if let Some(row) = cached.as_ref().filter(|r| fresh(r)) {
            self.metrics.cache_hits.inc();
            return Ok(Resolved {
                row: row.clone(),
                read: true,
            });
        }
        self.metrics.cache_misses.inc();
        tracing::info!("Slot cache miss for gameTimeSlotId: {slot_id}");
        // One fetch per slot at a time: later callers wait, then find the row fresh (read after
        // they got the lock, so after the fetch they waited for).
        let _guard = self.fetches.lock(slot_id).await;
        let locked = self.copies.ticket();
        if let Some(row) = self
            .copies
            .read(self.pool, slot_id, locked)
            .await?
            .filter(|r| fresh(r))
        {
            return Ok(Resolved { row, read: true });
        }
        let fetched = async {
            let slot = self.course.time_slot(slot_id).await?;
            let game = self.course.game(slot.game_id).await.ok();
            Ok::<_, CourseError>((slot, game))
        }
        .await;
        match fetched {
            Ok((slot, game)) => {
                let mut tx = crate::store::begin(self.pool)
                    .await
                    .step("starting the cache refresh")?;
                if let Some(game) = &game {
                    upsert_game(&mut *tx, &game.into()).await?;
                }
                upsert_slot(&mut *tx, &SlotFacts::from(&slot)).await?;
                tx.commit().await.step("committing the cache refresh")?;
                tracing::info!("GameTimeSlotCache synced for gameTimeSlotId: {slot_id}");
                let upserted = self.copies.ticket();
                let row = self
                    .copies
                    .read(self.pool, slot_id, upserted)
                    .await?
                    .ok_or_else(|| {
                        ServiceError::from(anyhow::anyhow!(
                            "slot {slot_id} vanished right after its upsert"
                        ))
                    })?;
                Ok(Resolved { row, read: true })
            }
            Err(CourseError::Refused(message)) => Err(ServiceError::NotFound(format!(
                "Game time slot {slot_id} not found: course-service said \"{message}\""
            ))),
            Err(e) => match cached {
                // A stale row is better than no booking while course-service is away.
                Some(stale) => {
                    tracing::warn!(slot_id, error = %e, "course-service unavailable; using the stale cache row");
                    self.metrics.stale_fallbacks.inc();
                    Ok(Resolved {
                        row: stale,
                        read: true,
                    })
                }
                None => Err(ServiceError::Unavailable(e.to_string())),
            },
        }
    }
}

/// The fields of a slot that course-service owns.
#[derive(Debug, Clone)]
pub(crate) struct SlotFacts {
    pub(crate) slot_id: i32,
    pub(crate) game_id: i32,
    pub(crate) game_name: Option<String>,
    pub(crate) game_code: Option<String>,
    pub(crate) front_nine_course_name: Option<String>,
    pub(crate) back_nine_course_name: Option<String>,
    pub(crate) club_id: Option<i32>,
    pub(crate) club_name: Option<String>,
    pub(crate) date: NaiveDate,
    pub(crate) start_time: String,
    pub(crate) end_time: String,
    pub(crate) max_players: i32,
    pub(crate) price: i64,
    pub(crate) is_premium: bool,
    /// Course-service's status; only CLOSED matters here, fullness is computed locally.
    pub(crate) closed: bool,
}

impl From<&TimeSlot> for SlotFacts {
    fn from(s: &TimeSlot) -> Self {
        Self {
            slot_id: s.id,
            game_id: s.game_id,
            game_name: Some(s.game_name.clone()),
            game_code: Some(s.game_code.clone()),
            front_nine_course_name: Some(s.front_nine_course_name.clone()),
            back_nine_course_name: Some(s.back_nine_course_name.clone()),
            club_id: s.club_id,
            club_name: Some(s.club_name.clone()),
            date: s.date,
            start_time: s.start_time.clone(),
            end_time: s.end_time.clone(),
            max_players: s.max_players,
            price: s.price.get(),
            is_premium: s.is_premium,
            closed: s.status == SlotStatus::Closed || !s.is_active,
        }
    }
}

impl From<&GameTimeSlotSync> for SlotFacts {
    fn from(s: &GameTimeSlotSync) -> Self {
        Self {
            slot_id: s.game_time_slot_id,
            game_id: s.game_id,
            game_name: s.game_name.clone(),
            game_code: s.game_code.clone(),
            front_nine_course_name: s.front_nine_course_name.clone(),
            back_nine_course_name: s.back_nine_course_name.clone(),
            club_id: s.club_id,
            club_name: s.club_name.clone(),
            date: s.date,
            start_time: s.start_time.clone(),
            end_time: s.end_time.clone(),
            max_players: s.max_players,
            price: s.price.get(),
            is_premium: s.is_premium,
            closed: s.status == SlotStatus::Closed,
        }
    }
}

/// Inserts or refreshes a slot's course-owned fields, keeping the local booked count.
pub(crate) async fn upsert_slot(db: impl PgExecutor<'_>, f: &SlotFacts) -> Result<()> {
    let sql = concat!(
        "INSERT INTO game_time_slot_cache AS s (game_time_slot_id, game_id, game_name, game_code, ",
        "front_nine_course_name, back_nine_course_name, club_id, club_name, date, start_time, end_time, ",
        "max_players, booked_players, available_players, is_available, price, is_premium, status, ",
        "last_sync_at, created_at, updated_at) ",
        "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, n.booked, GREATEST($12 - n.booked, 0), ",
        "(NOT $15 AND $12 - n.booked > 0), $13, $14, ",
        "CASE WHEN $15 THEN 'CLOSED' WHEN $12 - n.booked > 0 THEN 'AVAILABLE' ELSE 'FULLY_BOOKED' END, ",
        "$16, $16, $16 ",
        "FROM (SELECT COALESCE(SUM(player_count), 0)::int AS booked FROM bookings ",
        "      WHERE game_time_slot_id = $1 AND status IN ('PENDING', 'CONFIRMED')) n ",
        "ON CONFLICT (game_time_slot_id) DO UPDATE SET game_id = EXCLUDED.game_id, ",
        "game_name = COALESCE(EXCLUDED.game_name, s.game_name), game_code = COALESCE(EXCLUDED.game_code, s.game_code), ",
        "front_nine_course_name = COALESCE(EXCLUDED.front_nine_course_name, s.front_nine_course_name), ",
        "back_nine_course_name = COALESCE(EXCLUDED.back_nine_course_name, s.back_nine_course_name), ",
        "club_id = COALESCE(EXCLUDED.club_id, s.club_id), club_name = COALESCE(EXCLUDED.club_name, s.club_name), ",
        "date = EXCLUDED.date, start_time = EXCLUDED.start_time, end_time = EXCLUDED.end_time, ",
        "max_players = EXCLUDED.max_players, price = EXCLUDED.price, is_premium = EXCLUDED.is_premium, ",
        "last_sync_at = EXCLUDED.last_sync_at, updated_at = EXCLUDED.updated_at, ",
        slot_state_sql!("EXCLUDED.max_players", "s.booked_players", "$15")
    );
    sqlx::query(sql)
        .bind(f.slot_id)
        .bind(f.game_id)
        .bind(&f.game_name)
        .bind(&f.game_code)
        .bind(&f.front_nine_course_name)
        .bind(&f.back_nine_course_name)
        .bind(f.club_id)
        .bind(&f.club_name)
        .bind(f.date)
        .bind(&f.start_time)
        .bind(&f.end_time)
        .bind(f.max_players)
        .bind(f.price)
        .bind(f.is_premium)
        .bind(f.closed)
        .bind(now())
        .execute(db)
        .await
        .step("caching the slot")?;
    Ok(())
}

/// A game's fields as both sync messages and `games.get` replies carry them.
pub(crate) struct GameFacts<'a> {
    pub(crate) game_id: i32,
    pub(crate) name: &'a str,
    pub(crate) code: &'a str,
    pub(crate) description: Option<&'a str>,
    pub(crate) front_nine_course_id: i32,
    pub(crate) front_nine_course_name: &'a str,
    pub(crate) back_nine_course_id: i32,
    pub(crate) back_nine_course_name: &'a str,
    pub(crate) total_holes: i32,
    pub(crate) estimated_duration: i32,
    pub(crate) break_duration: i32,
    pub(crate) max_players: i32,
    pub(crate) base_price: i64,
    pub(crate) weekend_price: Option<i64>,
    pub(crate) holiday_price: Option<i64>,
    pub(crate) club_id: i32,
    pub(crate) club_name: &'a str,
    pub(crate) is_active: bool,
}

/// `GameFacts` borrowed from a game message: a `games.get` reply and a `booking.game.sync`
/// carry the same fields (the id under another name), so one mapping serves both.
macro_rules! game_facts {
    ($g:expr, $id:ident) => {
        GameFacts {
            game_id: $g.$id,
            name: &$g.name,
            code: &$g.code,
            description: $g.description.as_deref(),
            front_nine_course_id: $g.front_nine_course_id,
            front_nine_course_name: &$g.front_nine_course_name,
            back_nine_course_id: $g.back_nine_course_id,
            back_nine_course_name: &$g.back_nine_course_name,
            total_holes: $g.total_holes,
            estimated_duration: $g.estimated_duration,
            break_duration: $g.break_duration,
            max_players: $g.max_players,
            base_price: $g.base_price.get(),
            weekend_price: $g.weekend_price.map(|w| w.get()),
            holiday_price: $g.holiday_price.map(|w| w.get()),
            club_id: $g.club_id,
            club_name: &$g.club_name,
            is_active: $g.is_active,
        }
    };
}

impl<'a> From<&'a GameSync> for GameFacts<'a> {
    fn from(g: &'a GameSync) -> Self {
        game_facts!(g, game_id)
    }
}

impl<'a> From<&'a Game> for GameFacts<'a> {
    fn from(g: &'a Game) -> Self {
        game_facts!(g, id)
    }
}

/// Inserts or refreshes a game.
pub(crate) async fn upsert_game(db: impl PgExecutor<'_>, g: &GameFacts<'_>) -> Result<()> {
    sqlx::query(concat!(
        "INSERT INTO game_cache (game_id, name, code, description, front_nine_course_id, front_nine_course_name, ",
        "back_nine_course_id, back_nine_course_name, total_holes, estimated_duration, break_duration, max_players, ",
        "base_price, weekend_price, holiday_price, club_id, club_name, is_active, last_sync_at, created_at, updated_at) ",
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19, $19) ",
        "ON CONFLICT (game_id) DO UPDATE SET name = EXCLUDED.name, code = EXCLUDED.code, ",
        "description = EXCLUDED.description, front_nine_course_id = EXCLUDED.front_nine_course_id, ",
        "front_nine_course_name = EXCLUDED.front_nine_course_name, back_nine_course_id = EXCLUDED.back_nine_course_id, ",
        "back_nine_course_name = EXCLUDED.back_nine_course_name, total_holes = EXCLUDED.total_holes, ",
        "estimated_duration = EXCLUDED.estimated_duration, break_duration = EXCLUDED.break_duration, ",
        "max_players = EXCLUDED.max_players, base_price = EXCLUDED.base_price, weekend_price = EXCLUDED.weekend_price, ",
        "holiday_price = EXCLUDED.holiday_price, club_id = EXCLUDED.club_id, club_name = EXCLUDED.club_name, ",
        "is_active = EXCLUDED.is_active, last_sync_at = EXCLUDED.last_sync_at, updated_at = EXCLUDED.updated_at"
    ))
    .bind(g.game_id)
    .bind(g.name)
    .bind(g.code)
    .bind(g.description)
    .bind(g.front_nine_course_id)
    .bind(g.front_nine_course_name)
    .bind(g.back_nine_course_id)
    .bind(g.back_nine_course_name)
    .bind(g.total_holes)
    .bind(g.estimated_duration)
    .bind(g.break_duration)
    .bind(g.max_players)
    .bind(g.base_price)
    .bind(g.weekend_price)
    .bind(g.holiday_price)
    .bind(g.club_id)
    .bind(g.club_name)
    .bind(g.is_active)
    .bind(now())
    .execute(db)
    .await
    .step("caching the game")?;
    Ok(())
}
