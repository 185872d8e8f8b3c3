//! The read handlers: one booking by id or number, a user's bookings, search, and a game's slots
//! on a day.

use chrono::NaiveTime;
use contracts::booking::{
    AvailabilityRequest, BookingResponse, FindById, FindByNumber, FindByUserId, SearchBookings,
    SlotAvailability, SortBy, SortOrder, TimeFilter,
};
use contracts::validate::limits;
use contracts::{Page, Success};
use sqlx::{Postgres, QueryBuilder};

use crate::app::App;
use crate::error::{Result, ServiceError, StepExt as _};
use crate::handlers::fit;
use crate::store::{self, now, BookingRow, Key, SlotRow, BOOKING_COLUMNS};

/// `booking.findById`, in a reply of at most `room` bytes.
pub(crate) async fn find_by_id(
    app: &App,
    req: FindById,
    room: usize,
) -> Result<Success<BookingResponse>> {
    let mut conn = store::connection(&app.pool).await?;
    let booking = store::booking_by_id(&mut conn, req.id).await?;
    fit(app, booking, room)
}

/// `booking.findByNumber`, in a reply of at most `room` bytes.
pub(crate) async fn find_by_number(
    app: &App,
    req: FindByNumber,
    room: usize,
) -> Result<Success<BookingResponse>> {
    let mut conn = store::connection(&app.pool).await?;
    let rows = store::bookings_where(
        &mut *conn,
        "b.booking_number = $1",
        Key::Text(req.booking_number),
    )
    .await?;
    let booking = store::with_details(&mut conn, rows, true, None)
        .await?
        .pop()
        .ok_or_else(|| ServiceError::NotFound("Booking not found".into()))?;
    fit(app, booking, room)
}

/// `booking.findByUserId`: newest first, with payments and `canCancel`.
pub(crate) async fn find_by_user_id(
    app: &App,
    req: FindByUserId,
) -> Result<Success<Vec<BookingResponse>>> {
    // The reference returned every booking; a long-time user's list outgrew NATS's max_payload and
    // the caller never heard back. A page is bounded, newest first; callers that send neither
    // `page` nor `limit` get the newest page, still as a bare array.
    let limit = req.limit.unwrap_or(limits::MAX_USER_BOOKINGS);
    let offset = (req.page.unwrap_or(1) - 1) * limit;
    let rows = store::bookings_where(
        &app.pool,
        &format!(
            "b.user_id = $1 ORDER BY b.created_at DESC, b.id DESC LIMIT {limit} OFFSET {offset}"
        ),
        Key::Int(req.user_id),
    )
    .await?;
    let cutoff = Some(app.config.cancel_cutoff_days);
    let mut conn = store::connection(&app.pool).await?;
    Ok(Success::new(
        store::with_details(&mut conn, rows, false, cutoff).await?,
    ))
}

fn filters(q: &mut QueryBuilder<'_, Postgres>, req: &SearchBookings) {
    q.push(" WHERE TRUE");
    if let Some(status) = req.status {
        q.push(" AND b.status = ")
            .push_bind(status.as_str())
            .push("::\"BookingStatus\"");
    }
    if let Some(game) = req.game_id {
        q.push(" AND b.game_id = ").push_bind(game);
    }
    if let Some(club) = req.club_id {
        q.push(" AND b.club_id = ").push_bind(club);
    }
    if let Some(user) = req.user_id {
        q.push(" AND b.user_id = ").push_bind(user);
    }
    if let Some(start) = req.start_date {
        q.push(" AND b.booking_date >= ")
            .push_bind(start.and_time(NaiveTime::MIN));
    }
    if let Some(end) = req.end_date {
        q.push(" AND b.booking_date <= ")
            .push_bind(end.and_time(NaiveTime::MIN));
    }
    let today = now().date().and_time(NaiveTime::MIN);
    match req.time_filter {
        Some(TimeFilter::Upcoming) => {
            q.push(" AND b.booking_date >= ").push_bind(today);
        }
        Some(TimeFilter::Past) => {
            q.push(" AND b.booking_date < ").push_bind(today);
        }
        Some(TimeFilter::All) | None => {}
    }
}

/// `booking.search`.
pub(crate) async fn search(app: &App, req: SearchBookings) -> Result<Page<BookingResponse>> {
    let page = req.page.unwrap_or(1);
    let limit = req.limit.unwrap_or(limits::DEFAULT_PAGE_SIZE);
    let column = match req.sort_by.unwrap_or(SortBy::CreatedAt) {
        SortBy::BookingDate => "b.booking_date",
        SortBy::CreatedAt => "b.created_at",
        SortBy::TotalPrice => "b.total_price",
    };
    let direction = match req.sort_order.unwrap_or(SortOrder::Desc) {
        SortOrder::Asc => "ASC",
        SortOrder::Desc => "DESC",
    };

    let mut count = QueryBuilder::<Postgres>::new("SELECT count(*) FROM bookings b");
    filters(&mut count, &req);
    let total: i64 = count
        .build_query_scalar()
        .fetch_one(&app.pool)
        .await
        .step("counting the search")?;

    let mut select =
        QueryBuilder::<Postgres>::new(format!("SELECT {BOOKING_COLUMNS} FROM bookings b"));
    filters(&mut select, &req);
    select
        .push(format!(
            " ORDER BY {column} {direction}, b.id {direction} LIMIT "
        ))
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind((page - 1).saturating_mul(limit));
    let rows: Vec<BookingRow> = select
        .build_query_as()
        .fetch_all(&app.pool)
        .await
        .step("reading the search page")?;
    let cutoff = Some(app.config.cancel_cutoff_days);
    let mut conn = store::connection(&app.pool).await?;
    let bookings = store::with_details(&mut conn, rows, false, cutoff).await?;
    Ok(Page::new(bookings, total, page, limit))
}

/// `booking.gameTimeSlots.availability`: the cached slots of a game on a day, by start time.
pub(crate) async fn availability(
    app: &App,
    req: AvailabilityRequest,
) -> Result<Success<Vec<SlotAvailability>>> {
    let rows = store::slots_on(&app.pool, req.game_id, req.date).await?;
    Ok(Success::new(
        rows.into_iter().map(SlotRow::into_availability).collect(),
    ))
}
