/// The steps of one rotation, in the order they run. Their names appear in the log
/// (timings) and select where the test-only pause hook stops the process.
///
/// Why this order (crash safety, see `SecretRotator`):
/// `journal` records every publishable key that may still be in the files *before*
/// anything the key lives in changes; `envFile` then `rewrite` then `database` may each
/// be interrupted and are each idempotent; `commit` turns the journal into "restart
/// pending" only once env file, files and row agree; `finish` removes it only after the
/// new generation runs.
public enum RotationStep: String, CaseIterable, Sendable, CustomStringConvertible {
    /// Take the lock, read journal, previous env file and (if configured) the row.
    case prepare
    /// Write the journal: old publishable key(s) → new one.
    case journal
    /// Write rotated-secrets.env (seven lines, 0600, atomic).
    case envFile = "env-file"
    /// Replace the old publishable key(s) by the new one under `<WORK_DIR>/apps`.
    case rewrite
    /// `syncfs` on the work tree's file system, so the rewritten files are on disk
    /// before the row and the journal say the rotation happened (power loss; a kill -9
    /// needs no flush: a completed rename survives the process).
    case sync
    /// UPDATE the internal ApiKeySet row in a transaction.
    case database
    /// Journal phase `restart`: state is consistent, the running generation is not yet.
    case commit
    /// supervisord: restart stack-app and cron-jobs, wait until RUNNING.
    case restart
    /// Wait until the new generation listens on the backend and dashboard ports.
    case listen
    /// Remove the journal.
    case finish

    public var description: String { rawValue }
}
