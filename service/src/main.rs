//! `booking-service` binary: not yet functional (see the booking-service issue).

fn main() {
    eprintln!(
        "booking-service is not built yet; it will serve {} subjects",
        booking_service::BOOKING_HANDLERS.len()
    );
    std::process::exit(2);
}
