// Fixture for `node dist/db-migrations.mjs migrate|seed`: appends "<cmd> <cwd>" to
// $FIXTURE_MIGRATION_LOG, sleeps $FIXTURE_SLEEP_<CMD>_MS milliseconds first if set,
// and fails when $FIXTURE_FAIL_<CMD>=1.
import fs from "node:fs";
const cmd = process.argv[2];
const upper = String(cmd).toUpperCase();
const sleep = Number(process.env[`FIXTURE_SLEEP_${upper}_MS`] || 0);
setTimeout(() => {
  if (process.env.FIXTURE_MIGRATION_LOG) {
    fs.appendFileSync(process.env.FIXTURE_MIGRATION_LOG, `${cmd} ${process.cwd()}\n`);
  }
  if (process.env[`FIXTURE_FAIL_${upper}`] === "1") {
    console.error(`fixture ${cmd} failing on purpose`);
    process.exit(7);
  }
}, sleep);
