// A NestJS notification listener (createMicroservice, Transport.NATS, @EventPattern): on
// booking.confirmed and booking.cancelled it reads what a confirmation or cancellation e-mail
// needs, as notification-service does, and prints one line per event.
//
// usage: node listener.js <nats-url>   (prints READY when listening)
// With RECORD_READS=<file>, every field a handler reads from an event's `data` is written to
// <file> as {pattern: [field, ...]}; tests/nestjs.rs checks expectations/notification-service.json
// lists them, and the contract suite checks booking-service always sends them.
'use strict';
require('reflect-metadata');
const { Module, Controller } = require('@nestjs/common');
const { EventPattern } = require('@nestjs/microservices');
const { watch, save, serve } = require('./record');

const [url] = process.argv.slice(2);

class NotificationController {
  confirmed(raw) {
    const e = watch('booking.confirmed', raw);
    const mail = `${e.userEmail}: ${e.userName}, booking ${e.bookingNumber} (#${e.bookingId}) ` +
      `for ${e.playerCount} at ${e.gameName} on ${e.bookingDate} ${e.timeSlot}, ${e.totalPrice} won`;
    save();
    process.stdout.write(`confirmed ${mail}\n`);
  }
  cancelled(raw) {
    const e = watch('booking.cancelled', raw);
    const mail = `${e.userEmail}: booking ${e.bookingNumber} (#${e.bookingId}) cancelled`;
    save();
    process.stdout.write(`cancelled ${mail}\n`);
  }
}
for (const [method, pattern] of [['confirmed', 'booking.confirmed'], ['cancelled', 'booking.cancelled']]) {
  const descriptor = Object.getOwnPropertyDescriptor(NotificationController.prototype, method);
  EventPattern(pattern)(NotificationController.prototype, method, descriptor);
}
Controller()(NotificationController);

class AppModule {}
Module({ controllers: [NotificationController] })(AppModule);

serve(url, AppModule);
