import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// A parsed XML element: name, text, children. S3's responses are small and shallow.
struct XMLElement: Sendable {
    var name: String
    var text: String = ""
    var children: [XMLElement] = []

    /// The first child named `name`.
    func child(_ name: String) -> XMLElement? { children.first { $0.name == name } }
    func all(_ name: String) -> [XMLElement] { children.filter { $0.name == name } }
    /// Text of the first child named `name`.
    subscript(_ name: String) -> String? { child(name)?.text }

    /// Parses `data` with Foundation's `XMLParser`; nil if it is not XML.
    static func parse(_ data: Data) -> XMLElement? {
        let delegate = TreeBuilder()
        let parser = XMLParser(data: data)
        parser.delegate = delegate
        guard parser.parse(), let root = delegate.stack.first?.children.first else { return nil }
        return root
    }

    private final class TreeBuilder: NSObject, XMLParserDelegate {
        var stack: [XMLElement] = [XMLElement(name: "#document")]

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            stack.append(XMLElement(name: name))
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            stack[stack.count - 1].text += string
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            let done = stack.removeLast()
            stack[stack.count - 1].children.append(done)
        }
    }
}

/// Escapes text for an XML body (keys in DeleteObjects and CompleteMultipartUpload).
func xmlEscape(_ s: String) -> String {
    var out = ""
    for c in s.unicodeScalars {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default:
            if c.value < 0x20 && c != "\t" && c != "\n" && c != "\r" { out += "&#x\(String(c.value, radix: 16));" } else { out.unicodeScalars.append(c) }
        }
    }
    return out
}
