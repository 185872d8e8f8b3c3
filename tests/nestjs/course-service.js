// A NestJS course-service (createMicroservice, Transport.NATS) holding one game and its slots in
// memory: gameTimeSlots.get, games.get, and gameTimeSlots.book/release as message handlers that
// answer with the updated slot, the way the real course-service registers them. A debug pattern
// returns a slot's current state.
//
// usage: node course-service.js <nats-url> <catalog.json>   (prints READY when listening)
'use strict';
require('reflect-metadata');
const fs = require('fs');
const { NestFactory } = require('@nestjs/core');
const { Module, Controller } = require('@nestjs/common');
const { MessagePattern, Transport } = require('@nestjs/microservices');

const [url, catalogFile] = process.argv.slice(2);
const catalog = JSON.parse(fs.readFileSync(catalogFile, 'utf8'));
const slots = new Map(catalog.slots.map((s) => [s.id, s]));
const games = new Map(catalog.games.map((g) => [g.id, g]));

const notFound = (what) => ({
  success: false,
  error: { code: 'BUS_002', message: `${what} not found` },
  timestamp: new Date().toISOString(),
});

class CourseController {
  getSlot(data) {
    const slot = slots.get(data.timeSlotId);
    return slot ? { success: true, data: slot } : notFound(`Time slot ${data.timeSlotId}`);
  }
  getGame(data) {
    const game = games.get(data.gameId);
    return game ? { success: true, data: game } : notFound(`Game ${data.gameId}`);
  }
  book(data) {
    const slot = slots.get(data.timeSlotId);
    if (!slot) return notFound(`Time slot ${data.timeSlotId}`);
    slot.bookedPlayers += data.playerCount;
    slot.status = slot.bookedPlayers >= slot.maxPlayers ? 'FULLY_BOOKED' : 'AVAILABLE';
    return { success: true, data: slot };
  }
  release(data) {
    const slot = slots.get(data.timeSlotId);
    if (!slot) return notFound(`Time slot ${data.timeSlotId}`);
    slot.bookedPlayers = Math.max(0, slot.bookedPlayers - data.playerCount);
    slot.status = 'AVAILABLE';
    return { success: true, data: slot };
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
for (const [method, pattern] of Object.entries(handlers)) {
  const descriptor = Object.getOwnPropertyDescriptor(CourseController.prototype, method);
  MessagePattern(pattern)(CourseController.prototype, method, descriptor);
}
Controller()(CourseController);

class AppModule {}
Module({ controllers: [CourseController] })(AppModule);

async function main() {
  const app = await NestFactory.createMicroservice(AppModule, {
    transport: Transport.NATS,
    options: { servers: [url] },
    logger: ['error'],
  });
  await app.listen();
  process.stdout.write('READY\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
