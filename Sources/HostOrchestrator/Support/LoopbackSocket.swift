#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// TCP sockets on the loopback: 127.0.0.1, the only address the orchestrator dials and
/// QEMU's forwards bind; and ::1, bound only by the port check (a browser asking for
/// `localhost` may try ::1 first, so a service there takes the port from a user's
/// point of view).
enum LoopbackSocket {
    #if canImport(Glibc)
    // Close-on-exec from birth: a process spawned meanwhile never inherits the socket.
    static let streamType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
    #else
    static let streamType = SOCK_STREAM
    #endif

    static func address(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        #if canImport(Darwin)
        address.sin_len = UInt8(MemoryLayout<sockaddr_in>.size)
        #endif
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }

    /// A close-on-exec TCP socket, or -errno.
    static func make(nonBlocking: Bool) -> Int32 {
        let fd = socket(AF_INET, streamType, 0)
        if fd < 0 { return -errno }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)  // already set on Linux; the only way on Darwin
        if nonBlocking { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        return fd
    }

    /// bind(2) to 127.0.0.1:port; 0 or -errno.
    static func bind(_ fd: Int32, port: UInt16) -> Int32 {
        var address = address(port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { systemBind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return rc == 0 ? 0 : -errno
    }

    /// The port a bound socket got (for port 0 binds).
    static func localPort(_ fd: Int32) -> UInt16? {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return rc == 0 ? UInt16(bigEndian: address.sin_port) : nil
    }

    // MARK: ::1

    /// A close-on-exec IPv6-only TCP socket (a dual-stack one would also bind the IPv4
    /// wildcard), or -errno: -EAFNOSUPPORT on a host without IPv6.
    static func makeIPv6() -> Int32 {
        let fd = socket(AF_INET6, streamType, 0)
        if fd < 0 { return -errno }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// bind(2) to [::1]:port; 0 or -errno (-EADDRNOTAVAIL when the loopback has no ::1).
    static func bindIPv6(_ fd: Int32, port: UInt16) -> Int32 {
        var address = sockaddr_in6()
        #if canImport(Darwin)
        address.sin6_len = UInt8(MemoryLayout<sockaddr_in6>.size)
        #endif
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = port.bigEndian
        address.sin6_addr = in6addr_loopback
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { systemBind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        return rc == 0 ? 0 : -errno
    }

    static func setReuseAddress(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    }
}

@inline(__always) private func systemBind(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
    bind(fd, address, length)
}
