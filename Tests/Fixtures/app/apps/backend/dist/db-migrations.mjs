// Fixture for `node dist/db-migrations.mjs migrate|seed`: appends "<cmd> <cwd>" to
// $FIXTURE_MIGRATION_LOG and fails when $FIXTURE_FAIL_<CMD>=1.
import fs from "node:fs";
const cmd = process.argv[2];
if (process.env.FIXTURE_MIGRATION_LOG) {
  fs.appendFileSync(process.env.FIXTURE_MIGRATION_LOG, `${cmd} ${process.cwd()}\n`);
}
if (process.env[`FIXTURE_FAIL_${String(cmd).toUpperCase()}`] === "1") {
  console.error(`fixture ${cmd} failing on purpose`);
  process.exit(7);
}
