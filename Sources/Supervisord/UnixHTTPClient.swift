import StackProcess

/// The part of HTTP/1.1 supervisord's XML-RPC endpoint needs: one POST per connection
/// (`Connection: close`, so no keep-alive state to get wrong), a `Content-Length` body
/// or, without one, a body delimited by the server closing the connection.
struct UnixHTTPClient: Sendable {
    struct Response: Sendable {
        let status: Int
        let reason: String
        /// Header names lower-cased.
        let headers: [String: String]
        let body: [UInt8]
    }

    static let maximumHeaderBytes = 64 * 1024
    static let maximumBodyBytes = 16 * 1024 * 1024

    let socketPath: String

    /// POSTs `body` to `target`. The blocking socket work runs on its own thread; task
    /// cancellation shuts the socket down and surfaces as CancellationError.
    func post(_ target: String, contentType: String, body: [UInt8], deadline: ContinuousClock.Instant) async throws -> Response {
        try Task.checkCancellation()
        let connection = try UnixSocketConnection(path: socketPath)
        var delay = Duration.milliseconds(10)
        while try !connection.tryConnect() {
            guard ContinuousClock.now + delay < deadline else {
                throw SupervisordError(.timedOut, "connect \(socketPath): supervisord accepted no connection within the deadline (listen backlog full)")
            }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(200))
        }
        var head = "POST \(target) HTTP/1.1\r\n"
        head += "Host: localhost\r\n"
        head += "Content-Type: \(contentType)\r\n"
        head += "Content-Length: \(body.count)\r\n"
        head += "Connection: close\r\n\r\n"
        let request = Array(head.utf8) + body
        return try await withTaskCancellationHandler {
            try await BlockingCall.run {
                defer { connection.close() }
                try connection.send(request, deadline: deadline)
                return try UnixHTTPClient.readResponse(from: connection, deadline: deadline)
            }
        } onCancel: {
            connection.cancel()
        }
    }

    private static func readResponse(from connection: UnixSocketConnection, deadline: ContinuousClock.Instant) throws -> Response {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        var endOfStream = false
        func receiveMore() throws {
            let n = try connection.receive(into: &chunk, deadline: deadline)
            if n == 0 { endOfStream = true } else { received.append(contentsOf: chunk[0..<n]) }
        }

        // Head: up to the blank line.
        var headEnd: Int?
        while headEnd == nil {
            headEnd = received.firstRange(of: [13, 10, 13, 10])?.lowerBound
            if headEnd != nil { break }
            guard received.count <= maximumHeaderBytes else {
                throw invalid("response headers from \(connection.path) exceed \(maximumHeaderBytes) bytes")
            }
            guard !endOfStream else {
                throw SupervisordError(.connectionFailed, "\(connection.path) closed the connection before a complete HTTP response")
            }
            try receiveMore()
        }
        var (status, reason, headers) = try parseHead(received[..<headEnd!], path: connection.path)
        received.removeFirst(headEnd! + 4)

        // Body: Content-Length bytes, else until the server closes.
        if headers["transfer-encoding"] != nil {
            throw invalid("\(connection.path) sent Transfer-Encoding \(headers["transfer-encoding"]!), which this client does not support")
        }
        if let lengthText = headers["content-length"] {
            guard let length = Int(lengthText), length >= 0 else { throw invalid("bad Content-Length \"\(lengthText)\" from \(connection.path)") }
            guard length <= maximumBodyBytes else { throw invalid("response from \(connection.path) is \(length) bytes, more than \(maximumBodyBytes)") }
            while received.count < length {
                guard !endOfStream else {
                    throw SupervisordError(.connectionFailed, "\(connection.path) closed the connection after \(received.count) of \(length) body bytes")
                }
                try receiveMore()
            }
            received.removeSubrange(length...)
        } else {
            while !endOfStream {
                guard received.count <= maximumBodyBytes else { throw invalid("response from \(connection.path) exceeds \(maximumBodyBytes) bytes") }
                try receiveMore()
            }
        }
        headers["content-length"] = String(received.count)
        return Response(status: status, reason: reason, headers: headers, body: received)
    }

    static func parseHead(_ head: ArraySlice<UInt8>, path: String) throws -> (Int, String, [String: String]) {
        let lines = String(decoding: head, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.first ?? ""
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let status = Int(parts[1]) else {
            throw invalid("\(path) did not answer with HTTP (status line \"\(statusLine.prefix(80))\")")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { throw invalid("malformed HTTP header line from \(path): \"\(line.prefix(80))\"") }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingSpaces()
            headers[name] = value
        }
        return (status, parts.count == 3 ? String(parts[2]) : "", headers)
    }

    private static func invalid(_ message: String) -> SupervisordError {
        SupervisordError(.invalidResponse, message)
    }
}

private extension Substring {
    func trimmingSpaces() -> String {
        guard let first = firstIndex(where: { $0 != " " && $0 != "\t" }) else { return "" }
        let last = lastIndex(where: { $0 != " " && $0 != "\t" })!
        return String(self[first...last])
    }
}
