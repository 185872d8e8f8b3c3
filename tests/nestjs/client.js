// A NestJS ClientProxy (Transport.NATS) that runs a plan of calls against booking-service and
// prints what NestJS hands back to its caller: the resolved value, or the rejected error.
//
// usage: node client.js <nats-url> <plan.json>
// plan: [{"send"|"emit": pattern, "data": {...}}]; the strings "$bookingId" and "$bookingNumber"
// in data are replaced by the id and number of the first successful booking.create.
// With RECORD=<file>, what it sends on each pattern (the first message) and every reply path its
// code reads are written to <file> as {pattern: {sends, reads: [path, ...]}}; tests/nestjs.rs
// checks expectations/user-api.json against them.
'use strict';
require('reflect-metadata');
const fs = require('fs');
const { ClientProxyFactory, Transport } = require('@nestjs/microservices');
const { firstValueFrom, timeout } = require('rxjs');

async function main() {
  const [url, planFile] = process.argv.slice(2);
  const plan = JSON.parse(fs.readFileSync(planFile, 'utf8'));
  const client = ClientProxyFactory.create({ transport: Transport.NATS, options: { servers: [url] } });
  await client.connect();
  const vars = {};
  const results = [];
  const recorded = {};
  const entry = (pattern) => (recorded[pattern] = recorded[pattern] || { sends: undefined, reads: new Set() });
  // A reply whose reads are recorded as dotted paths (`data.id`).
  const watched = (value, pattern, path) => {
    if (value === null || typeof value !== 'object') return value;
    return new Proxy(value, {
      get(target, key) {
        if (typeof key !== 'string') return target[key];
        const at = path ? `${path}.${key}` : key;
        entry(pattern).reads.add(at);
        return watched(target[key], pattern, at);
      },
    });
  };
  for (const step of plan) {
    let text = JSON.stringify(step.data);
    if (vars.bookingId !== undefined) {
      text = text.split('"$bookingId"').join(String(vars.bookingId));
      text = text.split('$bookingNumber').join(vars.bookingNumber);
    }
    const data = JSON.parse(text);
    const pattern = step.send || step.emit;
    if (entry(pattern).sends === undefined) entry(pattern).sends = data;
    if (step.emit) {
      await firstValueFrom(client.emit(step.emit, data));
      results.push({ pattern: step.emit, emitted: true });
      continue;
    }
    try {
      const response = await firstValueFrom(client.send(step.send, data).pipe(timeout(10000)));
      const reply = watched(response, step.send, '');
      if (step.send === 'booking.create' && vars.bookingId === undefined && reply && reply.data) {
        vars.bookingId = reply.data.id;
        vars.bookingNumber = reply.data.bookingNumber;
      }
      results.push({ pattern: step.send, response });
    } catch (err) {
      results.push({ pattern: step.send, err: err instanceof Error ? { jsError: err.message } : err });
    }
  }
  await client.close();
  if (process.env.RECORD) {
    const out = Object.fromEntries(
      Object.entries(recorded).map(([p, e]) => [p, { sends: e.sends, reads: [...e.reads].sort() }]),
    );
    fs.writeFileSync(process.env.RECORD, JSON.stringify(out));
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
