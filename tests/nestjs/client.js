// A NestJS ClientProxy (Transport.NATS) that runs a plan of calls against booking-service and
// prints what NestJS hands back to its caller: the resolved value, or the rejected error.
//
// usage: node client.js <nats-url> <plan.json>
// plan: [{"send"|"emit": pattern, "data": {...}}]; the strings "$bookingId" and "$bookingNumber"
// in data are replaced by the id and number of the first successful booking.create.
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
  for (const step of plan) {
    let text = JSON.stringify(step.data);
    if (vars.bookingId !== undefined) {
      text = text.split('"$bookingId"').join(String(vars.bookingId));
      text = text.split('$bookingNumber').join(vars.bookingNumber);
    }
    const data = JSON.parse(text);
    if (step.emit) {
      await firstValueFrom(client.emit(step.emit, data));
      results.push({ pattern: step.emit, emitted: true });
      continue;
    }
    try {
      const response = await firstValueFrom(client.send(step.send, data).pipe(timeout(10000)));
      if (step.send === 'booking.create' && vars.bookingId === undefined && response && response.data) {
        vars.bookingId = response.data.id;
        vars.bookingNumber = response.data.bookingNumber;
      }
      results.push({ pattern: step.send, response });
    } catch (err) {
      results.push({ pattern: step.send, err: err instanceof Error ? { jsError: err.message } : err });
    }
  }
  await client.close();
  process.stdout.write(JSON.stringify(results));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
