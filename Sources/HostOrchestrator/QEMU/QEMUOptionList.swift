/// QEMU's `key=value,key=value` option syntax (QemuOpts), built and read without
/// string interpolation mistakes: a `,` inside a value is written `,,` (§5.4 #7), so a
/// VM directory named `a,b` cannot inject options.
public struct QEMUOptionList: Sendable, Equatable {
    /// An optional leading bare word (`local`, `socket`, `virtio-net-pci`, …).
    public var head: String?
    public var pairs: [(key: String, value: String)]

    public init(_ head: String? = nil, _ pairs: [(key: String, value: String)] = []) {
        self.head = head
        self.pairs = pairs
    }

    public static func == (lhs: QEMUOptionList, rhs: QEMUOptionList) -> Bool {
        lhs.head == rhs.head && lhs.pairs.elementsEqual(rhs.pairs, by: { $0.key == $1.key && $0.value == $1.value })
    }

    /// `,` doubled.
    public static func escape(_ value: String) -> String {
        value.replacing(",", with: ",,")
    }

    public var rendered: String {
        var parts: [String] = []
        if let head { parts.append(QEMUOptionList.escape(head)) }
        for (key, value) in pairs { parts.append(key + "=" + QEMUOptionList.escape(value)) }
        return parts.joined(separator: ",")
    }

    /// Splits on single commas, turning `,,` back into `,`. A first element without
    /// `=` becomes `head`.
    public init(parsing text: String) {
        var elements: [String] = []
        var current = ""
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            let next = text.index(after: index)
            if character == "," {
                if next < text.endIndex && text[next] == "," {
                    current.append(",")
                    index = text.index(after: next)
                    continue
                }
                elements.append(current)
                current = ""
            } else {
                current.append(character)
            }
            index = next
        }
        elements.append(current)
        var head: String?
        var pairs: [(key: String, value: String)] = []
        for (offset, element) in elements.enumerated() {
            if let equals = element.firstIndex(of: "=") {
                pairs.append((String(element[..<equals]), String(element[element.index(after: equals)...])))
            } else if offset == 0 {
                head = element
            } else {
                pairs.append((element, ""))
            }
        }
        self.init(head, pairs)
    }

    public func value(_ key: String) -> String? {
        pairs.last(where: { $0.key == key })?.value
    }

    /// A copy without the given keys.
    public func removing(_ keys: Set<String>) -> QEMUOptionList {
        QEMUOptionList(head, pairs.filter { !keys.contains($0.key) })
    }
}
