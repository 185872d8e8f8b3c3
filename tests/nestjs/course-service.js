// A NestJS course-service (createMicroservice, Transport.NATS) holding one game and its slots in
// memory: gameTimeSlots.get, games.get, and gameTimeSlots.book/release as message handlers that
// answer with the updated slot row, refuse and clamp the way the real course-service does, and
// answer failures inside `response` with its own codes. A debug pattern returns a slot's state.
//
// usage: node course-service.js <nats-url> <catalog.json>   (prints READY when listening)
'use strict';
require('reflect-metadata');
const fs = require('fs');
const { Module, Controller } = require('@nestjs/common');
const { MessagePattern } = require('@nestjs/microservices');
const { watch, save, serve } = require('./record');

const [url, catalogFile] = process.argv.slice(2);
const catalog = JSON.parse(fs.readFileSync(catalogFile, 'utf8'));
const slots = new Map(catalog.slots.map((s) => [s.id, s]));
const games = new Map(catalog.games.map((g) => [g.id, g]));

// As the real course-service does: each handler catches its own exception and answers it inside
// `response` with its own code and no timestamp.
const failure = (code, message) => ({ success: false, error: { code, message } });
const missing = (id) => new Error(`GameTimeSlot with ID ${id} not found`);
// The book/release answer is the updated row, without the game relation (no game names).
const row = (slot) => ({
  id: slot.id, gameId: slot.gameId, date: slot.date, startTime: slot.startTime, endTime: slot.endTime,
  maxPlayers: slot.maxPlayers, bookedPlayers: slot.bookedPlayers,
  availablePlayers: slot.maxPlayers - slot.bookedPlayers, price: slot.price, isPremium: slot.isPremium,
  status: slot.status, isActive: slot.isActive,
});
const guarded = (code, work) => {
  try {
    return { success: true, data: work() };
  } catch (e) {
    return failure(code, e.message);
  }
};

class CourseController {
  getSlot(data) {
    return guarded('GAME_TIMESLOT_GET_FAILED', () => {
      const slot = slots.get(Number(data.timeSlotId));
      if (!slot) throw missing(data.timeSlotId);
      return slot;
    });
  }
  getGame(data) {
    return guarded('GAME_GET_FAILED', () => {
      const game = games.get(Number(data.gameId));
      if (!game) throw new Error(`Game with ID ${data.gameId} not found`);
      return game;
    });
  }
  book(data) {
    return guarded('GAME_TIMESLOT_BOOK_FAILED', () => {
      const slot = slots.get(Number(data.timeSlotId));
      if (!slot) throw missing(data.timeSlotId);
      if (slot.status !== 'AVAILABLE') {
        throw new Error(`Time slot is not available (status: ${slot.status})`);
      }
      const booked = slot.bookedPlayers + Number(data.playerCount);
      if (booked > slot.maxPlayers) {
        throw new Error(
          `Not enough capacity. Available: ${slot.maxPlayers - slot.bookedPlayers}, Requested: ${data.playerCount}`,
        );
      }
      slot.bookedPlayers = booked;
      slot.status = booked >= slot.maxPlayers ? 'FULLY_BOOKED' : 'AVAILABLE';
      return row(slot);
    });
  }
  release(data) {
    return guarded('GAME_TIMESLOT_RELEASE_FAILED', () => {
      const slot = slots.get(Number(data.timeSlotId));
      if (!slot) throw missing(data.timeSlotId);
      slot.bookedPlayers = Math.max(0, slot.bookedPlayers - Number(data.playerCount));
      slot.status = slot.bookedPlayers < slot.maxPlayers ? 'AVAILABLE' : 'FULLY_BOOKED';
      return row(slot);
    });
  }
  debugSlot(data) {
    return this.getSlot(data);
  }
}

const handlers = {
  getSlot: 'gameTimeSlots.get',
  getGame: 'games.get',
  book: 'gameTimeSlots.book',
  release: 'gameTimeSlots.release',
  debugSlot: 'course.debug.slot',
};
// Pact-style recording: with RECORD_READS=<file>, every field a handler reads from the `data`
// booking-service sends is written to <file> as {pattern: [field, ...]} after each message; the
// integration test checks that expectations/course-service.json lists them all, and the contract
// suite checks that booking-service always sends them.
if (process.env.RECORD_READS) {
  for (const [method, pattern] of Object.entries(handlers)) {
    const handle = CourseController.prototype[method];
    CourseController.prototype[method] = function (data) {
      try {
        return handle.call(this, watch(pattern, data));
      } finally {
        save();
      }
    };
  }
}
for (const [method, pattern] of Object.entries(handlers)) {
  const descriptor = Object.getOwnPropertyDescriptor(CourseController.prototype, method);
  MessagePattern(pattern)(CourseController.prototype, method, descriptor);
}
Controller()(CourseController);

class AppModule {}
Module({ controllers: [CourseController] })(AppModule);

serve(url, AppModule);
