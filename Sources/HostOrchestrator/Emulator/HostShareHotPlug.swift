import QEMUControl

/// Makes the host share visible in a resumed guest (§4.10 steps 6.6–6.7): `device_add`
/// of a virtio-9p-pci device on the pre-created `pcie-root-port` with the pre-created
/// `-fsdev` backend, then `mount-host-fs --post-resume` in the guest. The mount point
/// is passed when the share is not the host root (`HostShare.guestMountPoint`).
struct HostShareHotPlug: Sendable {
    static let mountCommand = "/usr/local/bin/mount-host-fs"
    static let deviceID = "hostfs-dev"

    let share: HostShare

    func plug(qmp: QMPClient, deadline: ContinuousClock.Instant) async throws {
        do {
            try await qmp.deviceAdd(driver: "virtio-9p-pci", id: HostShareHotPlug.deviceID, properties: [
                "fsdev": .string(HostShare.mountTag), "mount_tag": .string(HostShare.mountTag), "bus": .string("hostfs-port"),
            ], deadline: deadline)
        } catch {
            throw HostError(.guestFailed, "hot-plugging the host share failed: \(error)")
        }
    }

    var mountArguments: [String] {
        share.root == "/" ? ["--post-resume"] : ["--post-resume", share.guestMountPoint]
    }

    func mount(agent: GuestAgentClient, deadline: ContinuousClock.Instant) async throws {
        try await finishMount(pid: try await startMount(agent: agent, deadline: deadline), agent: agent, deadline: deadline)
    }

    /// Starts `mount-host-fs` in the guest and returns its pid at once.
    func startMount(agent: GuestAgentClient, deadline: ContinuousClock.Instant) async throws -> Int64 {
        do {
            return try await agent.startExec(path: HostShareHotPlug.mountCommand, arguments: mountArguments, captureOutput: true, deadline: deadline)
        } catch {
            throw HostError(.guestFailed, "cannot start mount-host-fs in the guest: \(error)")
        }
    }

    func finishMount(pid: Int64, agent: GuestAgentClient, deadline: ContinuousClock.Instant) async throws {
        let result: GuestExecResult
        do {
            result = try await agent.waitForExit(pid: pid, deadline: deadline)
        } catch let error as QEMUControlError where error.code == .timedOut {
            throw HostError(.guestFailed, "mount-host-fs did not complete before its deadline: \(error.message)")
        }
        guard result.isSuccess else {
            let tail = result.standardErrorText.split(whereSeparator: \.isNewline).suffix(2).joined(separator: " | ")
            throw HostError(.guestFailed, "mount-host-fs \(mountArguments.joined(separator: " ")) failed in the guest (\(result.termination))\(tail.isEmpty ? "" : ": \(tail)")")
        }
    }
}
