#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Checks that the VM's host ports are free by binding each on 127.0.0.1, exactly
/// what QEMU's forwards will do (§4.6; the shell asked `lsof` and considered every port
/// free when lsof was missing or unprivileged, §5.4 #12), and on ::1 where the host has
/// IPv6: a service listening only there does not stop QEMU's bind, but a browser
/// opening `localhost:<port>` may reach it instead of the emulator. SO_REUSEADDR is set
/// as QEMU sets it, so a port lingering in TIME_WAIT counts as free, while any listener
/// — on 127.0.0.1, 0.0.0.0, ::1 or `::` — makes a bind fail.
///
/// QEMU binds the ports moments later, so a race remains; its failure then shows as
/// `QEMUFailure.hostForwarding` with the port.
public enum PortAvailability {
    /// Throws `.portInUse` for the first busy port, in forward order (§4.19-7).
    public static func ensureFree(_ ports: PortConfiguration) throws {
        for forward in ports.forwards {
            try ensureFree(forward.hostPort)
        }
    }

    public static func ensureFree(_ port: UInt16) throws {
        let fd = LoopbackSocket.make(nonBlocking: false)
        guard fd >= 0 else { throw HostError.systemCall("socket for port check", errno: -fd) }
        defer { close(fd) }
        LoopbackSocket.setReuseAddress(fd)
        try check(LoopbackSocket.bind(fd, port: port), port: port, address: "127.0.0.1")

        let fd6 = LoopbackSocket.makeIPv6()
        // No IPv6 on this host: nothing can listen on ::1.
        if fd6 == -EAFNOSUPPORT { return }
        guard fd6 >= 0 else { throw HostError.systemCall("IPv6 socket for port check", errno: -fd6) }
        defer { close(fd6) }
        LoopbackSocket.setReuseAddress(fd6)
        let rc6 = LoopbackSocket.bindIPv6(fd6, port: port)
        // IPv6 without ::1 on the loopback (disabled there): nothing can listen on it.
        if rc6 == -EADDRNOTAVAIL { return }
        try check(rc6, port: port, address: "[::1]")
    }

    private static func check(_ rc: Int32, port: UInt16, address: String) throws {
        if rc == -EADDRINUSE {
            throw HostError(.portInUse, "Port \(port) is already in use. Stop any conflicting services first.", errno: EADDRINUSE)
        }
        if rc != 0 {
            throw HostError.systemCall("bind \(address):\(port)", errno: -rc)
        }
    }

    public static func isFree(_ port: UInt16) -> Bool {
        (try? ensureFree(port)) != nil
    }
}
