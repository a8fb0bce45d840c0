// Fixture standing in for the Next.js standalone dashboard (see ../fixture-server.js).
require("../fixture-server.js")("dashboard");
