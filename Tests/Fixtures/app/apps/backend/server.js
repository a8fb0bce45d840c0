// Fixture standing in for the Next.js standalone backend: listens on PORT/HOSTNAME and
// reports what it was started with, so tests check what the server really sees.
require("../fixture-server.js")("backend");
