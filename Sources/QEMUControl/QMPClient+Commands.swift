/// Typed wrappers for the commands the orchestrator uses. Each takes an optional
/// deadline (default: `Configuration.defaultTimeout` from now).
extension QMPClient {
    public func queryStatus(deadline: ContinuousClock.Instant? = nil) async throws -> VMStatus {
        try await execute("query-status", returning: VMStatus.self, deadline: deadline)
    }

    /// Pauses the guest (a `STOP` event follows).
    public func stop(deadline: ContinuousClock.Instant? = nil) async throws {
        try await run("stop", deadline: deadline)
    }

    /// Resumes the guest (a `RESUME` event follows).
    public func cont(deadline: ContinuousClock.Instant? = nil) async throws {
        try await run("cont", deadline: deadline)
    }

    /// Asks the guest to power off via ACPI (a `SHUTDOWN` event follows if it honours it).
    public func systemPowerdown(deadline: ContinuousClock.Instant? = nil) async throws {
        try await run("system_powerdown", deadline: deadline)
    }

    /// Makes QEMU exit. QEMU may close the socket before its reply reaches us: a closed
    /// connection counts as success here.
    public func quit(deadline: ContinuousClock.Instant? = nil) async throws {
        do {
            try await run("quit", deadline: deadline)
        } catch let error as QEMUControlError where error.code == .connectionClosed {
            return
        }
    }

    // MARK: migration

    public func queryMigrate(deadline: ContinuousClock.Instant? = nil) async throws -> MigrationInfo {
        try await execute("query-migrate", returning: MigrationInfo.self, deadline: deadline)
    }

    /// Every capability this QEMU knows, with its state (absent ones, e.g. `mapped-ram`
    /// on 7.2, are simply not listed).
    public func queryMigrateCapabilities(deadline: ContinuousClock.Instant? = nil) async throws -> [MigrationCapabilityState] {
        try await execute("query-migrate-capabilities", returning: [MigrationCapabilityState].self, deadline: deadline)
    }

    public func migrateSetCapabilities(_ capabilities: [MigrationCapabilityState],
                                       deadline: ContinuousClock.Instant? = nil) async throws {
        struct Arguments: Encodable, Sendable { let capabilities: [MigrationCapabilityState] }
        try await run("migrate-set-capabilities", arguments: Arguments(capabilities: capabilities), deadline: deadline)
    }

    public func queryMigrateParameters(deadline: ContinuousClock.Instant? = nil) async throws -> MigrationParameters {
        try await execute("query-migrate-parameters", returning: MigrationParameters.self, deadline: deadline)
    }

    /// Sets the non-nil members of `parameters` (e.g. `maxBandwidth`).
    public func migrateSetParameters(_ parameters: MigrationParameters,
                                     deadline: ContinuousClock.Instant? = nil) async throws {
        try await run("migrate-set-parameters", arguments: parameters, deadline: deadline)
    }

    /// Starts an outgoing migration to `uri` (QEMU 7.2: `fd:<name>` after `getfd`, or
    /// `exec:`; no `file:`). Returns when QEMU accepted it; completion is reported by
    /// `MIGRATION` events (capability `events`) or `queryMigrate`.
    public func migrate(uri: String, deadline: ContinuousClock.Instant? = nil) async throws {
        struct Arguments: Encodable, Sendable { let uri: String }
        try await run("migrate", arguments: Arguments(uri: uri), deadline: deadline)
    }

    /// Starts loading an incoming migration (QEMU started with `-incoming defer`). While
    /// an `fd:` stream loads, QEMU 7.2 does not answer QMP: await the `MIGRATION` event.
    public func migrateIncoming(uri: String, deadline: ContinuousClock.Instant? = nil) async throws {
        struct Arguments: Encodable, Sendable { let uri: String }
        try await run("migrate-incoming", arguments: Arguments(uri: uri), deadline: deadline)
    }

    public func migrateCancel(deadline: ContinuousClock.Instant? = nil) async throws {
        try await run("migrate_cancel", deadline: deadline)
    }

    /// Waits for a `MIGRATION` event with a final status (`completed`, `failed`,
    /// `cancelled`) received after `cursor`, and returns that status. Needs the `events`
    /// capability on this QEMU.
    public func waitForMigrationEnd(after cursor: UInt64? = nil,
                                    deadline: ContinuousClock.Instant? = nil) async throws -> MigrationStatus {
        let event = try await waitForEvent(after: cursor, deadline: deadline, description: "final MIGRATION event") {
            $0.migrationStatus?.isFinal == true
        }
        return event.migrationStatus!
    }

    // MARK: descriptors

    /// Hands `descriptor` to QEMU under `name` (for `fd:<name>` URIs). QEMU receives its
    /// own copy; the caller may close `descriptor` once this returns.
    public func getfd(name: String, descriptor: Int32, deadline: ContinuousClock.Instant? = nil) async throws {
        struct Arguments: Encodable, Sendable { let fdname: String }
        try await run("getfd", arguments: Arguments(fdname: name), passing: [descriptor], deadline: deadline)
    }

    public func closefd(name: String, deadline: ContinuousClock.Instant? = nil) async throws {
        struct Arguments: Encodable, Sendable { let fdname: String }
        try await run("closefd", arguments: Arguments(fdname: name), deadline: deadline)
    }

    /// Adds `descriptor` to a descriptor set (a new one unless `fdsetID` is given), for
    /// options that open `/dev/fdset/<id>`.
    public func addFD(descriptor: Int32, fdsetID: Int64? = nil, opaque: String? = nil,
                      deadline: ContinuousClock.Instant? = nil) async throws -> AddedDescriptor {
        struct Arguments: Encodable, Sendable {
            let fdsetID: Int64?
            let opaque: String?
            enum CodingKeys: String, CodingKey { case fdsetID = "fdset-id", opaque }
        }
        return try await execute("add-fd", arguments: Arguments(fdsetID: fdsetID, opaque: opaque),
                                 passing: [descriptor], returning: AddedDescriptor.self, deadline: deadline)
    }

    // MARK: devices

    /// `device_add` with `driver`, `id` and the device's own properties (e.g. `fsdev`,
    /// `mount_tag`, `bus` for virtio-9p-pci).
    public func deviceAdd(driver: String, id: String, properties: [String: JSONValue] = [:],
                          deadline: ContinuousClock.Instant? = nil) async throws {
        var arguments = properties
        arguments["driver"] = .string(driver)
        arguments["id"] = .string(id)
        try await run("device_add", arguments: JSONValue.object(arguments), deadline: deadline)
    }

    public func deviceDel(id: String, deadline: ContinuousClock.Instant? = nil) async throws {
        struct Arguments: Encodable, Sendable { let id: String }
        try await run("device_del", arguments: Arguments(id: id), deadline: deadline)
    }
}
