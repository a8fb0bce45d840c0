/// The host directory exported to the guest over 9p (mount tag `hostfs`), replacing
/// the upstream export of the entire host root, read-write (§5.4 #40).
///
/// Default (see `EmulatorConfiguration`): the user's home directory, read-write. That
/// covers the default state directory (`~/.stack/emulator/run/vm`, where the guest
/// writes `internal-pck` on a cold boot) and project config files, which the backend
/// both reads and writes, while `/etc`, `/root`, other users' homes and system trees
/// stay invisible. `EMULATOR_HOST_SHARE=/` restores the upstream export, `off`
/// disables it, `EMULATOR_HOST_SHARE_READONLY=1` makes it read-only.
///
/// Contract with the guest: the backend resolves a host path `X` as `/host` + `X`, so
/// the share must appear at `/host` + `root` in the guest (`guestMountPoint`); for
/// `root == "/"` that is `/host` itself, as upstream. The orchestrator passes the mount
/// point to `mount-host-fs` (a guest image mounting `hostfs` on `/host` unconditionally
/// only works with `EMULATOR_HOST_SHARE=/`).
public struct HostShare: Sendable, Equatable, Hashable {
    /// Absolute, normalised host directory.
    public let root: String
    public let readOnly: Bool

    public static let mountTag = "hostfs"
    /// Where the guest's backend expects the host root (`STACK_LOCAL_EMULATOR_HOST_MOUNT_ROOT`).
    public static let guestHostRoot = "/host"

    public init(root: String, readOnly: Bool) {
        self.root = root
        self.readOnly = readOnly
    }

    /// `/host` + root: where the guest must mount the share so `/host<abs path>` resolves.
    public var guestMountPoint: String {
        root == "/" ? HostShare.guestHostRoot : HostShare.guestHostRoot + root
    }
}

/// RAM and vCPUs of one layout (cold boot or snapshot).
public struct MachineResources: Sendable, Equatable, Hashable, Codable {
    public var memoryMiB: Int
    public var cpus: Int

    public init(memoryMiB: Int, cpus: Int) {
        self.memoryMiB = memoryMiB
        self.cpus = cpus
    }

    public static let `default` = MachineResources(memoryMiB: 4096, cpus: 4)
}
