#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Checks that the VM's host ports are free by binding each on 127.0.0.1, exactly
/// what QEMU's forwards will do (§4.6; the shell asked `lsof` and considered every port
/// free when lsof was missing or unprivileged, §5.4 #12). SO_REUSEADDR is set as QEMU
/// sets it, so a port lingering in TIME_WAIT counts as free, while any listener —
/// on 127.0.0.1, 0.0.0.0 or a dual-stack `::` — makes the bind fail.
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
        let rc = LoopbackSocket.bind(fd, port: port)
        if rc == -EADDRINUSE {
            throw HostError(.portInUse, "Port \(port) is already in use. Stop any conflicting services first.", errno: EADDRINUSE)
        }
        if rc != 0 {
            throw HostError.systemCall("bind 127.0.0.1:\(port)", errno: -rc)
        }
    }

    public static func isFree(_ port: UInt16) -> Bool {
        (try? ensureFree(port)) != nil
    }
}
