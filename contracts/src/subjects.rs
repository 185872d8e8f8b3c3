//! Every NATS subject of the booking-service wire, and who sends it to whom.
//!
//! The subject is the NestJS pattern string. Requests go to a queue group (`booking-service` for
//! our handlers) so replicas share them; events fan out to every subscriber.

/// `booking.create`: create a booking (user-api → booking-service).
pub const BOOKING_CREATE: &str = "booking.create";
/// `booking.findById`: one booking by id.
pub const BOOKING_FIND_BY_ID: &str = "booking.findById";
/// `booking.findByNumber`: one booking by its number.
pub const BOOKING_FIND_BY_NUMBER: &str = "booking.findByNumber";
/// `booking.findByUserId`: a user's bookings.
pub const BOOKING_FIND_BY_USER_ID: &str = "booking.findByUserId";
/// `booking.search`: filtered, sorted, paged bookings.
pub const BOOKING_SEARCH: &str = "booking.search";
/// `booking.update`: change players, requests or phone.
pub const BOOKING_UPDATE: &str = "booking.update";
/// `booking.cancel`: cancel a booking.
pub const BOOKING_CANCEL: &str = "booking.cancel";
/// `booking.gameTimeSlots.availability`: a game's slots on a day, from the cache.
pub const BOOKING_AVAILABILITY: &str = "booking.gameTimeSlots.availability";
/// `booking.game.sync`: course-service pushes a game (event or request).
pub const BOOKING_GAME_SYNC: &str = "booking.game.sync";
/// `booking.gameTimeSlot.sync`: course-service pushes a time slot (event or request).
pub const BOOKING_SLOT_SYNC: &str = "booking.gameTimeSlot.sync";
/// `gameTimeSlots.get`: booking-service asks course-service for a slot.
pub const SLOTS_GET: &str = "gameTimeSlots.get";
/// `games.get`: booking-service asks course-service for a game.
pub const GAMES_GET: &str = "games.get";
/// `gameTimeSlots.book`: booking-service tells course-service seats were taken.
pub const SLOTS_BOOK: &str = "gameTimeSlots.book";
/// `gameTimeSlots.release`: booking-service tells course-service seats were given back.
pub const SLOTS_RELEASE: &str = "gameTimeSlots.release";
/// `booking.confirmed`: notification of a new booking.
pub const BOOKING_CONFIRMED: &str = "booking.confirmed";
/// `booking.cancelled`: notification of a cancellation.
pub const BOOKING_CANCELLED: &str = "booking.cancelled";

/// The handlers booking-service serves, in the order it subscribes them.
pub const BOOKING_HANDLERS: [&str; 10] = [
    BOOKING_CREATE,
    BOOKING_FIND_BY_ID,
    BOOKING_FIND_BY_NUMBER,
    BOOKING_FIND_BY_USER_ID,
    BOOKING_SEARCH,
    BOOKING_UPDATE,
    BOOKING_CANCEL,
    BOOKING_AVAILABILITY,
    BOOKING_GAME_SYNC,
    BOOKING_SLOT_SYNC,
];

/// The default queue group of booking-service's subscriptions.
pub const BOOKING_QUEUE_GROUP: &str = "booking-service";

/// A service on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// The HTTP gateway that calls booking-service for users.
    UserApi,
    /// This project's service.
    BookingService,
    /// Owns clubs, games and time slots.
    CourseService,
    /// Sends e-mails and pushes.
    NotificationService,
}

impl Service {
    /// Kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Service::UserApi => "user-api",
            Service::BookingService => "booking-service",
            Service::CourseService => "course-service",
            Service::NotificationService => "notification-service",
        }
    }
}

/// How a subject is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Style {
    /// `send`: a request with exactly one reply.
    Request,
    /// `emit`: an event, never answered.
    Event,
    /// Either: answered when it carries an `id` and a reply subject, otherwise not.
    RequestOrEvent,
}

impl Style {
    /// Whether a request form exists (and so a reply type).
    pub fn replies(self) -> bool {
        !matches!(self, Style::Event)
    }
}
