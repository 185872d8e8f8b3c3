//! Benchmarks live here: criterion benches of the codec and of `booking.create` end to end, beside
//! the same SQL transaction issued directly (filled in by the benchmarks issue).
