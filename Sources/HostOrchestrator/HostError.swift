import StackCore
import StackProcess

/// The error every HostOrchestrator API throws: a stable `code` to match on, the
/// `errno` when a system call failed, and a one-line message that says what failed,
/// where, and what to do about it.
public struct HostError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// An environment variable or flag is malformed (`Invalid <NAME>: <raw>`).
        public static let invalidConfiguration = Code("invalid-configuration")
        /// The host (CPU architecture) cannot run the emulator.
        public static let unsupportedHost = Code("unsupported-host")
        /// No aarch64 UEFI firmware in any of the known locations.
        public static let firmwareMissing = Code("firmware-missing")
        /// A host port the VM forwards is already taken.
        public static let portInUse = Code("port-in-use")
        /// Another stack-emulator invocation holds the run-directory lock, or another
        /// capture the snapshot store's.
        public static let lockHeld = Code("lock-held")
        /// A system call failed; `errno` says why.
        public static let systemCall = Code("system-call")
        /// A helper program (qemu-img, qemu-system-*) failed or printed something unexpected.
        public static let toolFailed = Code("tool-failed")
        /// QEMU did not start (its own diagnosis is in the message).
        public static let launchFailed = Code("launch-failed")
        /// A snapshot directory is incomplete, unreadable or of an unknown format.
        public static let snapshotInvalid = Code("snapshot-invalid")
        /// Services did not become healthy before the deadline.
        public static let notHealthy = Code("not-healthy")
        /// A file this module owns has unexpected content (pid file, fingerprint).
        public static let malformedFile = Code("malformed-file")
        /// A step inside the guest failed (agent silent, mount or rotation non-zero).
        public static let guestFailed = Code("guest-failed")
        /// A snapshot resume failed (the message says which step and why).
        public static let resumeFailed = Code("resume-failed")
        /// The VM is running where it must not be (capture), or running but unhealthy (start).
        public static let vmRunning = Code("vm-running")
        /// A capture failed (the previous snapshot, if any, is untouched).
        public static let captureFailed = Code("capture-failed")
        /// A start or capture was cancelled (SIGINT/SIGTERM): what it launched is stopped;
        /// the message says what that was.
        public static let interrupted = Code("interrupted")
    }

    public let code: Code
    /// The `errno` of the failing call, when there was one.
    public let errno: Int32?
    public let message: String

    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    /// `what` names the call and its object, e.g. `"open /run/x/lock"`.
    public static func systemCall(_ what: String, errno: Int32) -> HostError {
        HostError(.systemCall, "\(what): \(StackError.describe(errno: errno))", errno: errno)
    }

    public var description: String { message }

    /// Re-throws errors of the shared modules as `HostError`, keeping message and errno.
    static func translating<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as HostError {
            throw error
        } catch let error as StackError {
            throw HostError(error.errno == nil ? .malformedFile : .systemCall, error.message, errno: error.errno)
        } catch let error as ProcessError {
            throw HostError(.toolFailed, error.description, errno: error.errno)
        } catch {
            throw HostError(.systemCall, "\(error)")
        }
    }

    static func translating<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as HostError {
            throw error
        } catch let error as StackError {
            throw HostError(error.errno == nil ? .malformedFile : .systemCall, error.message, errno: error.errno)
        } catch let error as ProcessError {
            throw HostError(.toolFailed, error.description, errno: error.errno)
        } catch {
            throw HostError(.systemCall, "\(error)")
        }
    }
}
