import CSystem
import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#endif

/// Real HTTP servers (node) on ephemeral 127.0.0.1 ports, one per requested behaviour:
/// `ok` (200), `error` (500), `hang` (accepts, never answers), `late:<ms>` (503 until
/// <ms> after its first request, then 200). Killed by `stop()`.
final class NodeHTTPServers: Sendable {
    let ports: [UInt16]
    private let child: ChildProcess

    static let script = #"""
    const http = require('http');
    const firstRequest = {};
    const behaviours = process.argv.slice(1);
    const ports = new Array(behaviours.length);
    let listening = 0;
    behaviours.forEach((behaviour, i) => {
      const server = http.createServer((req, res) => {
        if (behaviour === 'hang') return;
        if (behaviour === 'error') { res.writeHead(500); return res.end('no'); }
        if (behaviour.startsWith('late:')) {
          if (firstRequest[i] === undefined) firstRequest[i] = Date.now();
          const ready = Date.now() - firstRequest[i] >= Number(behaviour.slice(5));
          res.writeHead(ready ? 200 : 503); return res.end(ready ? 'ok' : 'wait');
        }
        res.writeHead(200, {'Content-Type': 'text/plain'}); res.end('ok ' + req.url);
      });
      server.listen(0, '127.0.0.1', () => {
        ports[i] = server.address().port;
        if (++listening === behaviours.length) process.stdout.write(ports.join(' ') + '\n');
      });
    });
    """#

    private init(ports: [UInt16], child: ChildProcess) {
        self.ports = ports
        self.child = child
    }

    static func start(_ behaviours: [String]) async throws -> NodeHTTPServers {
        var fds: [Int32] = [-1, -1]
        guard fds.withUnsafeMutableBufferPointer({ cs_pipe($0.baseAddress!) }) == 0 else { throw StackError.systemCall("pipe", errno: errno) }
        let command = Command("node", arguments: ["-e", script] + behaviours, environment: ["PATH": Command.defaultSearchPath],
                              processGroup: .new, standardInput: .discard, standardOutput: .fileDescriptor(fds[1]))
        let child: ChildProcess
        do {
            child = try command.spawn()
        } catch {
            close(fds[0]); close(fds[1])
            throw error
        }
        close(fds[1])
        let readEnd = fds[0]
        let line = await BlockingCall.run { () -> String in
            defer { close(readEnd) }
            var bytes: [UInt8] = []
            var byte: UInt8 = 0
            var descriptor = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            while !bytes.contains(10) {
                guard poll(&descriptor, 1, 10_000) > 0, read(readEnd, &byte, 1) == 1 else { break }
                bytes.append(byte)
            }
            return String(decoding: bytes, as: UTF8.self)
        }
        let ports = line.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { UInt16($0) }
        guard ports.count == behaviours.count else {
            child.sendToGroup(SIGKILL)
            _ = try? await child.waitForExit()
            throw StackError(.systemCall, "node HTTP servers did not start (got '\(line)')")
        }
        return NodeHTTPServers(ports: ports, child: child)
    }

    func stop() async {
        child.sendToGroup(SIGKILL)
        _ = try? await child.waitForExit()
    }
}

/// Runs `body` with servers, always stopping them.
func withHTTPServers<T>(_ behaviours: [String], _ body: (NodeHTTPServers) async throws -> T) async throws -> T {
    let servers = try await NodeHTTPServers.start(behaviours)
    do {
        let result = try await body(servers)
        await servers.stop()
        return result
    } catch {
        await servers.stop()
        throw error
    }
}
