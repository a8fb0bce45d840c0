import StackCore

/// Everything `SecretRotator` needs to know besides the new secrets. Built once at the
/// edge (the `rotate-secrets` executable, from flags and the container environment, see
/// `RotationConfiguration.resolve`) and passed in; the library reads no environment.
public struct RotationConfiguration: Sendable {
    /// `/run/stack-auth/rotated-secrets.env`: the seven lines stack-entrypoint and the
    /// cron loop read at start (§2.3 step 3).
    public static let defaultEnvFilePath = "/run/stack-auth/rotated-secrets.env"
    public static let defaultWorkDirectory = "/app"
    /// The supervisord programs that read the secrets at start (§5.2).
    public static let defaultPrograms = ["stack-app", "cron-jobs"]

    /// Where supervisord is asked to restart the programs that read the secrets.
    public struct Restart: Sendable {
        public var socketPath: String
        public var programs: [String]
        /// Bound for stopping, starting and reaching RUNNING, all programs together.
        public var timeout: Duration
        /// TCP ports the restarted generation must listen on before rotation counts as
        /// done (backend and dashboard). Empty: RUNNING is enough (§5.4 #4).
        public var listenPorts: [Int]
        /// Bound for the new listeners to appear, counted from RUNNING.
        public var listenTimeout: Duration

        public init(socketPath: String = "/var/run/supervisor.sock", programs: [String] = RotationConfiguration.defaultPrograms,
                    timeout: Duration = .seconds(60), listenPorts: [Int] = [], listenTimeout: Duration = .seconds(120)) {
            self.socketPath = socketPath
            self.programs = programs
            self.timeout = timeout
            self.listenPorts = listenPorts
            self.listenTimeout = listenTimeout
        }
    }

    public var envFilePath: String
    /// `<directory of envFilePath>/rotate-secrets.journal` unless set.
    public var journalPath: String
    /// `<directory of envFilePath>/rotate-secrets.lock` unless set.
    public var lockPath: String
    /// `WORK_DIR`; the key is rewritten in every regular file under `<workDirectory>/apps`.
    public var workDirectory: String
    /// libpq connection string; `nil` skips the ApiKeySet update (§2.4-12).
    public var databaseConnectionString: String?
    /// Bound for connecting to PostgreSQL (it is normally up already after a resume).
    public var databaseConnectTimeout: Duration
    /// `nil`: no supervisord in this image (`--no-restart`); the caller restarts the apps.
    public var restart: Restart?
    /// The publishable key the app files hold when there is neither a previous rotation
    /// (rotated-secrets.env) nor a database row to ask: the build placeholder (§5.1).
    public var initialPublishableKey: Secret
    /// Bound for waiting on another rotate-secrets that holds the lock.
    public var lockTimeout: Duration
    /// `syncfs` after rewriting files (durability across a power cut); off trades that
    /// for speed where the tree is disposable.
    public var syncRewrittenFiles: Bool

    public init(envFilePath: String = RotationConfiguration.defaultEnvFilePath,
                journalPath: String? = nil,
                lockPath: String? = nil,
                workDirectory: String = RotationConfiguration.defaultWorkDirectory,
                databaseConnectionString: String? = nil,
                databaseConnectTimeout: Duration = .seconds(30),
                restart: Restart? = Restart(),
                initialPublishableKey: Secret = RotationConfiguration.placeholderPublishableKey,
                lockTimeout: Duration = .seconds(60),
                syncRewrittenFiles: Bool = true) {
        let stateDirectory = Path.directory(of: envFilePath)
        self.envFilePath = envFilePath
        self.journalPath = journalPath ?? Path.join(stateDirectory, "rotate-secrets.journal")
        self.lockPath = lockPath ?? Path.join(stateDirectory, "rotate-secrets.lock")
        self.workDirectory = workDirectory
        self.databaseConnectionString = databaseConnectionString
        self.databaseConnectTimeout = databaseConnectTimeout
        self.restart = restart
        self.initialPublishableKey = initialPublishableKey
        self.lockTimeout = lockTimeout
        self.syncRewrittenFiles = syncRewrittenFiles
    }

    // The placeholder is a constant hex64 string, so validating it cannot fail.
    public static let placeholderPublishableKey = try! Secret(
        validating: InternalSecrets.Name.publishableClientKey.placeholder, name: "placeholder")

    /// `<workDirectory>/apps`, the tree whose files carry the publishable key.
    public var appsDirectory: String { Path.join(workDirectory, "apps") }
}
