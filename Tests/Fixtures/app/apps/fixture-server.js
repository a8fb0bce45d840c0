// Shared by the two fixture servers.
//   GET /env              -> JSON {name, pid, ppid, cwd, env, bundle}
//   GET /health, /handler/sign-in -> 200 "ok"
//   GET /exit?code=N      -> exits with code N (crash simulation)
// `bundle` is the text of bundle.js beside server.js, so tests see what sentinel
// substitution and key rotation wrote into the "built" files.
// SIGTERM -> closes the listener and exits 0, like Next.js' standalone server.
// FIXTURE_IGNORE_TERM=1 ignores SIGTERM (to test escalation to SIGKILL).
// FIXTURE_SPAWN_DAEMON=<file> starts a detached grandchild that writes its pid there.
const http = require("http");
const fs = require("fs");
const path = require("path");
const { spawn } = require("child_process");

module.exports = function start(name) {
  const dir = path.dirname(require.main.filename);
  const readBundle = () => {
    try { return fs.readFileSync(path.join(dir, "bundle.js"), "utf8"); } catch { return null; }
  };
  if (process.env.FIXTURE_SPAWN_DAEMON) {
    const child = spawn("/bin/sh", ["-c", `echo $$ > "${process.env.FIXTURE_SPAWN_DAEMON}.${name}"; exec sleep 1000`],
      { detached: true, stdio: "ignore" });
    child.unref();
  }
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/env") {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ name, pid: process.pid, ppid: process.ppid, cwd: process.cwd(), env: process.env, bundle: readBundle() }));
    } else if (url.pathname === "/exit") {
      res.end("bye");
      setImmediate(() => process.exit(Number(url.searchParams.get("code") || 0)));
    } else {
      res.end("ok");
    }
  });
  server.listen(Number(process.env.PORT), process.env.HOSTNAME || "0.0.0.0", () => {
    process.stderr.write(`[fixture ${name}] listening on ${process.env.HOSTNAME}:${process.env.PORT}\n`);
  });
  if (process.env.FIXTURE_IGNORE_TERM === "1") {
    process.on("SIGTERM", () => process.stderr.write(`[fixture ${name}] ignoring SIGTERM\n`));
  } else {
    process.on("SIGTERM", () => { server.close(); process.exit(0); });
  }
};
