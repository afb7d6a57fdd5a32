#!/usr/bin/env node
// Starts the Cosmos DB stand-in (@vercel/cosmosdb-server) over plain HTTP with keep-alive.
// The package's own CLI answers every request with "connection: close", which makes each
// SDK call pay for a new TCP connection; keeping connections open is about 2.5x faster.
"use strict";

const { createHttpServer } = require("@vercel/cosmosdb-server");

function parseArgs(argv) {
  const args = { host: "127.0.0.1", port: 8081 };
  for (let i = 0; i < argv.length; i += 1) {
    const key = argv[i];
    if (key === "--port" || key === "-p") {
      args.port = Number.parseInt(argv[(i += 1)], 10);
    } else if (key === "--host") {
      args.host = argv[(i += 1)];
    } else if (key === "--help" || key === "-h") {
      process.stdout.write("Usage: server.js [--host 127.0.0.1] [--port 8081]\n");
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument: ${key}\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    process.stderr.write("--port must be an integer from 0 to 65535\n");
    process.exit(2);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const server = createHttpServer({ keepAlive: true });
// Idle connections stay open longer than the SDK's pool keeps them, so a reused
// connection is never closed under a request in flight.
server.keepAliveTimeout = 120000;
server.headersTimeout = 121000;
server.on("error", (err) => {
  process.stderr.write(`cosmos stand-in failed: ${err.message}\n`);
  process.exit(1);
});
server.listen(args.port, args.host, () => {
  const { port } = server.address();
  process.stdout.write(`cosmos stand-in ready on http://${args.host}:${port}/\n`);
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
