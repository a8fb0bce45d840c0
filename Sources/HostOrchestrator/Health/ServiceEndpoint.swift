/// The four HTTP services the host checks through the forwards (§4.6, §4.14).
public enum ServiceEndpoint: String, Sendable, CaseIterable, Hashable, Codable {
    case dashboard, backend, minio, inbucket

    public var path: String {
        switch self {
        case .dashboard: "/handler/sign-in"
        case .backend: "/health?db=1"
        case .minio: "/minio/health/live"
        case .inbucket: "/"
        }
    }

    /// As `status` prints them.
    public var displayName: String {
        switch self {
        case .dashboard: "Dashboard"
        case .backend: "Backend"
        case .minio: "MinIO"
        case .inbucket: "Inbucket HTTP"
        }
    }

    public func hostPort(in ports: PortConfiguration) -> UInt16 {
        switch self {
        case .dashboard: ports.dashboard
        case .backend: ports.backend
        case .minio: ports.minio
        case .inbucket: ports.inbucket
        }
    }

    /// `deps_ready`: MinIO and Inbucket.
    public static let dependencies: [ServiceEndpoint] = [.minio, .inbucket]
    /// `app_ready`: backend and dashboard.
    public static let application: [ServiceEndpoint] = [.backend, .dashboard]
    /// `all_ready`, in `status` order.
    public static let all: [ServiceEndpoint] = [.dashboard, .backend, .minio, .inbucket]
}
