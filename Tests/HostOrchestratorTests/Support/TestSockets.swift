import StackCore
import StackProcess
@testable import HostOrchestrator
#if canImport(Glibc)
import Glibc
#endif

/// Socket helpers for tests: held ports, listeners, unix-socket reads, /proc/net/tcp.
enum TestSockets {
    /// A socket bound to 127.0.0.1:0 (listening if asked), kept open by the caller.
    static func bound(listening: Bool, any: Bool = false) throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StackError.systemCall("socket", errno: errno) }
        var address = LoopbackSocket.address(port: 0)
        if any { address.sin_addr.s_addr = 0 }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { close(fd); throw StackError.systemCall("bind", errno: errno) }
        if listening { listen(fd, 16) }
        return (fd, LoopbackSocket.localPort(fd)!)
    }

    /// An IPv6-only socket bound to `[address]:0` (listening if asked), kept open by the caller.
    static func boundIPv6(listening: Bool, address: in6_addr) throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StackError.systemCall("socket", errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        var socketAddress = sockaddr_in6()
        socketAddress.sin6_family = sa_family_t(AF_INET6)
        socketAddress.sin6_addr = address
        let rc = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        guard rc == 0 else { close(fd); throw StackError.systemCall("bind", errno: errno) }
        if listening { listen(fd, 16) }
        var bound = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, UInt16(bigEndian: bound.sin6_port))
    }

    /// `count` distinct ports that were free a moment ago.
    static func freePorts(_ count: Int) throws -> [UInt16] {
        var held: [(fd: Int32, port: UInt16)] = []
        defer { for socket in held { close(socket.fd) } }
        while held.count < count { held.append(try bound(listening: false)) }
        return held.map(\.port)
    }

    /// A port prefix P whose `<P>14` is currently free (the mock OAuth forward binds it).
    static func freePrefix() -> String {
        for _ in 0..<200 {
            let prefix = String(Int.random(in: 200...599))
            if PortAvailability.isFree(UInt16(prefix + "14")!) && PortAvailability.isFree(UInt16(prefix + "01")!) { return prefix }
        }
        return "599"
    }

    /// Connects to a unix socket and reads its first line (QMP sends a greeting).
    static func firstLine(ofUnixSocket path: String, timeout: Duration = .seconds(5)) async -> String? {
        await BlockingCall.run { () -> String? in
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return nil }
            defer { close(fd) }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, b) in bytes.enumerated() { raw[i] = b }
            }
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0 else { return nil }
            var received: [UInt8] = []
            var byte: UInt8 = 0
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(timeout.components.seconds * 1000)
            while !received.contains(10) {
                guard poll(&descriptor, 1, milliseconds) > 0, read(fd, &byte, 1) == 1 else { break }
                received.append(byte)
            }
            return String(decoding: received, as: UTF8.self)
        }
    }

    /// Local addresses (hex `AABBCCDD` IPv4 / 32-hex IPv6) of LISTEN sockets on `port`.
    static func listeningAddresses(port: UInt16) throws -> [String] {
        var result: [String] = []
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = try? POSIX.readFile(table) else { continue }
            for line in String(decoding: text, as: UTF8.self).split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                guard fields.count > 3, fields[3] == "0A" else { continue }
                let local = fields[1].split(separator: ":")
                if local.count == 2, UInt16(local[1], radix: 16) == port { result.append(String(local[0])) }
            }
        }
        return result
    }
}
