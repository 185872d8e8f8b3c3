//! Envelope and payload encode/decode: the per-message CPU cost of speaking NestJS.

use contracts::booking::CreateBookingRequest;
use contracts::{subjects, Codec, MessageId};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn request() -> serde_json::Value {
    serde_json::json!({"userId": 42, "gameTimeSlotId": 1001, "playerCount": 3, "paymentMethod": "card",
        "specialRequests": "카트 필요", "userEmail": "user@example.com", "userName": "홍길동",
        "userPhone": "010-1234-5678", "idempotencyKey": "k-1"})
}

fn codec(c: &mut Criterion) {
    let codec = Codec::default();
    let id = MessageId::fresh();
    let data = request();
    let body = codec
        .encode_request(subjects::BOOKING_CREATE, &data, &id)
        .expect("a fixed request encodes");
    let reply = codec
        .encode_response(&id, &serde_json::json!({"success": true, "data": data}))
        .expect("a fixed reply encodes");
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("encode booking.create request", |b| {
        b.iter(|| codec.encode_request(subjects::BOOKING_CREATE, black_box(&data), &id))
    });
    g.bench_function("decode envelope", |b| {
        b.iter(|| codec.decode_inbound(black_box(&body)))
    });
    g.bench_function("decode + validate CreateBookingRequest", |b| {
        b.iter(|| {
            let inbound = codec.decode_inbound(black_box(&body)).expect("valid");
            Codec::decode_data::<CreateBookingRequest>(inbound.data)
        })
    });
    g.bench_function("decode reply", |b| {
        b.iter(|| codec.decode_reply(black_box(&reply)))
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
