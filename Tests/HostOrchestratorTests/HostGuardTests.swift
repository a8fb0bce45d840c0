import CSystem
import StackCore
import StackProcess
import TestSupport
import Testing
@testable import HostOrchestrator
#if canImport(Glibc)
import Glibc
#endif

@Suite struct PortAvailabilityTests {
    /// §4.19-7: a listener on any of the five ports stops start/capture with the shell's message.
    @Test func listeningPortIsReportedInUse() throws {
        let listener = try TestSockets.bound(listening: true)
        defer { close(listener.fd) }
        do {
            try PortAvailability.ensureFree(listener.port)
            Issue.record("port \(listener.port) is listening")
        } catch let error as HostError {
            #expect(error.code == .portInUse)
            #expect(error.message == "Port \(listener.port) is already in use. Stop any conflicting services first.")
        }
    }

    /// A wildcard (0.0.0.0) listener blocks QEMU's 127.0.0.1 bind just the same.
    @Test func wildcardListenerCountsAsBusy() throws {
        let listener = try TestSockets.bound(listening: true, any: true)
        defer { close(listener.fd) }
        #expect(!PortAvailability.isFree(listener.port))
    }

    /// Issue 12: a service listening only on ::1 (where the host has IPv6) answers a
    /// browser's `localhost:<port>`, so the port counts as taken; so does an IPv6-only
    /// wildcard listener.
    @Test func ipv6LoopbackListenerCountsAsBusy() throws {
        for address in [in6addr_loopback, in6addr_any] {
            let listener = try TestSockets.boundIPv6(listening: true, address: address)
            defer { close(listener.fd) }
            #expect(throws: HostError(.portInUse, "Port \(listener.port) is already in use. Stop any conflicting services first.", errno: EADDRINUSE)) {
                try PortAvailability.ensureFree(listener.port)
            }
        }
        // Bound but not listening on ::1 either way: still taken (QEMU's bind would not
        // care, a later listen would).
        let bound = try TestSockets.boundIPv6(listening: false, address: in6addr_loopback)
        defer { close(bound.fd) }
        #expect(!PortAvailability.isFree(bound.port))
    }

    @Test func checksEveryForwardInOrderIncludingMockOAuth() throws {
        let free = try TestSockets.freePorts(4)
        let prefix = TestSockets.freePrefix()
        let ports = try PortConfiguration(prefix: prefix, dashboard: free[0], backend: free[1], minio: free[2], inbucket: free[3])
        try PortAvailability.ensureFree(ports)
        // Hold <P>14: the mock OAuth forward (host side) is checked too.
        let oauth = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(oauth) }
        var address = LoopbackSocket.address(port: ports.mockOAuth)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(oauth, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(bound == 0)
        listen(oauth, 1)
        #expect(throws: HostError(.portInUse, "Port \(ports.mockOAuth) is already in use. Stop any conflicting services first.", errno: EADDRINUSE)) {
            try PortAvailability.ensureFree(ports)
        }
    }
}

@Suite struct StartLockTests {
    /// §5.4 #12: a second start cannot take the lock while the first holds it.
    @Test func secondAcquireFailsNamingTheHolder() async throws {
        let temp = try TestDirectory(prefix: "hp-lock")
        defer { temp.remove() }
        let path = temp.file("run/lock")
        let first = try await StartLock.acquire(path: path)
        do {
            _ = try await StartLock.acquire(path: path)
            Issue.record("lock taken twice")
        } catch let error as HostError {
            #expect(error.code == .lockHeld)
            #expect(error.message.contains("pid \(getpid())"), "\(error.message)")
        }
        first.release()
        let again = try await StartLock.acquire(path: path)
        again.release()
    }

    @Test func anotherProcessHoldingTheLockIsWaitedFor() async throws {
        let temp = try TestDirectory(prefix: "hp-lock")
        defer { temp.remove() }
        let path = temp.file("lock")
        try AtomicFile(path: path).write([])
        // util-linux flock holds the lock in another process until its stdin closes.
        var fds: [Int32] = [-1, -1]
        try #require(fds.withUnsafeMutableBufferPointer { cs_pipe($0.baseAddress!) } == 0)
        let holder = try Command("/usr/bin/flock", arguments: [path, "/bin/cat"], environment: [:],
                                 standardInput: .fileDescriptor(fds[0]), standardOutput: .discard).spawn()
        close(fds[0])
        var writeEnd = fds[1]
        defer { if writeEnd >= 0 { close(writeEnd) }; holder.send(SIGKILL) }

        // Observe the holder taking it (a one-shot attempt fails), with a deadline.
        var heldByOther = false
        var interval = Duration.milliseconds(5)
        // Generous: under parallel load the machine has stalled for half a minute.
        let deadline = ContinuousClock.now + .seconds(90)
        while ContinuousClock.now < deadline {
            if (try? await StartLock.acquire(path: path)) == nil { heldByOther = true; break }
            try await Task.sleep(for: interval)
            interval = min(interval * 2, .milliseconds(100))
        }
        try #require(heldByOther)
        await #expect(throws: HostError.self) { try await StartLock.acquire(path: path) }

        // A waiting acquire gets it as soon as the holder lets go.
        async let waited = StartLock.acquire(path: path, timeout: .seconds(90))
        close(writeEnd)
        writeEnd = -1
        let lock = try await waited
        lock.release()
        #expect(try await holder.waitForExit() == .exited(0))
    }

    /// QEMU (any child) must not inherit the lock: after we drop it, a child that is
    /// still running does not keep it held.
    @Test func childrenDoNotInheritTheLock() async throws {
        let temp = try TestDirectory(prefix: "hp-lock")
        defer { temp.remove() }
        let path = temp.file("lock")
        var lock: StartLock? = try await StartLock.acquire(path: path)
        let child = try Command("/bin/sleep", arguments: ["30"], environment: [:]).spawn()
        defer { child.send(SIGKILL) }
        // The child closes close-on-exec descriptors a moment after the spawn returns
        // (the kernel resumes a vfork parent before it closes them): wait for that,
        // with a deadline, instead of racing it. An inherited lock would never go.
        func childHoldsLock() -> Bool {
            let fds = (try? FileSystem.contents(of: "/proc/\(child.pid)/fd")) ?? []
            return fds.contains { (try? FileSystem.linkTarget("/proc/\(child.pid)/fd/\($0)")) == path }
        }
        var interval = Duration.milliseconds(1)
        let deadline = ContinuousClock.now + .seconds(2)
        while childHoldsLock() && ContinuousClock.now < deadline {
            try await Task.sleep(for: interval)
            interval = min(interval * 2, .milliseconds(100))
        }
        #expect(!childHoldsLock(), "the child inherited the lock descriptor")
        _ = lock
        lock = nil
        let probe = try await Command("/usr/bin/flock", arguments: ["-n", path, "/bin/true"], environment: [:]).run(timeout: .seconds(5))
        #expect(probe.status.isSuccess, "the lock outlived its holder through a child")
        child.send(SIGKILL)
        _ = try await child.waitForExit()
    }
}

@Suite struct HostFileTests {
    /// §4.19-13.
    @Test func phantomDisksAreExactlyOneMebibyteOfZeros() throws {
        let temp = try TestDirectory(prefix: "hp-phantom")
        defer { temp.remove() }
        let path = temp.file("seed.phantom")
        try PhantomDisk.ensure(at: path)
        let bytes = try POSIX.readFile(path)
        #expect(bytes.count == 1_048_576 && bytes.allSatisfy { $0 == 0 })
        let inode = try FileSystem.status(path)?.inode
        try PhantomDisk.ensure(at: path)
        #expect(try FileSystem.status(path)?.inode == inode, "a correct phantom is kept")
        try AtomicFile(path: path).write([1, 2, 3])
        try PhantomDisk.ensure(at: path)
        #expect(try POSIX.readFile(path) == [UInt8](repeating: 0, count: 1_048_576))
        var almost = [UInt8](repeating: 0, count: 1_048_576)
        almost[4096] = 1
        try AtomicFile(path: path).write(almost)
        try PhantomDisk.ensure(at: path)
        #expect(try POSIX.readFile(path).allSatisfy { $0 == 0 })
    }

    /// §4.5: six lines in order; §4.19-37: empty VM dir in capture mode.
    @Test func runtimeEnvironmentHasSixLinesInOrder() throws {
        let ports = try PortConfiguration(prefix: "81", dashboard: 26700, backend: 26701, minio: 26702, inbucket: 26703)
        let text = String(decoding: try RuntimeEnvironment(ports: ports, vmDirectoryOnHost: "/home/dev/.stack/emulator/run/vm").rendered(), as: UTF8.self)
        #expect(text == """
            STACK_EMULATOR_PORT_PREFIX=81
            STACK_EMULATOR_DASHBOARD_HOST_PORT=26700
            STACK_EMULATOR_BACKEND_HOST_PORT=26701
            STACK_EMULATOR_MINIO_HOST_PORT=26702
            STACK_EMULATOR_INBUCKET_HOST_PORT=26703
            STACK_EMULATOR_VM_DIR_HOST=/home/dev/.stack/emulator/run/vm

            """)
        let capture = String(decoding: try RuntimeEnvironment.forCapture(ports: ports).rendered(), as: UTF8.self)
        #expect(capture.hasSuffix("\nSTACK_EMULATOR_VM_DIR_HOST=\n"))
        #expect(throws: HostError.self) { try RuntimeEnvironment(ports: ports, vmDirectoryOnHost: "/a\nEVIL=1").rendered() }
    }

    /// §4.19-15: size and mtime changes are detected; the stored form round-trips.
    @Test func baseImageFingerprintFollowsSizeAndModificationTime() async throws {
        let temp = try TestDirectory(prefix: "hp-fp")
        defer { temp.remove() }
        let image = temp.file("base.qcow2")
        #expect(throws: HostError.self) { try BaseImageFingerprint.of(image) }
        try AtomicFile(path: image).write([1, 2, 3])
        let first = try BaseImageFingerprint.of(image)
        #expect(first.size == 3)
        try first.write(to: temp.file("base-image.fingerprint"))
        #expect(BaseImageFingerprint.stored(at: temp.file("base-image.fingerprint")) == first)
        #expect(BaseImageFingerprint(parsing: first.description) == first)
        #expect(BaseImageFingerprint(parsing: "12:34") == nil)
        try await TestShell.run("touch -d '2001-02-03 04:05:06.5' '\(image)'")
        let touched = try BaseImageFingerprint.of(image)
        #expect(touched != first && touched.description == "3:981173106.500000000")
        try AtomicFile(path: image).write([1, 2, 3, 4])
        #expect(try BaseImageFingerprint.of(image).size == 4)
    }

    /// §4.19-6.
    @Test func arm64NeedsFirmwareBeforeLaunch() throws {
        let temp = try TestDirectory(prefix: "hp-fw")
        defer { temp.remove() }
        #expect(try FirmwareLocator.firmware(for: .amd64) == nil)
        #expect(throws: HostError.self) { try FirmwareLocator.firmware(for: .arm64, candidates: [temp.file("a.fd"), temp.file("b.fd")]) }
        try AtomicFile(path: temp.file("b.fd")).write([0])
        #expect(try FirmwareLocator.firmware(for: .arm64, candidates: [temp.file("a.fd"), temp.file("b.fd")]) == temp.file("b.fd"))
    }

    @Test func vmDirectoryIsPrivate() throws {
        let temp = try TestDirectory(prefix: "hp-vm")
        defer { temp.remove() }
        let paths = EmulatorPaths(imageDirectory: temp.file("i"), runDirectory: temp.file("r"), architecture: .amd64)
        try FileSystem.makeDirectory(paths.vmDirectory, mode: 0o777)
        try paths.prepareVMDirectory()
        #expect(try FileSystem.status(paths.vmDirectory)!.mode & 0o777 == 0o700)
    }
}

@Suite struct QEMUFailureTests {
    /// The messages docs/platform-facts.md lists for a failed launch or resume.
    @Test func recognisesQEMUsMessages() {
        #expect(QEMUFailure.diagnose("qemu-system-x86_64: -netdev user,id=net0,hostfwd=tcp:127.0.0.1:1-:2: Could not set up host forwarding rule 'tcp:127.0.0.1:26700-:8101'")
                == .hostForwarding(port: 26700, line: "qemu-system-x86_64: -netdev user,id=net0,hostfwd=tcp:127.0.0.1:1-:2: Could not set up host forwarding rule 'tcp:127.0.0.1:26700-:8101'"))
        let kvm = "KVM internal error. Suberror: 1\nemulation failure"
        #expect(QEMUFailure.diagnose(kvm) == .accelerator(line: "KVM internal error. Suberror: 1"))
        for line in ["qemu-system-x86_64: Size mismatch: pc.ram: 0x10000000 != 0x20000000", "Unknown ramblock \"0000:00:02.0/virtio-net-pci.rom\", cannot accept migration",
                     "qemu: Unknown savevm section or instance '0000:00:05.0/pcie-root-port' 0", "Missing section footer for cpu"] {
            #expect(QEMUFailure.diagnose("noise\n" + line) == .snapshotIncompatible(line: line))
        }
        #expect(QEMUFailure.diagnose("qemu-system-x86_64: load of migration failed: Input/output error") != nil)
        #expect(QEMUFailure.diagnose("Not a migration stream") == .snapshotDamaged(line: "Not a migration stream"))
        #expect(QEMUFailure.diagnose("all fine") == nil)
    }
}

@Suite struct SupportTests {
    @Test func sha256MatchesTheCoreutilsTool() async throws {
        for input in ["", "abc", String(repeating: "x", count: 55), String(repeating: "y", count: 64), String(repeating: "z", count: 1000)] {
            let expected = try await TestShell.run("printf '%s' '\(input)' | sha256sum").prefix(64)
            #expect(SHA256.hex(input.utf8) == String(expected), "length \(input.count)")
        }
    }

    /// §5.4 #46: sub-second precision.
    @Test func secondsAreFormattedWithFractions() {
        #expect(Seconds.format(.milliseconds(2344)) == "2.34s")
        #expect(Seconds.format(.milliseconds(45)) == "0.05s")
        #expect(Seconds.format(.milliseconds(9996)) == "10.00s")
        #expect(Seconds.format(.milliseconds(12_345)) == "12.3s")
        #expect(Seconds.format(.seconds(240)) == "240.0s")
    }
}
