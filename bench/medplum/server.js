// The peer in labgate's benchmark: Medplum's Hl7Server doing parse + ACK
// only (no mapping, no storage). Usage: node server.js PORT
// Prints "listening PORT" on stdout once it accepts connections.
'use strict';
const { Hl7Server } = require('@medplum/hl7');

const port = Number(process.argv[2] || 2575);
const server = new Hl7Server((connection) => {
  connection.addEventListener('message', ({ message }) => {
    connection.send(message.buildAck());
  });
});
server.start(port);
setTimeout(() => process.stdout.write(`listening ${port}\n`), 200);
process.on('SIGTERM', () => server.stop().then(() => process.exit(0)));
