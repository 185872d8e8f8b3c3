// What a NestJS stand-in reads, recorded as a consumer contract: `watch(pattern, data)` wraps a
// message's data so every field read from it is noted under its pattern, `save()` writes
// {pattern: [field, ...]} to the file named by RECORD_READS (nothing when it is unset), and
// `serve(url, AppModule)` starts the stand-in as a NestJS NATS microservice and prints READY.
'use strict';
const fs = require('fs');
const { NestFactory } = require('@nestjs/core');
const { Transport } = require('@nestjs/microservices');

const reads = {};

function watch(pattern, data) {
  const seen = (reads[pattern] = reads[pattern] || new Set());
  return new Proxy(data || {}, {
    get(target, key) {
      if (typeof key === 'string') seen.add(key);
      return target[key];
    },
  });
}

function save() {
  if (process.env.RECORD_READS) {
    const out = Object.fromEntries(Object.entries(reads).map(([p, s]) => [p, [...s].sort()]));
    fs.writeFileSync(process.env.RECORD_READS, JSON.stringify(out));
  }
}

function serve(url, AppModule) {
  const main = async () => {
    const app = await NestFactory.createMicroservice(AppModule, {
      transport: Transport.NATS,
      options: { servers: [url] },
      logger: ['error'],
    });
    await app.listen();
    process.stdout.write('READY\n');
  };
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}

module.exports = { watch, save, serve };
